"""ComponentStream: the XEP-0114 state machine, driven with plain bytes."""

from __future__ import annotations

import pytest
from lxml import etree

from empc.protocol import (
    NS_COMPONENT,
    NS_STREAM_ERRORS,
    NS_STREAMS,
    Authenticated,
    BadFormat,
    ComponentStream,
    Conflict,
    HostUnknown,
    InvalidNamespace,
    LocalProtocolError,
    NotAuthorized,
    NotWellFormed,
    ProtocolViolation,
    RestrictedContent,
    RestrictedXML,
    ServerClosed,
    StanzaReceived,
    State,
    StreamClosed,
    StreamError,
    StreamErrorReceived,
    StreamOpened,
    SystemShutdown,
    UndefinedCondition,
    UnsupportedStanzaType,
    handshake_digest,
    new_element,
)

DOMAIN = "echo.example.org"
SECRET = "test"
STREAM_ID = "3BF96D32"
XEP_0114_HANDSHAKE = "aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e"
CLOSE = b"</stream:stream>"


def server_header(
    stream_id: str | None = STREAM_ID,
    default_ns: str = NS_COMPONENT,
    stream_ns: str = NS_STREAMS,
) -> bytes:
    id_attr = f" id='{stream_id}'" if stream_id is not None else ""
    return (
        f"<?xml version='1.0'?><stream:stream xmlns:stream='{stream_ns}'"
        f" xmlns='{default_ns}' from='{DOMAIN}'{id_attr}>"
    ).encode()


def stream_error(condition: str, text: str | None = None) -> bytes:
    text_element = f"<text xmlns='{NS_STREAM_ERRORS}'>{text}</text>" if text else ""
    return (
        f"<stream:error><{condition} xmlns='{NS_STREAM_ERRORS}'/>{text_element}</stream:error>"
    ).encode()


def parse_sent(data: bytes) -> list[etree._Element]:
    """Parse bytes sent mid-stream (no close tag) into elements."""
    wrapped = (
        f"<wrapper xmlns='{NS_COMPONENT}' xmlns:stream='{NS_STREAMS}'>".encode()
        + data
        + b"</wrapper>"
    )
    return list(etree.fromstring(wrapped))


def opening(domain: str = DOMAIN, secret: str = SECRET) -> ComponentStream:
    stream = ComponentStream(domain, secret)
    stream.open()
    stream.data_to_send()
    return stream


def handshaking(secret: str = SECRET) -> ComponentStream:
    stream = opening(secret=secret)
    stream.receive(server_header())
    stream.data_to_send()
    return stream


def ready() -> ComponentStream:
    stream = handshaking()
    stream.receive(b"<handshake/>")
    stream.data_to_send()
    assert stream.state is State.READY
    return stream


def closing() -> ComponentStream:
    stream = ready()
    stream.close()
    stream.data_to_send()
    return stream


def closed() -> ComponentStream:
    stream = closing()
    stream.receive(CLOSE)
    stream.data_to_send()
    assert stream.state is State.CLOSED
    return stream


def message(**attributes: str) -> etree._Element:
    return new_element(NS_COMPONENT, "message", attributes)


def assert_sent_stream_error(data: bytes, error_type: type[StreamError]) -> None:
    assert data.endswith(CLOSE), data
    assert data.count(CLOSE) == 1, data
    (error,) = parse_sent(data[: -len(CLOSE)])
    assert error.tag == f"{{{NS_STREAMS}}}error"
    conditions = [
        etree.QName(child).localname
        for child in error
        if etree.QName(child).namespace == NS_STREAM_ERRORS
        and etree.QName(child).localname != "text"
    ]
    assert conditions == [error_type.condition]


# -- opening and the handshake ---------------------------------------------------


def test_new_stream_is_idle() -> None:
    stream = ComponentStream(DOMAIN, SECRET)
    assert stream.state is State.IDLE
    assert stream.data_to_send() == b""


