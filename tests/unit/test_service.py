"""Backoff, the explanations of failures, and ComponentService's reconnection."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
)
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from empc import Component, Handler
from empc._connection import ComponentProtocol, LinkSettings
from empc._service import Backoff, ComponentService, explain, is_permanent
from empc.protocol import Conflict, HostUnknown, InvalidNamespace, NotAuthorized, SystemShutdown

_trial = SynchronousTestCase()
successResultOf = _trial.successResultOf
assertNoResult = _trial.assertNoResult

DOMAIN = "echo.example.org"
SERVER_HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept'"
    b" xmlns:stream='http://etherx.jabber.org/streams' from='echo.example.org' id='s1'>"
)
HANDSHAKE_OK = b"<handshake/>"
CLOSE = b"</stream:stream>"
CLIENT_HEADER_START = b"<?xml version='1.0'?><stream:stream"


def stream_error(condition: str) -> bytes:
    return (
        b"<stream:error><" + condition.encode() + b" xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"</stream:error>"
    )


# Backoff


@pytest.mark.parametrize(("attempt", "expected"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)])
def test_backoff_grows_exponentially(attempt: int, expected: float) -> None:
    backoff = Backoff(initial_delay=1.0, factor=2.0, max_delay=60.0, jitter=0.5)
    assert backoff.delay(attempt, random=lambda: 0.0) == expected


def test_backoff_uses_initial_delay_and_factor() -> None:
    backoff = Backoff(initial_delay=0.5, factor=3.0, max_delay=100.0)
    assert [backoff.delay(n, random=lambda: 0.0) for n in (1, 2, 3)] == [0.5, 1.5, 4.5]


def test_backoff_is_capped_at_max_delay() -> None:
    backoff = Backoff(initial_delay=1.0, factor=2.0, max_delay=60.0)
    assert backoff.delay(7, random=lambda: 0.0) == 60.0
    assert backoff.delay(30, random=lambda: 0.0) == 60.0


def test_backoff_jitter_at_most_stretches_by_the_jitter_fraction() -> None:
    backoff = Backoff(initial_delay=2.0, factor=2.0, max_delay=60.0, jitter=0.5)
    assert backoff.delay(1, random=lambda: 1.0) == 3.0
    assert backoff.delay(10, random=lambda: 1.0) == 90.0


def test_backoff_jitter_stays_within_base_and_base_times_one_plus_jitter() -> None:
    backoff = Backoff(initial_delay=1.0, factor=2.0, max_delay=60.0, jitter=0.25)
    for attempt in range(1, 10):
        base = min(60.0, 2.0 ** (attempt - 1))
        for value in (0.0, 0.3, 0.999, 1.0):
            assert base <= backoff.delay(attempt, random=lambda v=value: v) <= base * 1.25


def test_backoff_of_attempt_zero_is_the_initial_delay() -> None:
    assert Backoff(initial_delay=1.5).delay(0, random=lambda: 0.0) == 1.5


def test_backoff_after_very_many_attempts_is_still_max_delay() -> None:
    # A server down for a day with max_delay 60 s is ~1,500 failed attempts:
    # factor ** (n - 1) must not overflow into an OverflowError.
    backoff = Backoff(initial_delay=1.0, factor=2.0, max_delay=60.0)
    assert backoff.delay(2000, random=lambda: 0.0) == 60.0


# explain and is_permanent


def test_explain_not_authorized_points_at_the_secret() -> None:
    text = explain(NotAuthorized(), DOMAIN)
    assert "secret" in text
    assert "component_secret" in text
    assert DOMAIN in text


def test_explain_host_unknown_names_the_domain() -> None:
    text = explain(HostUnknown(), DOMAIN)
    assert DOMAIN in text
    assert "host-unknown" in text


def test_explain_invalid_namespace_mentions_the_component_port() -> None:
    text = explain(InvalidNamespace(), DOMAIN)
    assert "5347" in text


def test_explain_conflict_mentions_another_connection() -> None:
    assert "another connection" in explain(Conflict(), DOMAIN)


def test_explain_dns_lookup_error_mentions_the_endpoint() -> None:
    assert "endpoint" in explain(DNSLookupError("xmpp.example.org"), DOMAIN)


def test_explain_anything_else_is_its_message() -> None:
    assert explain(ConnectionRefusedError("nobody home"), DOMAIN) == str(
        ConnectionRefusedError("nobody home")
    )


@pytest.mark.parametrize("error", [NotAuthorized(), HostUnknown(), InvalidNamespace()])
def test_is_permanent(error: BaseException) -> None:
    assert is_permanent(error)


@pytest.mark.parametrize(
    "error",
    [Conflict(), ConnectionRefusedError(), SystemShutdown(), ConnectionLost(), DNSLookupError()],
)
def test_is_not_permanent(error: BaseException) -> None:
    assert not is_permanent(error)


# ComponentService over a fake endpoint


@dataclass
class Attempt:
    """One connection the fake endpoint made."""

    proxy: IProtocol  # what ClientService's factory built: it relays connectionLost
    transport: StringTransport

    @property
    def protocol(self) -> ComponentProtocol:
        return self.proxy._protocol  # type: ignore[attr-defined, no-any-return]

    def feed(self, data: bytes) -> None:
        self.proxy.dataReceived(data)

    def lose(self, reason: BaseException | None = None) -> None:
        self.proxy.connectionLost(Failure(reason or ConnectionDone()))


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """Connects at once over a StringTransport, or fails with ``errors``."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.connects = 0
        self.errors: list[BaseException] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        self.connects += 1
        if self.errors:
            return fail(self.errors.pop(0))
        proxy = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5347))
        assert proxy is not None
        transport = StringTransport()
        proxy.makeConnection(transport)
        self.attempts.append(Attempt(proxy, transport))
        return succeed(proxy)

    @property
    def last(self) -> Attempt:
        return self.attempts[-1]


