"""ComponentProtocol over a StringTransport and a fake clock."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from empc import Component, Handler, LocalProtocolError, NotConnected, iq
from empc._connection import ComponentProtocol, HandshakeTimeout, LinkSettings, SendQueueFull
from empc.handlers import Ping
from empc.protocol import InvalidNamespace, NotAuthorized, SystemShutdown
from empc.routing import make_stanza

_trial = SynchronousTestCase()
successResultOf = _trial.successResultOf
failureResultOf = _trial.failureResultOf
assertNoResult = _trial.assertNoResult

DOMAIN = "echo.example.org"
SECRET = "s3cret"
STREAM_ID = "stream-42"
C = "{jabber:component:accept}"
SERVER_HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept'"
    b" xmlns:stream='http://etherx.jabber.org/streams' from='echo.example.org'"
    b" id='" + STREAM_ID.encode() + b"'>"
)
HANDSHAKE_OK = b"<handshake/>"
CLOSE = b"</stream:stream>"
NO_TIMERS = LinkSettings(keepalive_interval=0, ping_interval=0)


def stream_error(condition: str) -> bytes:
    return (
        b"<stream:error><" + condition.encode() + b" xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"</stream:error>"
    )


def parse(data: bytes) -> list[etree._Element]:
    """The stanzas in ``data``, written by the component after the handshake."""
    root = etree.fromstring(b"<wrap xmlns='jabber:component:accept'>" + data + b"</wrap>")
    return list(root)


class Link:
    """A protocol connected to a StringTransport, with its clock and component."""

    def __init__(
        self, settings: LinkSettings = NO_TIMERS, handlers: list[Handler] | None = None
    ) -> None:
        self.clock = Clock()
        self.settings = settings
        self.component = Component(DOMAIN, handlers or [Ping()], self.clock)
        self.protocol = ComponentProtocol(self.component, SECRET, self.clock, settings)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def feed(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def written(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def handshake(self) -> None:
        self.feed(SERVER_HEADER)
        self.feed(HANDSHAKE_OK)
        self.transport.clear()

    def lose(self, reason: BaseException | None = None) -> None:
        self.protocol.connectionLost(Failure(reason or ConnectionDone()))

    @property
    def aborted(self) -> bool:
        return bool(self.transport.disconnected)


@pytest.fixture
def link() -> Link:
    return Link()


@pytest.fixture
def ready() -> Link:
    link = Link()
    link.handshake()
    return link


@pytest.fixture
def logs() -> Iterator[list[LogEvent]]:
    with capturedLogs() as events:
        yield events  # type: ignore[misc]


def pinging(**settings: object) -> Link:
    """A linked connection that pings every 300 seconds and nothing else."""
    link = Link(
        LinkSettings(keepalive_interval=0, ping_interval=300, ping_timeout=60, **settings)  # type: ignore[arg-type]
    )
    link.handshake()
    return link


def ping_sent(link: Link) -> etree._Element:
    link.clock.advance(300)
    [ping] = parse(link.written())
    return ping


def answer(ping: etree._Element, type: str = "result", sender: str | None = None) -> bytes:
    return (
        f"<iq type='{type}' id='{ping.get('id')}' to='{DOMAIN}'"
        f" from='{sender or ping.get('to')}'/>".encode()
    )


# Opening and the handshake


def test_connection_made_writes_the_stream_header(link: Link) -> None:
    header = link.transport.value()
    assert header.startswith(b"<?xml version='1.0'?><stream:stream")
    assert b"xmlns='jabber:component:accept'" in header
    assert b'to="echo.example.org"' in header


def test_server_header_gets_the_handshake_digest(link: Link) -> None:
    link.transport.clear()
    link.feed(SERVER_HEADER)
    digest = hashlib.sha1((STREAM_ID + SECRET).encode()).hexdigest()
    [handshake] = parse(link.written())
    assert (handshake.tag, handshake.text) == (f"{C}handshake", digest)


def test_handshake_done_waits_for_the_servers_answer(link: Link) -> None:
    link.feed(SERVER_HEADER)
    assertNoResult(link.protocol.handshake_done)


def test_accepted_handshake_fires_handshake_done_with_no_refusal(link: Link) -> None:
    link.feed(SERVER_HEADER + HANDSHAKE_OK)
    assert successResultOf(link.protocol.handshake_done) is None
    assert link.protocol.refusal is None


def test_accepted_handshake_links_the_component(link: Link) -> None:
    assert not link.component.connected
    link.feed(SERVER_HEADER + HANDSHAKE_OK)
    assert link.component.connected


def test_accepted_handshake_is_logged(link: Link, logs: list[LogEvent]) -> None:
    link.feed(SERVER_HEADER + HANDSHAKE_OK)
    messages = [formatEvent(event) for event in logs]
    assert any("echo.example.org connected" in message for message in messages), messages


def test_handshake_split_across_reads_still_succeeds(link: Link) -> None:
    data = SERVER_HEADER + HANDSHAKE_OK
    for i in range(len(data)):
        link.feed(data[i : i + 1])
    successResultOf(link.protocol.handshake_done)
    assert link.protocol.refusal is None


def test_refused_handshake_fires_handshake_done_only_once_the_connection_is_gone(
    link: Link,
) -> None:
    link.feed(SERVER_HEADER + stream_error("not-authorized") + CLOSE)
    assertNoResult(link.protocol.handshake_done)
    link.lose()
    successResultOf(link.protocol.handshake_done)


def test_refused_handshake_sets_not_authorized_as_refusal(link: Link) -> None:
    link.feed(SERVER_HEADER + stream_error("not-authorized") + CLOSE)
    link.lose()
    assert isinstance(link.protocol.refusal, NotAuthorized)


def test_refused_handshake_does_not_link_the_component(link: Link) -> None:
    link.feed(SERVER_HEADER + stream_error("not-authorized") + CLOSE)
    link.lose()
    assert not link.component.connected


def test_servers_close_after_a_stream_error_drops_the_connection(link: Link) -> None:
    link.feed(SERVER_HEADER + stream_error("not-authorized") + CLOSE)
    assert link.transport.disconnecting


def test_connection_lost_during_the_handshake_is_the_refusal(link: Link) -> None:
    link.feed(SERVER_HEADER)
    link.lose(ConnectionLost())
    successResultOf(link.protocol.handshake_done)
    assert isinstance(link.protocol.refusal, ConnectionLost)


def test_handshake_timeout_aborts_the_connection(link: Link) -> None:
    link.feed(SERVER_HEADER)
    link.clock.advance(link.settings.handshake_timeout - 0.1)
    assert not link.aborted
    link.clock.advance(0.1)
    assert link.aborted


def test_handshake_timeout_is_the_refusal(link: Link) -> None:
    link.clock.advance(link.settings.handshake_timeout)
    link.lose(ConnectionLost())
    successResultOf(link.protocol.handshake_done)
    assert isinstance(link.protocol.refusal, HandshakeTimeout)


def test_accepted_handshake_cancels_the_handshake_timeout(ready: Link) -> None:
    ready.clock.advance(ready.settings.handshake_timeout * 2)
    assert not ready.aborted
    assert ready.clock.getDelayedCalls() == []


# Keepalive


def test_whitespace_keepalive_after_the_idle_interval() -> None:
    link = Link(LinkSettings(keepalive_interval=60, ping_interval=0))
    link.handshake()
    link.clock.advance(59)
    assert link.written() == b""
    link.clock.advance(1)
    assert link.written() == b" "


def test_whitespace_keepalive_repeats_while_idle() -> None:
    link = Link(LinkSettings(keepalive_interval=60, ping_interval=0))
    link.handshake()
    link.clock.pump([60, 60, 60])
    assert link.written() == b"   "


def test_no_keepalive_when_something_was_written_recently() -> None:
    link = Link(LinkSettings(keepalive_interval=60, ping_interval=0))
    link.handshake()
    link.clock.advance(30)
    link.protocol.send(make_stanza("message", {"to": "juliet@example.org"}))
    link.written()
    link.clock.advance(30)
    assert link.written() == b""


def test_keepalive_disabled_with_a_zero_interval(ready: Link) -> None:
    ready.clock.advance(3600)
    assert ready.written() == b""


def test_keepalive_stops_when_the_connection_is_lost() -> None:
    link = Link(LinkSettings(keepalive_interval=60, ping_interval=0))
    link.handshake()
    link.lose()
    assert link.clock.getDelayedCalls() == []


# Ping to the server


def test_ping_goes_to_the_parent_domain_after_the_ping_interval() -> None:
    link = pinging()
    link.clock.advance(299)
    assert link.written() == b""
    link.clock.advance(1)
    [ping] = parse(link.written())
    assert (ping.tag, ping.get("type"), ping.get("to"), ping.get("from")) == (
        f"{C}iq",
        "get",
        "example.org",
        DOMAIN,
    )
    assert [child.tag for child in ping] == ["{urn:xmpp:ping}ping"]
    assert ping.get("id")


def test_ping_goes_to_ping_target_when_set() -> None:
    ping = ping_sent(pinging(ping_target="xmpp.example.net"))
    assert ping.get("to") == "xmpp.example.net"


def test_ping_result_from_the_server_keeps_the_connection() -> None:
    link = pinging()
    link.feed(answer(ping_sent(link)))
    link.clock.advance(60)
    assert not link.aborted
    assert link.component.connected


def test_ping_error_from_the_server_keeps_the_connection() -> None:
    link = pinging()
    ping = ping_sent(link)
    link.feed(
        f"<iq type='error' id='{ping.get('id')}' to='{DOMAIN}' from='example.org'>"
        "<error type='cancel'><service-unavailable"
        " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>".encode()
    )
    link.clock.advance(60)
    assert not link.aborted


def test_unanswered_ping_aborts_the_connection_after_ping_timeout() -> None:
    link = pinging()
    ping_sent(link)
    link.clock.advance(59.9)
    assert not link.aborted
    link.clock.advance(0.1)
    assert link.aborted


def test_ping_answer_from_another_jid_is_ignored() -> None:
    link = pinging()
    link.feed(answer(ping_sent(link), sender="mallory.example.net"))
    link.clock.advance(60)
    assert link.aborted


def test_ping_answer_from_another_jid_gets_no_reply() -> None:
    link = pinging()
    link.feed(answer(ping_sent(link), sender="mallory.example.net"))
    assert link.written() == b""


def test_ping_repeats_after_an_answer() -> None:
    link = pinging()
    link.feed(answer(ping_sent(link)))
    second = ping_sent(link)
    assert second.get("to") == "example.org"


# Stanzas


def test_incoming_ping_from_a_user_is_answered_with_a_result(ready: Link) -> None:
    ready.feed(
        b"<iq type='get' id='u1' from='juliet@example.org/balcony' to='echo.example.org'>"
        b"<ping xmlns='urn:xmpp:ping'/></iq>"
    )
    [reply] = parse(ready.written())
    assert (reply.tag, reply.get("type"), reply.get("id")) == (f"{C}iq", "result", "u1")
    assert (reply.get("to"), reply.get("from")) == ("juliet@example.org/balcony", DOMAIN)
    assert len(reply) == 0


def test_unknown_iq_from_a_user_is_answered_with_service_unavailable(ready: Link) -> None:
    ready.feed(
        b"<iq type='get' id='u2' from='juliet@example.org' to='echo.example.org'>"
        b"<query xmlns='urn:example:nothing'/></iq>"
    )
    [reply] = parse(ready.written())
    assert reply.get("type") == "error"
    condition = f"{C}error/{{urn:ietf:params:xml:ns:xmpp-stanzas}}service-unavailable"
    assert reply.find(condition) is not None


def test_send_stamps_the_component_domain_as_from(ready: Link) -> None:
    ready.protocol.send(make_stanza("message", {"to": "juliet@example.org"}))
    [sent] = parse(ready.written())
    assert (sent.get("from"), sent.get("to")) == (DOMAIN, "juliet@example.org")


def test_send_keeps_a_from_inside_the_component_domain(ready: Link) -> None:
    ready.protocol.send(
        make_stanza("message", {"to": "juliet@example.org", "from": f"bot@{DOMAIN}"})
    )
    [sent] = parse(ready.written())
    assert sent.get("from") == f"bot@{DOMAIN}"


def test_send_refuses_a_foreign_from_without_writing(ready: Link) -> None:
    stanza = make_stanza("message", {"to": "juliet@example.org", "from": "romeo@example.org"})
    with pytest.raises(LocalProtocolError):
        ready.protocol.send(stanza)
    assert ready.written() == b""


def test_send_before_the_handshake_is_refused(link: Link) -> None:
    link.transport.clear()
    with pytest.raises(LocalProtocolError):
        link.protocol.send(make_stanza("message", {"to": "juliet@example.org"}))
    assert link.written() == b""


# Closing


def test_close_writes_the_closing_tag(ready: Link) -> None:
    ready.protocol.close()
    assert ready.written() == CLOSE


def test_close_fires_once_the_connection_is_lost_after_the_servers_close(ready: Link) -> None:
    closed = ready.protocol.close()
    assertNoResult(closed)
    ready.feed(CLOSE)
    assert ready.transport.disconnecting
    assertNoResult(closed)
    ready.lose()
    assert successResultOf(closed) is None


def test_clean_close_does_not_abort(ready: Link) -> None:
    ready.protocol.close()
    ready.feed(CLOSE)
    ready.lose()
    ready.clock.advance(ready.settings.close_timeout * 2)
    assert not ready.aborted
    assert ready.clock.getDelayedCalls() == []


def test_close_aborts_after_close_timeout_when_the_server_never_closes(ready: Link) -> None:
    closed = ready.protocol.close()
    ready.clock.advance(ready.settings.close_timeout - 0.1)
    assert not ready.aborted
    ready.clock.advance(0.1)
    assert ready.aborted
    ready.lose(ConnectionLost())
    successResultOf(closed)


def test_close_after_the_connection_is_lost_fires_at_once(ready: Link) -> None:
    ready.lose()
    assert successResultOf(ready.protocol.close()) is None


def test_closing_twice_leaves_no_timer_behind(ready: Link) -> None:
    first = ready.protocol.close()
    second = ready.protocol.close()
    ready.feed(CLOSE)
    ready.lose()
    successResultOf(first)
    successResultOf(second)
    assert ready.clock.getDelayedCalls() == []


def test_servers_close_is_answered_and_drops_the_connection(ready: Link) -> None:
    ready.feed(CLOSE)
    assert ready.written() == CLOSE
    assert ready.transport.disconnecting


def test_stream_error_after_the_handshake_is_answered_with_the_closing_tag(
    ready: Link,
) -> None:
    ready.feed(stream_error("system-shutdown"))
    assert ready.written() == CLOSE


def test_stream_error_after_the_handshake_is_logged(ready: Link, logs: list[LogEvent]) -> None:
    ready.feed(stream_error("system-shutdown"))
    assert any("system-shutdown" in formatEvent(event) for event in logs)


def test_stream_error_without_the_servers_close_drops_the_connection_after_close_timeout(
    ready: Link,
) -> None:
    # After a stream error the stream is over: if the server then neither
    # closes its stream nor the TCP connection, the connection must not stay
    # up for ever (pings can no longer be sent on a closing stream).
    ready.feed(stream_error("system-shutdown"))
    ready.clock.advance(ready.settings.close_timeout)
    assert ready.transport.disconnecting or ready.aborted


def test_stream_error_condition_is_recorded_when_refused_during_handshake(link: Link) -> None:
    link.feed(SERVER_HEADER + stream_error("system-shutdown"))
    link.lose()
    assert isinstance(link.protocol.refusal, SystemShutdown)


# Protocol violations and connection loss


def test_restricted_xml_writes_the_stream_error_and_closes(ready: Link) -> None:
    ready.feed(b"<!-- a comment -->")
    written = ready.written()
    assert b"<stream:error" in written
    assert b'<restricted-xml xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>' in written
    assert written.endswith(CLOSE)


def test_restricted_xml_loses_the_connection(ready: Link) -> None:
    ready.feed(b"<!DOCTYPE foo>")
    assert ready.transport.disconnecting


def test_restricted_xml_during_the_handshake_is_the_refusal(link: Link) -> None:
    link.feed(SERVER_HEADER + b"<?pi x?>")
    assert link.transport.disconnecting
    link.lose()
    successResultOf(link.protocol.handshake_done)
    assert link.protocol.refusal is not None


def test_connection_loss_fails_pending_requests(ready: Link) -> None:
    iq = make_stanza("iq", {"type": "get", "to": "example.org"})
    etree.SubElement(iq, "{urn:xmpp:ping}ping")
    d = ready.component.request(iq)
    ready.lose(ConnectionLost())
    failureResultOf(d, ConnectionLost)


def test_connection_loss_unlinks_the_component(ready: Link) -> None:
    ready.lose(ConnectionLost())
    assert not ready.component.connected


def test_connection_loss_fires_when_lost_waiters(ready: Link) -> None:
    lost = ready.protocol.when_lost()
    assertNoResult(lost)
    ready.lose()
    successResultOf(lost)


def test_stanzas_received_in_one_read_are_answered_in_one_write(ready: Link) -> None:
    writes: list[bytes] = []
    original = ready.transport.write

    def record(data: bytes) -> None:
        writes.append(data)
        original(data)

    ready.transport.write = record  # type: ignore[method-assign]
    ping = (
        b"<iq type='get' id='%d' from='juliet@example.org' to='echo.example.org'>"
        b"<ping xmlns='urn:xmpp:ping'/></iq>"
    )
    ready.feed(ping % 1 + ping % 2)
    assert len(writes) == 1
    assert [s.get("id") for s in parse(writes[0])] == ["1", "2"]


def test_protocol_becomes_the_streaming_producer_of_its_transport_once_ready(
    link: Link,
) -> None:
    # Not before: a TLS transport pauses its producer during its handshake.
    assert link.transport.producer is None
    link.handshake()
    assert link.transport.producer is link.protocol
    assert link.transport.streaming


def test_a_full_write_buffer_stops_reading_until_it_drains(ready: Link) -> None:
    ready.protocol.pauseProducing()  # what the transport does when its buffer fills
    assert ready.transport.producerState == "paused"
    ready.protocol.resumeProducing()
    assert ready.transport.producerState == "producing"


def chat_to_user(n: int) -> etree._Element:
    stanza = make_stanza("message", {"to": "user@example.org", "type": "chat", "id": str(n)})
    etree.SubElement(stanza, f"{C}body").text = "x" * 100
    return stanza


def test_sends_past_max_send_queue_while_the_server_does_not_read_are_refused() -> None:
    link = Link(LinkSettings(keepalive_interval=0, ping_interval=0, max_send_queue=1000))
    link.handshake()
    link.protocol.pauseProducing()
    sent = 0
    with pytest.raises(SendQueueFull):
        for n in range(100):
            link.component.send(chat_to_user(n))
            sent += 1
    assert 1000 <= len(link.written()) < 1000 + 200
    assert sent < 100


def test_once_the_buffer_drains_sending_works_again() -> None:
    link = Link(LinkSettings(keepalive_interval=0, ping_interval=0, max_send_queue=100))
    link.handshake()
    link.protocol.pauseProducing()
    link.component.send(chat_to_user(1))
    with pytest.raises(SendQueueFull):
        link.component.send(chat_to_user(2))
    link.protocol.resumeProducing()
    link.component.send(chat_to_user(3))
    assert [s.get("id") for s in parse(link.written())] == ["1", "3"]


def test_what_was_sent_while_the_server_did_not_read_is_counted_at_an_abort(
    ready: Link, logs: list[LogEvent]
) -> None:
    ready.protocol.pauseProducing()
    for n in range(3):
        ready.component.send(chat_to_user(n))
    ready.protocol.close()
    ready.clock.advance(ready.settings.close_timeout)
    assert ready.aborted
    assert any("Up to 3 stanzas" in formatEvent(event) for event in logs)


def test_a_clean_disconnect_fails_pending_requests_with_connection_lost(ready: Link) -> None:
    ping = make_stanza("iq", {"type": "get", "to": "example.org"})
    etree.SubElement(ping, "{urn:xmpp:ping}ping")
    answer = ready.component.request(ping)
    ready.lose(ConnectionDone())
    SynchronousTestCase().failureResultOf(answer, ConnectionLost)


def test_after_a_stream_error_sends_raise_not_connected(ready: Link) -> None:
    ready.feed(stream_error("system-shutdown"))
    reply = make_stanza("message", {"to": "alice@example.org"})
    with pytest.raises(NotConnected):
        ready.component.send(reply)


def test_a_client_port_answer_during_the_handshake_is_the_refusal(link: Link) -> None:
    link.feed(
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
        b" xmlns='jabber:client' id='c2s'>"
    )
    link.lose()
    assert isinstance(link.protocol.refusal, InvalidNamespace)


def test_a_server_that_never_lets_go_after_a_violation_is_aborted(ready: Link) -> None:
    ready.feed(b"<!-- a comment -->")
    assert ready.transport.disconnecting and not ready.aborted
    ready.clock.advance(ready.settings.close_timeout)
    assert ready.aborted


_STANZA_BITS = st.sampled_from(
    [
        b"<iq type='get' id='1' from='a@example.org/r' to='echo.example.org'>",
        b"<ping xmlns='urn:xmpp:ping'/>",
        b"<query xmlns='http://jabber.org/protocol/disco#info'/>",
        b"</iq>",
        b"<message type='chat' from='a@example.org/r' to='echo.example.org'><body>",
        b"</body></message>",
        b"<presence/>",
        b"&amp;",
        b"&lol;",
        b"<!--",
        b"<?pi?>",
        b"<iq type='set'/>",
        b"<iq type='result' id='x'/>",
        b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        b"</stream:stream>",
    ]
)


@settings(deadline=None, max_examples=200)
@given(parts=st.lists(_STANZA_BITS | st.binary(max_size=12), max_size=12), split=st.integers(1, 40))
def test_no_input_from_the_server_makes_the_protocol_raise(parts: list[bytes], split: int) -> None:
    link = Link()
    link.handshake()
    data = b"".join(parts)
    with capturedLogs():
        for start in range(0, len(data), split):
            link.feed(data[start : start + split])  # must never raise
    # Whatever happened went out as stanzas or one well-formed stream error.
    written = link.transport.value()
    assert written.count(b"<stream:error>") <= 1


# Every IQ answered once, whatever the read it shares with the stream's end


class Slow(Handler):
    """Answers its IQs when the test fires the Deferred it handed out."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Deferred[None]] = []

    @iq("get", "{urn:example:slow}query")
    def query(self, stanza: etree._Element) -> Deferred[None]:
        waiting: Deferred[None] = Deferred()
        self.waiting.append(waiting)
        return waiting