def test_open_writes_a_component_stream_header_to_the_domain() -> None:
    stream = ComponentStream(DOMAIN, SECRET)
    stream.open()
    header = etree.fromstring(stream.data_to_send() + CLOSE)
    assert header.tag == f"{{{NS_STREAMS}}}stream"
    assert header.nsmap[None] == NS_COMPONENT
    assert header.nsmap["stream"] == NS_STREAMS
    assert header.get("to") == DOMAIN
    assert len(header) == 0


def test_open_moves_to_opening() -> None:
    stream = ComponentStream(DOMAIN, SECRET)
    stream.open()
    assert stream.state is State.OPENING


def test_open_addresses_the_lower_cased_domain() -> None:
    stream = ComponentStream("Echo.Example.ORG", SECRET)
    stream.open()
    header = etree.fromstring(stream.data_to_send() + CLOSE)
    assert header.get("to") == DOMAIN
    assert stream.domain == DOMAIN


def test_open_twice_raises_local_protocol_error() -> None:
    stream = opening()
    with pytest.raises(LocalProtocolError):
        stream.open()
    assert stream.data_to_send() == b""
    assert stream.state is State.OPENING


def test_domain_that_is_not_a_jid_is_refused() -> None:
    with pytest.raises(ValueError):
        ComponentStream("not a domain", SECRET)


def test_handshake_digest_matches_the_xep_0114_example() -> None:
    assert handshake_digest(STREAM_ID, SECRET) == XEP_0114_HANDSHAKE


def test_server_header_is_answered_with_the_xep_0114_handshake() -> None:
    stream = opening()
    stream.receive(server_header())
    (handshake,) = parse_sent(stream.data_to_send())
    assert handshake.tag == f"{{{NS_COMPONENT}}}handshake"
    assert handshake.text == XEP_0114_HANDSHAKE
    assert len(handshake) == 0


def test_server_header_gives_stream_opened_with_its_id() -> None:
    stream = opening()
    assert stream.receive(server_header()) == [StreamOpened(STREAM_ID)]
    assert stream.stream_id == STREAM_ID
    assert stream.state is State.HANDSHAKING


def test_server_header_split_byte_by_byte_is_answered_once() -> None:
    stream = opening()
    data = server_header()
    events = []
    for i in range(len(data)):
        events += stream.receive(data[i : i + 1])
    assert events == [StreamOpened(STREAM_ID)]
    (handshake,) = parse_sent(stream.data_to_send())
    assert handshake.text == XEP_0114_HANDSHAKE


def test_empty_handshake_from_server_authenticates() -> None:
    stream = handshaking()
    assert stream.receive(b"<handshake/>") == [Authenticated()]
    assert stream.state is State.READY
    assert stream.data_to_send() == b""


def test_header_and_handshake_in_one_chunk_authenticate() -> None:
    stream = opening()
    events = stream.receive(server_header() + b"<handshake/>")
    assert events == [StreamOpened(STREAM_ID), Authenticated()]
    assert stream.state is State.READY


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(server_header(default_ns="jabber:client"), id="client-namespace"),
        pytest.param(server_header(default_ns="jabber:server"), id="server-namespace"),
        pytest.param(server_header(stream_ns="urn:example:bogus"), id="bogus-stream-namespace"),
    ],
)
def test_header_in_the_wrong_namespace_is_invalid_namespace(header: bytes) -> None:
    stream = opening()
    (event,) = stream.receive(header)
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, InvalidNamespace)
    assert_sent_stream_error(stream.data_to_send(), InvalidNamespace)
    assert stream.state is State.CLOSING


def test_header_without_id_is_bad_format() -> None:
    stream = opening()
    (event,) = stream.receive(server_header(stream_id=None))
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, BadFormat)
    assert_sent_stream_error(stream.data_to_send(), BadFormat)
    assert stream.state is State.CLOSING


def test_header_with_empty_id_is_bad_format() -> None:
    stream = opening()
    (event,) = stream.receive(server_header(stream_id=""))
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, BadFormat)


def test_header_in_the_wrong_namespace_sends_no_handshake() -> None:
    stream = opening()
    stream.receive(server_header(default_ns="jabber:client"))
    sent = stream.data_to_send()
    assert b"handshake" not in sent
    assert handshake_digest(STREAM_ID, SECRET).encode() not in sent


