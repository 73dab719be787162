"""SIGTERM: the first drains and stops, a second exits at once and says what
it abandoned."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lxml import etree
from support import RecordingLink, write_config
from twisted.internet.defer import Deferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, capturedLogs, formatEvent

from empc import Component, Handler, iq
from empc._config import load_config
from empc._tap import Shutdown, build_services, components_of


class Pending(Handler):
    @iq("get", "{urn:example:slow}query")
    def query(self, stanza: etree._Element) -> Deferred[None]:
        return Deferred()


class FakeReactor:
    def __init__(self) -> None:
        self.stops = 0
        self.running = True

    def callFromThread(self, function: Callable[..., object], *args: object) -> None:
        function(*args)

    def stop(self) -> None:
        if not self.running:
            raise ReactorNotRunning()
        self.running = False
        self.stops += 1


def busy_component(in_flight: int) -> Component:
    component = Component("echo.example.org", [Pending()], Clock())
    component.link(RecordingLink())
    for number in range(in_flight):
        stanza = etree.fromstring(
            f"<iq xmlns='jabber:component:accept' type='get' id='q{number}' "
            "from='a@example.org/r' to='echo.example.org'><query xmlns='urn:example:slow'/></iq>"
        )
        component.receive(stanza)
    return component


@pytest.fixture
def logs() -> Iterator[list[LogEvent]]:
    with capturedLogs() as events:
        yield events  # type: ignore[misc]


def test_the_first_sigterm_stops_the_reactor_and_says_what_is_in_flight(
    logs: list[LogEvent],
) -> None:
    reactor = FakeReactor()
    exits: list[None] = []
    shutdown = Shutdown(
        reactor, [busy_component(2)], grace=10, write=print, exit=lambda: exits.append(None)
    )
    shutdown.terminate()
    assert (reactor.stops, exits) == (1, [])
    assert any("2 actions in flight get up to 10 seconds" in formatEvent(event) for event in logs)


def test_a_second_sigterm_exits_at_once_saying_how_many_actions_it_abandons() -> None:
    reactor = FakeReactor()
    exits: list[None] = []
    written: list[bytes] = []
    components = [busy_component(2), busy_component(1)]
    shutdown = Shutdown(
        reactor, components, grace=10, write=written.append, exit=lambda: exits.append(None)
    )
    shutdown.terminate()
    shutdown.terminate()
    assert (reactor.stops, exits) == (1, [None])
    assert written == [b"SIGTERM again: exiting at once, abandoning 3 actions\n"]


def test_ctrl_c_drains_the_same_way_under_its_own_name(logs: list[LogEvent]) -> None:
    written: list[bytes] = []
    shutdown = Shutdown(FakeReactor(), [], grace=10, write=written.append, exit=lambda: None)
    shutdown.terminate(signal.SIGINT)
    shutdown.terminate(signal.SIGINT)
    assert any("SIGINT: stopping" in formatEvent(event) for event in logs)
    assert written == [b"SIGINT again: exiting at once, abandoning 0 actions\n"]


def test_sigterm_while_the_reactor_already_stops_is_no_error(logs: list[LogEvent]) -> None:
    reactor = FakeReactor()
    reactor.running = False
    Shutdown(reactor, [], grace=10, write=print, exit=lambda: None).terminate()
    assert not [event for event in logs if event.get("log_failure")]


def test_components_of_finds_every_component_in_the_service_tree(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        components:
          - domain: a.example.org
            secret: s3cret
          - domain: b.example.org
            secret: s3cret
        metrics:
          listen: tcp:0:interface=127.0.0.1
        storage:
          url: sqlite://
        """,
    )
    services = build_services(load_config(path, {}), MemoryReactorClock(), {})
    assert [c.domain for c in components_of(services)] == ["a.example.org", "b.example.org"]
