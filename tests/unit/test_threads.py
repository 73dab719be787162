"""The thread pool of blocking actions, on a fake pool and a fake clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lxml import etree
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase

from empc import StanzaError
from empc._threads import ActionThreads, call_with_copy, in_blocking_action, unpacked
from empc.routing import make_stanza

_trial = SynchronousTestCase()
successResultOf = _trial.successResultOf
assertNoResult = _trial.assertNoResult


class FakeReactor(Clock):
    def callFromThread(self, f: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class FakePool(ThreadPool):
    """Queues the work; the test runs it, as a thread would."""

    def __init__(self) -> None:
        super().__init__(minthreads=0, maxthreads=1)
        self.queued: list[Callable[[], None]] = []
        self.stopped = False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True
        self.joined = True

    def callInThreadWithCallback(
        self, onResult: Any, func: Callable[..., object], *args: Any, **kwargs: Any
    ) -> None:
        def work() -> None:
            onResult(True, func(*args, **kwargs))

        self.queued.append(work)


class Weather:
    def forecast(self, stanza: etree._Element) -> str:
        return "sunny"


def started() -> tuple[ActionThreads, FakePool, FakeReactor]:
    reactor, pool = FakeReactor(), FakePool()
    threads = ActionThreads(reactor, 1, stop_timeout=5, pool=pool)
    threads.startService()
    return threads, pool, reactor


def test_outcome_of_the_action_fires_the_deferred() -> None:
    threads, pool, _ = started()
    outcome = threads.run(Weather().forecast, make_stanza("iq"))
    assertNoResult(outcome)
    pool.queued.pop()()
    assert successResultOf(outcome) == "sunny"


def test_stopping_with_nothing_running_stops_the_pool_at_once() -> None:
    threads, pool, _ = started()
    successResultOf(threads.stopService())
    assert pool.stopped


def test_stopping_waits_for_a_running_action() -> None:
    threads, pool, _ = started()
    threads.run(Weather().forecast, make_stanza("iq"))
    stopped = threads.stopService()
    assertNoResult(stopped)
    pool.queued.pop()()
    successResultOf(stopped)
    assert pool.stopped


def test_a_stuck_action_delays_the_stop_by_stop_timeout_and_is_named() -> None:
    threads, pool, reactor = started()
    threads.run(Weather().forecast, make_stanza("iq"))
    stopped = threads.stopService()
    with capturedLogs() as logs:
        reactor.advance(4.9)
        assertNoResult(stopped)
        reactor.advance(0.1)
    successResultOf(stopped)
    assert not pool.stopped  # joining a stuck thread would hang the exit
    (event,) = logs
    assert "Weather.forecast (1)" in formatEvent(event)


def test_the_action_gets_a_copy_of_the_stanza_parsed_where_it_runs() -> None:
    threads, pool, _ = started()
    given = make_stanza("iq", {"id": "q1"})
    etree.SubElement(given, "{urn:example:weather}forecast", {"city": "Paris"})
    seen: list[etree._Element] = []
    threads.run(seen.append, given)
    pool.queued.pop()()
    (stanza,) = seen
    assert stanza is not given
    assert etree.tostring(stanza) == etree.tostring(given)
    assert stanza.getroottree().getroot() is stanza


class Draining(Service):
    """A child whose stop takes until the test says so."""

    def __init__(self) -> None:
        self.stopped: Deferred[None] = Deferred()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.stopped


def test_the_pool_stops_only_after_its_children_have_stopped() -> None:
    threads, pool, _ = started()
    child = Draining()
    child.setServiceParent(threads)
    stopping = threads.stopService()
    assert not pool.stopped  # the child may still need a thread for its last replies
    threads.run(Weather().forecast, make_stanza("iq"))
    pool.queued.pop()()
    child.stopped.callback(None)
    successResultOf(stopping)
    assert pool.stopped


def test_run_after_the_pool_has_stopped_fails_at_once() -> None:
    threads, _, _ = started()
    successResultOf(threads.stopService())
    with pytest.raises(RuntimeError):
        threads.run(Weather().forecast, make_stanza("iq"))


# What crosses between threads crosses as bytes


def crossing(action: Callable[[etree._Element], object], stanza: etree._Element) -> object:
    """What the reactor thread gets back from ``action`` run on ``stanza``."""
    try:
        outcome: Deferred[object] = succeed(call_with_copy(action, etree.tostring(stanza)))
    except Exception:
        outcome = fail()
    result = unpacked(outcome)
    return successResultOf(result) if not isinstance(result.result, Failure) else result.result


def test_an_element_the_action_returns_comes_back_as_a_copy() -> None:
    built: list[etree._Element] = []

    def answer(stanza: etree._Element) -> etree._Element:
        built.append(etree.SubElement(stanza, "{urn:example:weather}forecast", {"sky": "blue"}))
        return built[0]

    result = crossing(answer, make_stanza("iq"))
    assert isinstance(result, etree._Element)
    assert result is not built[0]
    assert (result.tag, result.get("sky")) == ("{urn:example:weather}forecast", "blue")


def test_a_generator_the_action_returns_runs_where_the_action_runs() -> None:
    ran_in_action: list[bool] = []

    def replies(stanza: etree._Element) -> Iterator[etree._Element]:
        ran_in_action.append(in_blocking_action())
        yield make_stanza("message", {"to": "juliet@example.org"})

    result = crossing(replies, make_stanza("message"))
    assert ran_in_action == [True]
    assert isinstance(result, list) and result[0].get("to") == "juliet@example.org"
    assert not in_blocking_action()


def test_a_stanza_error_with_an_application_condition_comes_back_whole() -> None:
    def refuse(stanza: etree._Element) -> None:
        condition = etree.Element("{http://jabber.org/protocol/pubsub#errors}invalid-jid")
        raise StanzaError("bad-request", "no", application_condition=condition)

    failure = crossing(refuse, make_stanza("iq"))
    assert isinstance(failure, Failure)
    error = failure.value
    assert isinstance(error, StanzaError)
    assert (error.condition, error.text, error.type) == ("bad-request", "no", "modify")
    assert error.application_condition is not None
    assert (
        error.application_condition.tag == "{http://jabber.org/protocol/pubsub#errors}invalid-jid"
    )


def test_a_deferred_returned_by_a_blocking_action_is_refused_with_a_clear_error() -> None:
    failure = crossing(lambda stanza: succeed(None), make_stanza("iq"))
    assert isinstance(failure, Failure)
    assert failure.check(TypeError)
    assert "non-blocking route" in str(failure.value)


def test_a_reply_of_any_size_crosses_back() -> None:
    def big(stanza: etree._Element) -> etree._Element:
        element = etree.Element("{urn:example:big}data")
        element.text = "x" * (11 * 1024 * 1024)  # past libxml2's default text limit
        return element

    result = crossing(big, make_stanza("iq"))
    assert isinstance(result, etree._Element)
    assert len(result.text or "") == 11 * 1024 * 1024