def test_stanza_before_the_handshake_is_a_violation() -> None:
    stream = handshaking()
    (event,) = stream.receive(b"<message to='echo.example.org'/>")
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, UnsupportedStanzaType)
    assert_sent_stream_error(stream.data_to_send(), UnsupportedStanzaType)


# -- receiving -------------------------------------------------------------------


def test_received_stanza_gives_stanza_received() -> None:
    stream = ready()
    (event,) = stream.receive(b"<message to='echo.example.org' from='a@example.org'/>")
    assert isinstance(event, StanzaReceived)
    assert event.stanza.tag == f"{{{NS_COMPONENT}}}message"
    assert event.stanza.get("from") == "a@example.org"


@pytest.mark.parametrize("name", ["message", "presence", "iq"])
def test_each_stanza_kind_is_received(name: str) -> None:
    stream = ready()
    (event,) = stream.receive(f"<{name} to='echo.example.org'/>".encode())
    assert isinstance(event, StanzaReceived)
    assert event.stanza.tag == f"{{{NS_COMPONENT}}}{name}"


def test_received_stanzas_keep_their_order() -> None:
    stream = ready()
    events = stream.receive(b"<message id='1'/><iq id='2'/><presence id='3'/>")
    assert [e.stanza.get("id") for e in events if isinstance(e, StanzaReceived)] == [
        "1",
        "2",
        "3",
    ]


def test_received_stanza_does_not_send_anything() -> None:
    stream = ready()
    stream.receive(b"<message to='echo.example.org'/>")
    assert stream.data_to_send() == b""


@pytest.mark.parametrize(
    ("condition", "error_type"),
    [
        ("not-authorized", NotAuthorized),
        ("host-unknown", HostUnknown),
        ("conflict", Conflict),
        ("invalid-namespace", InvalidNamespace),
        ("system-shutdown", SystemShutdown),
        ("made-up-condition", UndefinedCondition),
    ],
)
def test_received_stream_error_maps_to_its_typed_class(
    condition: str, error_type: type[StreamError]
) -> None:
    stream = ready()
    (event,) = stream.receive(stream_error(condition))
    assert isinstance(event, StreamErrorReceived)
    assert type(event.error) is error_type


def test_received_stream_error_keeps_its_text() -> None:
    stream = handshaking()
    (event,) = stream.receive(stream_error("not-authorized", "bad secret"))
    assert isinstance(event, StreamErrorReceived)
    assert event.error == NotAuthorized("bad secret")
    assert event.error.text == "bad secret"


def test_received_stream_error_text_before_the_condition_is_kept() -> None:
    stream = ready()
    data = (
        f"<stream:error><text xmlns='{NS_STREAM_ERRORS}'>bye</text>"
        f"<system-shutdown xmlns='{NS_STREAM_ERRORS}'/></stream:error>"
    ).encode()
    (event,) = stream.receive(data)
    assert isinstance(event, StreamErrorReceived)
    assert event.error == SystemShutdown("bye")


def test_received_stream_error_without_text_has_none() -> None:
    stream = ready()
    (event,) = stream.receive(stream_error("conflict"))
    assert isinstance(event, StreamErrorReceived)
    assert event.error.text is None


def test_received_stream_error_drains_until_close_then_sends_the_close_tag_only() -> None:
    stream = ready()
    stream.receive(stream_error("conflict"))
    assert stream.state is State.DRAINING
    assert stream.data_to_send() == b""
    stream.close()
    assert stream.data_to_send() == CLOSE
    assert stream.state is State.CLOSING


def test_received_stream_error_then_close_tag_closes_the_stream_on_our_close() -> None:
    stream = ready()
    events = stream.receive(stream_error("system-shutdown") + CLOSE)
    assert events == [StreamErrorReceived(SystemShutdown())]
    assert stream.state is State.DRAINING
    stream.close()
    assert stream.data_to_send() == CLOSE
    assert stream.state is State.CLOSED


def test_stream_error_before_ready_is_answered_with_the_close_tag_at_once() -> None:
    stream = handshaking()
    events = stream.receive(stream_error("not-authorized"))
    assert events == [StreamErrorReceived(NotAuthorized())]
    assert stream.data_to_send() == CLOSE
    assert stream.state is State.CLOSING