PING = b"<iq type='get' id='ping-1' from='user@example.org/r' to='echo.example.org'>" + (
    b"<ping xmlns='urn:xmpp:ping'/></iq>"
)
SLOW = b"<iq type='get' id='slow-1' from='user@example.org/r' to='echo.example.org'>" + (
    b"<query xmlns='urn:example:slow'/></iq>"
)


def slow_link() -> tuple[Link, Slow]:
    slow = Slow()
    link = Link(handlers=[slow, Ping()])
    link.handshake()
    return link, slow


@pytest.mark.parametrize(
    "end",
    [
        pytest.param(CLOSE, id="server close"),
        pytest.param(stream_error("system-shutdown") + CLOSE, id="stream error"),
        pytest.param(b"<message><!-- no --></message>", id="restricted xml"),
        pytest.param(b"<message></iq>", id="not well-formed"),
    ],
)
def test_iq_in_the_same_read_as_the_streams_end_is_answered_before_our_close(
    ready: Link, end: bytes, logs: list[LogEvent]
) -> None:
    ready.feed(PING + end)
    written = ready.written()
    assert written.endswith(CLOSE)
    reply, *_ = parse(written[: -len(CLOSE)].replace(b"stream:error", b"error"))
    assert (reply.get("type"), reply.get("id")) == ("result", "ping-1")
    assert ready.transport.disconnecting