class Recorder(Handler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def start(self) -> None:
        self.events.append("start")

    def stop(self) -> None:
        self.events.append("stop")


class Harness:
    def __init__(self, random: float = 0.0) -> None:
        self.clock = Clock()
        self.endpoint = FakeEndpoint()
        self.handler = Recorder()
        self.component = Component(DOMAIN, [self.handler], self.clock)
        self.backoff = Backoff(
            initial_delay=1.0,
            max_delay=60.0,
            factor=2.0,
            jitter=0.5,
            permanent_error_delay=300.0,
            stable_after=60.0,
        )
        self.service = ComponentService(
            self.component,
            self.endpoint,  # type: ignore[arg-type]
            "s3cret",
            self.clock,
            link=LinkSettings(keepalive_interval=0, ping_interval=0),
            backoff=self.backoff,
            random=lambda: random,
        )

    def start(self) -> Attempt:
        self.service.startService()
        return self.endpoint.last

    def connect(self) -> Attempt:
        """Start and complete the handshake."""
        attempt = self.start()
        attempt.feed(SERVER_HEADER + HANDSHAKE_OK)
        return attempt

    def refuse(self, attempt: Attempt, condition: str) -> None:
        attempt.feed(SERVER_HEADER + stream_error(condition) + CLOSE)
        attempt.lose()

    def link_for(self, seconds: float) -> None:
        """Complete the handshake of the last attempt, keep the link up
        ``seconds``, then lose it."""
        attempt = self.endpoint.last
        attempt.feed(SERVER_HEADER + HANDSHAKE_OK)
        self.clock.advance(seconds)
        attempt.lose(ConnectionLost())

    def retry_after(self, delay: float) -> bool:
        """Whether a new attempt is made exactly ``delay`` seconds from now."""
        before = self.endpoint.connects
        self.clock.advance(delay - 0.001)
        if self.endpoint.connects != before:
            return False
        self.clock.advance(0.001)
        return self.endpoint.connects == before + 1


@pytest.fixture
def harness() -> Harness:
    return Harness()


@pytest.fixture
def logs() -> Iterator[list[LogEvent]]:
    with capturedLogs() as events:
        yield events  # type: ignore[misc]


def test_starting_the_service_connects_and_writes_the_stream_header(harness: Harness) -> None:
    attempt = harness.start()
    assert harness.endpoint.connects == 1
    assert attempt.transport.value().startswith(CLIENT_HEADER_START)


def test_starting_the_service_starts_the_handlers(harness: Harness) -> None:
    harness.start()
    assert harness.handler.events == ["start"]


def test_accepted_handshake_links_the_component(harness: Harness) -> None:
    harness.connect()
    assert harness.component.connected


def test_when_connected_fires_only_after_the_handshake(harness: Harness) -> None:
    attempt = harness.start()
    connected = harness.service.whenConnected()
    assertNoResult(connected)
    attempt.feed(SERVER_HEADER + HANDSHAKE_OK)
    assert successResultOf(connected) is attempt.protocol


def test_not_authorized_waits_the_permanent_error_delay(harness: Harness) -> None:
    harness.refuse(harness.start(), "not-authorized")
    assert harness.retry_after(300.0)


def test_not_authorized_is_logged_as_an_error_mentioning_the_secret(
    harness: Harness, logs: list[LogEvent]
) -> None:
    harness.refuse(harness.start(), "not-authorized")
    errors = [formatEvent(e) for e in logs if e.get("log_level") == LogLevel.error]
    assert any("secret" in text and DOMAIN in text for text in errors), errors


def test_not_authorized_does_not_link_the_component(harness: Harness) -> None:
    harness.refuse(harness.start(), "not-authorized")
    assert not harness.component.connected


def test_host_unknown_waits_the_permanent_error_delay(harness: Harness) -> None:
    harness.refuse(harness.start(), "host-unknown")
    assert harness.retry_after(300.0)


def test_conflict_stands_by_trying_again_every_standby_delay(harness: Harness) -> None:
    # Another process serves the component: this one takes over soon after
    # it stops, however long it has waited.
    harness.refuse(harness.start(), "conflict")
    for attempt in range(2, 8):
        (retry,) = harness.clock.getDelayedCalls()
        assert retry.getTime() - harness.clock.seconds() == 5.0
        harness.clock.advance(5.0)
        assert harness.endpoint.connects == attempt
        harness.refuse(harness.endpoint.last, "conflict")


def test_standing_by_is_said_once_at_info(harness: Harness, logs: list[LogEvent]) -> None:
    harness.refuse(harness.start(), "conflict")
    harness.clock.advance(5.0)
    harness.refuse(harness.endpoint.last, "conflict")
    texts = [formatEvent(e) for e in logs if "standing by" in formatEvent(e)]
    assert len(texts) == 1
    assert not [e for e in logs if e.get("log_level") in (LogLevel.warn, LogLevel.error)]


def test_permanent_delay_after_transient_failures_is_not_backed_off(harness: Harness) -> None:
    harness.refuse(harness.start(), "system-shutdown")
    assert harness.retry_after(1.0)
    harness.refuse(harness.endpoint.last, "not-authorized")
    assert harness.retry_after(300.0)


def test_connection_refused_retries_after_the_short_backoff(harness: Harness) -> None:
    harness.endpoint.errors.append(ConnectionRefusedError())
    harness.service.startService()
    assert harness.endpoint.connects == 1
    assert harness.retry_after(1.0)


def test_dns_lookup_error_retries_after_the_short_backoff(harness: Harness) -> None:
    # The resolver may not be ready yet at boot: no long wait for that.
    harness.endpoint.errors.append(DNSLookupError("xmpp.example.org"))
    harness.service.startService()
    assert harness.retry_after(1.0)


def test_dns_lookup_error_is_logged_with_its_explanation(
    harness: Harness, logs: list[LogEvent]
) -> None:
    harness.endpoint.errors.append(DNSLookupError("xmpp.example.org"))
    harness.service.startService()
    assert any("does not resolve" in formatEvent(e) for e in logs)


def test_handshake_timeout_retries_after_the_short_backoff(harness: Harness) -> None:
    attempt = harness.start()
    harness.clock.advance(LinkSettings().handshake_timeout)
    assert attempt.transport.disconnected
    attempt.lose(ConnectionLost())
    assert harness.retry_after(1.0)


def test_jitter_stretches_the_retry_delay() -> None:
    harness = Harness(random=1.0)
    harness.refuse(harness.start(), "system-shutdown")
    assert harness.retry_after(1.5)


def test_drop_after_a_successful_handshake_reconnects_after_the_initial_delay(
    harness: Harness,
) -> None:
    first = harness.connect()
    first.lose(ConnectionLost())
    assert not harness.component.connected
    assert harness.retry_after(1.0)
    assert harness.endpoint.last is not first


def two_refusals(harness: Harness) -> None:
    """Two refused attempts, then a third one waiting for its handshake."""
    harness.refuse(harness.start(), "system-shutdown")
    harness.clock.advance(1.0)
    harness.refuse(harness.endpoint.last, "system-shutdown")
    harness.clock.advance(2.0)


def test_link_that_stayed_up_stable_after_resets_the_backoff(harness: Harness) -> None:
    two_refusals(harness)
    harness.link_for(60.0)
    assert harness.retry_after(1.0)


def test_link_lost_before_stable_after_counts_as_one_more_failure(harness: Harness) -> None:
    two_refusals(harness)
    harness.link_for(59.9)
    assert harness.retry_after(4.0)


def test_links_dropped_right_after_the_handshake_back_off_exponentially(
    harness: Harness,
) -> None:
    harness.start()
    for delay in (1.0, 2.0, 4.0, 8.0):
        harness.link_for(0)
        assert harness.retry_after(delay)


def test_short_link_is_logged_as_a_warning_with_its_duration(
    harness: Harness, logs: list[LogEvent]
) -> None:
    harness.start()
    harness.link_for(2.5)
    warnings = [formatEvent(e) for e in logs if e.get("log_level") == LogLevel.warn]
    assert f"The link of {DOMAIN} lasted only 2.5 s; counting it as a failure" in warnings


def test_stable_link_is_not_logged_as_a_failure(harness: Harness, logs: list[LogEvent]) -> None:
    harness.start()
    harness.link_for(60.0)
    assert not any("lasted only" in formatEvent(e) for e in logs)


def test_short_link_after_a_permanent_refusal_waits_the_short_backoff(harness: Harness) -> None:
    harness.refuse(harness.start(), "not-authorized")
    harness.clock.advance(300.0)
    harness.link_for(1.0)
    assert harness.retry_after(2.0)


def test_stopping_a_short_link_is_not_counted_as_a_failure(
    harness: Harness, logs: list[LogEvent]
) -> None:
    attempt = harness.connect()
    harness.service.stopService()
    attempt.feed(CLOSE)
    attempt.lose()
    assert not any("lasted only" in formatEvent(e) for e in logs)


def test_reconnection_uses_a_fresh_protocol(harness: Harness) -> None:
    first = harness.connect()
    first.lose(ConnectionLost())
    harness.clock.advance(1.0)
    second = harness.endpoint.last
    assert second.protocol is not first.protocol


def test_reconnection_writes_the_stream_header_again(harness: Harness) -> None:
    first = harness.connect()
    first.lose(ConnectionLost())
    harness.clock.advance(1.0)
    assert harness.endpoint.last.transport.value().startswith(CLIENT_HEADER_START)


def test_reconnection_parses_a_new_stream_from_scratch(harness: Harness) -> None:
    first = harness.connect()
    first.lose(ConnectionLost())
    harness.clock.advance(1.0)
    second = harness.endpoint.last
    second.feed(SERVER_HEADER + HANDSHAKE_OK)
    successResultOf(second.protocol.handshake_done)
    assert second.protocol.refusal is None
    assert harness.component.connected


def test_reconnected_component_sends_on_the_new_connection(harness: Harness) -> None:
    from empc.routing import make_stanza

    first = harness.connect()
    first.lose(ConnectionLost())
    harness.clock.advance(1.0)
    second = harness.endpoint.last
    second.feed(SERVER_HEADER + HANDSHAKE_OK)
    second.transport.clear()
    harness.component.send(make_stanza("message", {"to": "juliet@example.org"}))
    assert b"juliet@example.org" in second.transport.value()
    assert b"juliet@example.org" not in first.transport.value()


def test_stop_while_connected_writes_the_closing_tag(harness: Harness) -> None:
    attempt = harness.connect()
    attempt.transport.clear()
    harness.service.stopService()
    assert attempt.transport.value() == CLOSE


def test_stop_while_connected_completes_after_the_servers_close(harness: Harness) -> None:
    attempt = harness.connect()
    stopped = harness.service.stopService()
    assertNoResult(stopped)
    attempt.feed(CLOSE)
    assert attempt.transport.disconnecting
    assertNoResult(stopped)
    attempt.lose()
    assert successResultOf(stopped) is None


def test_stop_while_connected_stops_the_handlers(harness: Harness) -> None:
    attempt = harness.connect()
    harness.service.stopService()
    attempt.feed(CLOSE)
    attempt.lose()
    assert harness.handler.events == ["start", "stop"]


def test_stop_while_connected_does_not_reconnect(harness: Harness) -> None:
    attempt = harness.connect()
    harness.service.stopService()
    attempt.feed(CLOSE)
    attempt.lose()
    harness.clock.advance(3600)
    assert harness.endpoint.connects == 1


def test_stop_completes_even_when_the_server_never_closes(harness: Harness) -> None:
    attempt = harness.connect()
    stopped = harness.service.stopService()
    harness.clock.advance(LinkSettings().close_timeout)
    assert attempt.transport.disconnected
    attempt.lose(ConnectionLost())
    successResultOf(stopped)


def test_stop_while_waiting_to_retry_completes_at_once(harness: Harness) -> None:
    harness.refuse(harness.start(), "not-authorized")
    successResultOf(harness.service.stopService())
    harness.clock.advance(3600)
    assert harness.endpoint.connects == 1


def test_stop_during_the_handshake_drops_the_connection(harness: Harness) -> None:
    # A connection still in its handshake when the service stops must not
    # stay open (and must not go on to link the stopped component).
    attempt = harness.start()
    harness.service.stopService()
    attempt.feed(SERVER_HEADER + HANDSHAKE_OK)
    assert attempt.transport.disconnecting or attempt.transport.disconnected
    assert not harness.component.connected


def test_stopping_while_handlers_start_never_connects(harness: Harness) -> None:
    starting: Deferred[None] = Deferred()
    harness.service.component.start = lambda: starting  # type: ignore[method-assign]
    harness.service.startService()
    harness.service.stopService()
    starting.callback(None)
    assert harness.endpoint.connects == 0
    assert not harness.service.running


def test_a_handler_failing_to_start_calls_on_start_failure() -> None:
    failed: list[bool] = []
    component = Component(DOMAIN, [], Clock())
    component.start = lambda: fail(RuntimeError("no database"))  # type: ignore[method-assign]
    service = ComponentService(
        component, FakeEndpoint(), "secret", Clock(), on_start_failure=lambda: failed.append(True)
    )
    with capturedLogs():
        service.startService()
    assert failed == [True]