@pytest.mark.parametrize(
    ("error_type", "permanent"),
    [
        (NotAuthorized, True),
        (HostUnknown, True),
        (InvalidNamespace, True),
        (Conflict, False),
        (SystemShutdown, False),
    ],
)
def test_stream_error_permanence(error_type: type[StreamError], permanent: bool) -> None:
    assert error_type.permanent is permanent
    assert error_type("some text").permanent is permanent


# -- violations ------------------------------------------------------------------


def test_restricted_xml_is_answered_with_a_stream_error_and_the_close_tag() -> None:
    stream = ready()
    (event,) = stream.receive(b"<message><!-- no --></message>")
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, RestrictedXML)
    assert stream.state is State.DRAINING
    stream.close()
    assert_sent_stream_error(stream.data_to_send(), RestrictedXML)
    assert stream.state is State.CLOSING


def test_malformed_xml_is_answered_with_not_well_formed() -> None:
    stream = ready()
    (event,) = stream.receive(b"<message></iq>")
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, NotWellFormed)
    stream.close()
    assert_sent_stream_error(stream.data_to_send(), NotWellFormed)


def test_unexpected_top_level_element_is_unsupported_stanza_type() -> None:
    stream = ready()
    (event,) = stream.receive(b"<foo xmlns='urn:example:foo'/>")
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, UnsupportedStanzaType)
    stream.close()
    assert_sent_stream_error(stream.data_to_send(), UnsupportedStanzaType)


def test_violation_before_ready_is_answered_at_once() -> None:
    stream = handshaking()
    (event,) = stream.receive(b"<message><!-- no --></message>")
    assert isinstance(event, ProtocolViolation)
    assert_sent_stream_error(stream.data_to_send(), RestrictedXML)
    assert stream.state is State.CLOSING


def test_replies_sent_while_draining_go_out_before_the_stream_error() -> None:
    stream = ready()
    events = stream.receive(b"<iq type='get' id='1'/><message><!-- no --></message>")
    assert isinstance(events[0], StanzaReceived)
    assert isinstance(events[1], ProtocolViolation)
    stream.send(message(to="juliet@example.org"))
    stream.close()
    data = stream.data_to_send()
    assert data.index(b"<message") < data.index(b"<stream:error")
    assert_sent_stream_error(data[data.index(b"<stream:error") :], RestrictedXML)


def test_fail_while_draining_replaces_the_pending_error() -> None:
    stream = ready()
    stream.receive(b"<message><!-- no --></message>")
    stream.fail(Conflict())
    assert_sent_stream_error(stream.data_to_send(), Conflict)
    stream.close()
    assert stream.data_to_send() == b""


def test_fail_sends_the_error_text() -> None:
    stream = ready()
    stream.fail(Conflict("replaced"))
    data = stream.data_to_send()
    assert_sent_stream_error(data, Conflict)
    (error,) = parse_sent(data[: -len(CLOSE)])
    text = error.find(f"{{{NS_STREAM_ERRORS}}}text")
    assert text is not None
    assert text.text == "replaced"


def test_nothing_is_sent_after_a_violation_once_closed() -> None:
    stream = ready()
    stream.receive(b"<message><!-- no --></message>")
    stream.close()
    stream.data_to_send()
    assert stream.receive(b"<message/><iq/>") == []
    stream.fail(Conflict())
    stream.close()
    assert stream.data_to_send() == b""


# -- closing ---------------------------------------------------------------------


def test_close_sends_the_close_tag_and_moves_to_closing() -> None:
    stream = ready()
    stream.close()
    assert stream.data_to_send() == CLOSE
    assert stream.state is State.CLOSING


def test_close_twice_sends_the_close_tag_once() -> None:
    stream = ready()
    stream.close()
    stream.close()
    assert stream.data_to_send() == CLOSE


def test_server_close_tag_after_ours_closes_the_stream() -> None:
    stream = closing()
    assert stream.receive(CLOSE) == [StreamClosed()]
    assert stream.state is State.CLOSED
    assert stream.data_to_send() == b""