def test_reply_still_running_when_the_server_closes_goes_out_before_our_close() -> None:
    link, slow = slow_link()
    link.feed(SLOW + CLOSE)
    assert link.written() == b""  # our close waits for the reply
    slow.waiting[0].callback(None)
    written = link.written()
    assert written.startswith(b"<iq") and written.endswith(CLOSE)
    (reply,) = parse(written[: -len(CLOSE)])
    assert (reply.get("type"), reply.get("id")) == ("result", "slow-1")
    assert link.transport.disconnecting


def test_after_the_servers_close_handlers_can_no_longer_send() -> None:
    link, _ = slow_link()
    link.feed(SLOW + CLOSE)
    assert not link.component.connected
    with pytest.raises(NotConnected):
        link.component.send(make_stanza("message", {"to": "user@example.org"}))


def test_reply_still_running_after_the_grace_is_dropped_and_counted(
    logs: list[LogEvent],
) -> None:
    link, slow = slow_link()
    link.feed(SLOW + CLOSE)
    link.clock.advance(link.settings.grace)
    assert link.written() == CLOSE
    assert any("1 stanzas still unanswered" in formatEvent(event) for event in logs)
    slow.waiting[0].callback(None)
    assert link.written() == b""


def test_our_close_lets_running_replies_out_first() -> None:
    link, slow = slow_link()
    link.feed(SLOW)
    closed = link.protocol.close()
    assert link.written() == b""
    assert not link.component.connected
    slow.waiting[0].callback(None)
    written = link.written()
    assert written.startswith(b"<iq") and written.endswith(CLOSE)
    link.feed(CLOSE)
    link.lose()
    successResultOf(closed)