def test_stanza_received_while_closing_is_still_delivered() -> None:
    stream = closing()
    events = stream.receive(b"<message id='late'/>" + CLOSE)
    assert isinstance(events[0], StanzaReceived)
    assert events[0].stanza.get("id") == "late"
    assert events[1:] == [StreamClosed()]


def test_server_closing_first_gets_our_close_tag_back_on_our_close() -> None:
    stream = ready()
    assert stream.receive(CLOSE) == [ServerClosed()]
    assert stream.state is State.DRAINING
    assert stream.data_to_send() == b""
    stream.close()
    assert stream.data_to_send() == CLOSE
    assert stream.state is State.CLOSED


def test_stanzas_before_the_servers_close_are_delivered_and_answerable() -> None:
    stream = ready()
    events = stream.receive(b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>" + CLOSE)
    assert isinstance(events[0], StanzaReceived)
    assert events[1:] == [ServerClosed()]
    stream.send(message(to="juliet@example.org"))
    stream.close()
    data = stream.data_to_send()
    assert data.startswith(b"<message") and data.endswith(CLOSE)


def test_input_after_the_servers_close_is_ignored() -> None:
    stream = ready()
    stream.receive(CLOSE)
    assert stream.receive(b"<message/>") == []
    assert stream.state is State.DRAINING


def test_server_closing_before_ready_is_answered_at_once() -> None:
    stream = handshaking()
    assert stream.receive(CLOSE) == [StreamClosed()]
    assert stream.data_to_send() == CLOSE
    assert stream.state is State.CLOSED


def test_nothing_is_received_after_closed() -> None:
    stream = closed()
    assert stream.receive(b"<message/>") == []
    assert stream.data_to_send() == b""


def test_close_when_idle_closes_without_sending() -> None:
    stream = ComponentStream(DOMAIN, SECRET)
    stream.close()
    assert stream.state is State.CLOSED
    assert stream.data_to_send() == b""


def test_server_header_after_close_is_not_answered_with_a_handshake() -> None:
    stream = opening()
    stream.close()
    assert stream.data_to_send() == CLOSE
    stream.receive(server_header())
    assert stream.data_to_send() == b""
    assert stream.state is State.CLOSING


def test_stream_closed_before_the_handshake_never_becomes_ready() -> None:
    stream = opening()
    stream.close()
    events = stream.receive(server_header() + b"<handshake/>")
    assert Authenticated() not in events
    assert stream.state is not State.READY


# -- sending ---------------------------------------------------------------------


def test_send_stamps_the_domain_as_from_when_missing() -> None:
    stream = ready()
    stream.send(message(to="juliet@example.org"))
    (sent,) = parse_sent(stream.data_to_send())
    assert sent.tag == f"{{{NS_COMPONENT}}}message"
    assert sent.get("from") == DOMAIN
    assert sent.get("to") == "juliet@example.org"


def test_send_keeps_a_from_in_the_components_domain() -> None:
    stream = ready()
    stream.send(message(to="juliet@example.org", **{"from": "user@echo.example.org/res"}))
    (sent,) = parse_sent(stream.data_to_send())
    assert sent.get("from") == "user@echo.example.org/res"


def test_send_accepts_a_from_in_the_domain_with_other_case() -> None:
    stream = ready()
    stream.send(message(to="juliet@example.org", **{"from": "bot@Echo.Example.org"}))
    (sent,) = parse_sent(stream.data_to_send())
    assert sent.get("from") == "bot@Echo.Example.org"


def test_send_accepts_a_stanza_without_namespace() -> None:
    stream = ready()
    stanza = etree.Element("iq", {"to": "juliet@example.org", "type": "get", "id": "1"})
    stream.send(stanza)
    (sent,) = parse_sent(stream.data_to_send())
    assert sent.tag == f"{{{NS_COMPONENT}}}iq"
    assert sent.get("from") == DOMAIN


def test_send_does_not_send_the_tail() -> None:
    stream = ready()
    parent = etree.Element("batch")
    stanza = etree.SubElement(parent, "message", {"to": "juliet@example.org"})
    stanza.tail = "trailing text"
    stream.send(stanza)
    assert b"trailing text" not in stream.data_to_send()


@pytest.mark.parametrize(
    "sender",
    [
        "example.org",
        "user@example.org",
        "evil.org/echo.example.org",
        "echo.example.org@evil.org",
        "sub.echo.example.org",
        "echo.example.org.evil.org",
        "",
    ],
)
def test_send_refuses_a_from_outside_the_domain(sender: str) -> None:
    stream = ready()
    stanza = message(to="juliet@example.org", **{"from": sender})
    with pytest.raises(LocalProtocolError):
        stream.send(stanza)
    assert stream.data_to_send() == b""
    assert stream.state is State.READY
    assert stanza.get("from") == sender


@pytest.mark.parametrize(
    "sender",
    [
        "@echo.example.org",
        "@echo.example.org/res",
        "user@echo.example.org/",
        "echo.example.org/",
        "a@b@echo.example.org",
    ],
)
def test_send_refuses_a_from_that_is_not_a_valid_jid(sender: str) -> None:
    # The server would answer an invalid 'from' with a stream error,
    # closing the stream for every stanza in flight.
    stream = ready()
    stanza = message(to="juliet@example.org", **{"from": sender})
    with pytest.raises(LocalProtocolError):
        stream.send(stanza)
    assert stream.data_to_send() == b""
    assert stream.state is State.READY


@pytest.mark.parametrize("to", [None, ""])
def test_send_refuses_a_stanza_without_to(to: str | None) -> None:
    stream = ready()
    stanza = message() if to is None else message(to=to)
    with pytest.raises(LocalProtocolError):
        stream.send(stanza)
    assert stream.data_to_send() == b""
    assert stream.state is State.READY
    assert stanza.get("from") is None


@pytest.mark.parametrize(
    "tag",
    [
        f"{{{NS_COMPONENT}}}handshake",
        f"{{{NS_COMPONENT}}}body",
        f"{{{NS_STREAMS}}}error",
        f"{{{NS_STREAMS}}}stream",
        "{jabber:client}message",
        "{urn:example:foo}iq",
        "handshake",
    ],
)
def test_send_refuses_a_non_stanza_element(tag: str) -> None:
    stream = ready()
    with pytest.raises(LocalProtocolError):
        stream.send(etree.Element(tag, {"to": "juliet@example.org"}))
    assert stream.data_to_send() == b""
    assert stream.state is State.READY


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: ComponentStream(DOMAIN, SECRET), id="idle"),
        pytest.param(opening, id="opening"),
        pytest.param(handshaking, id="handshaking"),
        pytest.param(closing, id="closing"),
        pytest.param(closed, id="closed"),
    ],
)
def test_send_refuses_before_ready_and_after(make: object) -> None:
    assert callable(make)
    stream = make()
    state = stream.state
    with pytest.raises(LocalProtocolError):
        stream.send(message(to="juliet@example.org"))
    assert stream.data_to_send() == b""
    assert stream.state is state


def test_send_whitespace_sends_one_space_when_ready() -> None:
    stream = ready()
    stream.send_whitespace()
    assert stream.data_to_send() == b" "


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: ComponentStream(DOMAIN, SECRET), id="idle"),
        pytest.param(opening, id="opening"),
        pytest.param(handshaking, id="handshaking"),
        pytest.param(closing, id="closing"),
        pytest.param(closed, id="closed"),
    ],
)
def test_send_whitespace_sends_nothing_unless_ready(make: object) -> None:
    assert callable(make)
    stream = make()
    stream.send_whitespace()
    assert stream.data_to_send() == b""


def test_data_to_send_drains_the_outbox() -> None:
    stream = ready()
    stream.send_whitespace()
    assert stream.data_to_send() == b" "
    assert stream.data_to_send() == b""


# -- secrecy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda s: ComponentStream(DOMAIN, s), id="idle"),
        pytest.param(lambda s: opening(secret=s), id="opening"),
        pytest.param(lambda s: handshaking(secret=s), id="handshaking"),
    ],
)
def test_secret_never_appears_in_repr(make: object) -> None:
    assert callable(make)
    secret = "s3cr3t-Pa55w0rd-e2c1"
    stream = make(secret)
    assert secret not in repr(stream)
    assert secret not in str(stream)