def test_max_depth_reaches_the_parser() -> None:
    link = Link(LinkSettings(keepalive_interval=0, ping_interval=0, max_depth=2))
    link.handshake()
    link.feed(b"<message><a><b/></a></message>")
    written = link.written()
    assert b"<policy-violation" in written and written.endswith(CLOSE)


def test_iq_request_arriving_after_our_close_is_not_run(logs: list[LogEvent]) -> None:
    link, slow = slow_link()
    link.protocol.close()
    assert link.written() == CLOSE
    link.feed(SLOW)
    assert slow.waiting == []
    assert link.written() == b""
    assert any("closed its stream: no answer could go out" in formatEvent(e) for e in logs)


def test_a_server_that_stops_reading_until_the_send_queue_is_full_is_dropped_at_the_next_ping() -> (
    None
):
    link = Link(
        LinkSettings(keepalive_interval=0, ping_interval=300, ping_timeout=60, max_send_queue=100)
    )
    link.handshake()
    link.protocol.pauseProducing()
    link.component.send(chat_to_user(1))
    with capturedLogs():
        link.clock.advance(300)
    assert link.aborted


def test_connection_lost_during_the_drain_leaves_no_timer_and_no_false_alarm(
    logs: list[LogEvent],
) -> None:
    link, _ = slow_link()
    link.feed(SLOW + CLOSE)
    link.lose()
    # Only the action's own deadline is left (the default 30 seconds).
    assert [call.getTime() for call in link.clock.getDelayedCalls()] == [30.0]
    link.clock.advance(link.settings.grace)
    assert not any("still unanswered" in formatEvent(event) for event in logs)


def test_iq_request_arriving_during_our_drain_is_refused_at_once_with_wait() -> None:
    link, slow = slow_link()
    link.feed(SLOW.replace(b"slow-1", b"first"))
    link.protocol.close()
    link.feed(SLOW.replace(b"slow-1", b"late"))
    (refused,) = parse(link.written())
    assert (refused.get("id"), refused.get("type")) == ("late", "error")
    error = refused.find(f"{C}error")
    assert error is not None and error.get("type") == "wait"
    assert len(slow.waiting) == 1  # only the first one runs
    slow.waiting[0].callback(None)
    assert link.written().endswith(CLOSE)


# The debug switch: every stanza in and out, masked


def stanza_lines(logs: list[LogEvent]) -> list[str]:
    return [formatEvent(event) for event in logs if "Stanza " in formatEvent(event)]


def test_with_the_debug_switch_every_stanza_in_and_out_is_logged_masked_at_debug(
    logs: list[LogEvent],
) -> None:
    link = Link(LinkSettings(keepalive_interval=0, ping_interval=0, log_stanzas=True))
    link.handshake()
    link.feed(PING)
    link.feed(
        b"<message type='chat' from='user@example.org/r' to='echo.example.org'>"
        b"<body>my password is hunter2</body></message>"
    )
    lines = stanza_lines(logs)
    assert len(lines) == 3, lines
    assert lines[0].startswith("Stanza in on echo.example.org: <iq")
    assert "ping-1" in lines[0]
    assert lines[1].startswith("Stanza out on echo.example.org: <iq")
    assert 'type="result"' in lines[1] and "ping-1" in lines[1]
    assert "hunter2" not in lines[2] and "[22 characters]" in lines[2]
    levels = {event["log_level"].name for event in logs if "Stanza " in formatEvent(event)}
    assert levels == {"debug"}