def test_secret_is_never_sent() -> None:
    secret = "s3cr3t-Pa55w0rd-e2c1"
    stream = ComponentStream(DOMAIN, secret)
    stream.open()
    sent = stream.data_to_send()
    stream.receive(server_header() + b"<handshake/>")
    sent += stream.data_to_send()
    assert secret.encode() not in sent


def test_stanzas_on_a_stream_that_never_authenticated_are_not_delivered() -> None:
    stream = ComponentStream("echo.example.org", "secret")
    stream.open()
    # A header without an id: a violation, the stream is closing...
    stream.receive(
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
        b" xmlns='jabber:component:accept'>"
    )
    # ...and what follows is not the stanza of an authenticated stream.
    events = stream.receive(b"<message from='admin@example.org' to='echo.example.org'/>")
    assert not any(isinstance(event, StanzaReceived) for event in events)


# -- empty results, rendered without an element ----------------------------------


def test_send_result_renders_an_empty_iq_result() -> None:
    stream = ready()
    stream.send_result("p1", "juliet@example.org/balcony", None)
    (result,) = parse_sent(stream.data_to_send())
    assert result.tag == f"{{{NS_COMPONENT}}}iq"
    assert dict(result.attrib) == {
        "type": "result",
        "id": "p1",
        "to": "juliet@example.org/balcony",
        "from": DOMAIN,
    }
    assert len(result) == 0


@pytest.mark.parametrize("value", ["a&b", "a<b", 'a"b', "a'b", "a\tb\nc\rd", "a>b", "é ☃"])
def test_send_result_escapes_what_an_attribute_cannot_hold(value: str) -> None:
    stream = ready()
    stream.send_result(value, f"juliet@example.org/{value}", None)
    (result,) = parse_sent(stream.data_to_send())
    assert result.get("id") == value
    assert result.get("to") == f"juliet@example.org/{value}"


def test_send_result_without_an_id_leaves_it_out() -> None:
    stream = ready()
    stream.send_result(None, "juliet@example.org", f"room@{DOMAIN}")
    (result,) = parse_sent(stream.data_to_send())
    assert result.get("id") is None
    assert result.get("from") == f"room@{DOMAIN}"


@pytest.mark.parametrize(
    ("to", "sender"),
    [(None, None), ("", None), ("juliet@example.org", "other.example.org")],
)
def test_send_result_refuses_what_send_refuses(to: str | None, sender: str | None) -> None:
    stream = ready()
    with pytest.raises(LocalProtocolError):
        stream.send_result("p1", to, sender)
    assert stream.data_to_send() == b""


def test_send_result_refuses_once_closing() -> None:
    stream = closing()
    with pytest.raises(LocalProtocolError):
        stream.send_result("p1", "juliet@example.org", None)


def test_nothing_the_server_sends_after_its_stream_error_is_delivered_even_once_closing() -> None:
    stream = ready()
    stream.receive(stream_error("system-shutdown"))
    assert stream.receive(b"<message id='1'/>") == []
    stream.close()
    assert stream.state is State.CLOSING
    assert stream.receive(b"<message id='2'/>") == []
    assert stream.receive(CLOSE) == [StreamClosed()]


def test_stanzas_after_a_stream_error_during_the_handshake_are_not_delivered() -> None:
    stream = handshaking()
    stream.receive(stream_error("conflict"))
    assert stream.receive(b"<handshake/><message id='1'/>") == []


@pytest.mark.parametrize(
    "node",
    [
        pytest.param(etree.Comment("a note"), id="comment"),
        pytest.param(etree.ProcessingInstruction("target", "data"), id="pi"),
        pytest.param(etree.Entity("nbsp"), id="entity"),
    ],
)
def test_send_refuses_what_a_stream_may_not_carry(node: etree._Element) -> None:
    stream = ready()
    stanza = message(to="juliet@example.org")
    etree.SubElement(stanza, f"{{{NS_COMPONENT}}}body").append(node)
    with pytest.raises(RestrictedContent):
        stream.send(stanza)
    assert stream.data_to_send() == b""
    assert stream.state is State.READY