def test_without_the_debug_switch_no_stanza_is_logged(ready: Link, logs: list[LogEvent]) -> None:
    ready.feed(PING)
    assert parse(ready.written())[0].get("type") == "result"
    assert stanza_lines(logs) == []


class Asking(Handler):
    """Answers its IQ once the server has answered a ping of its own."""

    @iq("get", "{urn:example:ask}query")
    async def query(self, stanza: etree._Element) -> None:
        ping = make_stanza("iq", {"type": "get", "to": "example.org"})
        etree.SubElement(ping, "{urn:xmpp:ping}ping")
        await self.component.request(ping)


def test_an_action_waiting_for_an_answer_at_our_close_gets_it_and_replies() -> None:
    link = Link(handlers=[Asking()])
    link.handshake()
    link.feed(
        b"<iq type='get' id='ask-1' from='user@example.org/r' to='echo.example.org'>"
        b"<query xmlns='urn:example:ask'/></iq>"
    )
    [request] = parse(link.written())
    link.protocol.close()
    assert link.written() == b""  # our close waits for the action
    link.feed(answer(request))
    written = link.written()
    assert written.endswith(CLOSE)
    [reply] = parse(written[: -len(CLOSE)])
    assert (reply.get("id"), reply.get("type")) == ("ask-1", "result")
