"""ClientStream: an account's stream to its server (RFC 6120 c2s: STARTTLS,
SASL, resource binding, XEP-0198), driven with plain bytes."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise
from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from test_sasl import PASSWORD, RFC_5802, RFC_7677, Vector, tampered
from test_stream import CLOSE, assert_sent_stream_error, stream_error

from empc.protocol import (
    NS_BIND,
    NS_CLIENT,
    NS_COMPONENT,
    NS_SASL,
    NS_SM,
    NS_STREAMS,
    NS_TLS,
    AuthenticationFailed,
    BadFormat,
    BindFailed,
    Bound,
    ClientStream,
    Event,
    HandledCountTooHigh,
    InvalidNamespace,
    LocalProtocolError,
    NegotiationFailed,
    NoMechanism,
    ProtocolViolation,
    Resumed,
    ResumeFailed,
    SaslClient,
    ServerClosed,
    ServerSignatureMismatch,
    StanzaReceived,
    State,
    StreamClosed,
    StreamErrorReceived,
    StreamManagement,
    SystemShutdown,
    TlsProceed,
    TlsUnavailable,
    UndefinedCondition,
    UnsupportedStanzaType,
    UnusableCredentials,
    _client,
    new_element,
)

DOMAIN = "example.org"
BARE = f"user@{DOMAIN}"
ACCOUNT = f"{BARE}/empc"
SESSION = "sm-session-1"
NS_FORWARD = "urn:xmpp:forward:0"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_EXAMPLE = "urn:example:payload"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
C = f"{{{NS_COMPONENT}}}"

STARTTLS = f"<starttls xmlns='{NS_TLS}'><required/></starttls>"
BIND = f"<bind xmlns='{NS_BIND}'/>"
SM = f"<sm xmlns='{NS_SM}'/>"
PROCEED = f"<proceed xmlns='{NS_TLS}'/>".encode()
ENABLED = f"<enabled xmlns='{NS_SM}' resume='true' id='{SESSION}'/>".encode()
ACK_REQUEST = f"<r xmlns='{NS_SM}'/>".encode()
PROPERTY = settings(max_examples=60, deadline=None)


# -- what the server sends --------------------------------------------------------


def server_header(namespace: str = NS_CLIENT, version: str | None = "1.0") -> bytes:
    version_attr = f" version='{version}'" if version is not None else ""
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='{namespace}'"
        f" xmlns:stream='{NS_STREAMS}' from='{DOMAIN}' id='c2s-1'{version_attr}>"
    ).encode()


def features(*children: str) -> bytes:
    return ("<stream:features>" + "".join(children) + "</stream:features>").encode()


def mechanisms(*names: str) -> str:
    offered = "".join(f"<mechanism>{name}</mechanism>" for name in names)
    return f"<mechanisms xmlns='{NS_SASL}'>{offered}</mechanisms>"


def sasl(name: str, message: str | None = None) -> bytes:
    """A SASL element carrying ``message`` base64-encoded (none: no data)."""
    data = "" if message is None else base64.b64encode(message.encode()).decode()
    return f"<{name} xmlns='{NS_SASL}'>{data}</{name}>".encode()


def bind_result(iq_id: str, jid: str | None = ACCOUNT) -> bytes:
    bound = "" if jid is None else f"<jid>{jid}</jid>"
    return f"<iq type='result' id='{iq_id}'><bind xmlns='{NS_BIND}'>{bound}</bind></iq>".encode()


def sm_element(name: str, **attributes: str) -> bytes:
    return etree.tostring(new_element(NS_SM, name, attributes))


def chat(body: str = "hi", **attributes: str) -> bytes:
    attributes = {"from": "friend@example.net/phone", "to": ACCOUNT, **attributes}
    attrs = "".join(f" {key}='{value}'" for key, value in attributes.items())
    return f"<message{attrs}><body>{body}</body></message>".encode()


# -- what the stream sends ----------------------------------------------------------


def parse_sent(data: bytes) -> list[etree._Element]:
    """Elements sent mid-stream, read as the server reads them: in
    ``jabber:client`` unless they say otherwise."""
    wrapped = f"<w xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>".encode() + data + b"</w>"
    return list(etree.fromstring(wrapped))


def sent_header(data: bytes) -> etree._Element:
    """The stream header ``data`` holds, and nothing else."""
    assert data.startswith(b"<?xml version='1.0'?><stream:stream "), data
    return etree.fromstring(data + CLOSE)


def payload(element: etree._Element) -> bytes:
    return base64.b64decode(element.text or "", validate=True)


@pytest.fixture
def rfc_nonces(monkeypatch: pytest.MonkeyPatch) -> None:
    """ClientStream builds its SaslClient itself: give it the RFC vector's
    client nonce for the mechanism it chose, so the published exchanges
    replay through the stream."""
    monkeypatch.setattr(_client, "SaslClient", _vector_sasl_client)


def _vector_sasl_client(mechanism: str, username: str, password: str) -> SaslClient:
    vector = {v.mechanism: v for v in (RFC_5802, RFC_7677)}[mechanism]
    return SaslClient(mechanism, username, password, client_nonce=vector.client_nonce)


VECTORS = pytest.mark.parametrize("vector", [RFC_5802, RFC_7677], ids=lambda v: v.mechanism)


# -- streams at each step -------------------------------------------------------------


def opened(
    jid: str = ACCOUNT,
    password: str = PASSWORD,
    *,
    tls_required: bool = True,
    encrypted: bool = False,
    stream_management: StreamManagement | None = None,
) -> ClientStream:
    stream = ClientStream(
        jid,
        password,
        tls_required=tls_required,
        encrypted=encrypted,
        stream_management=stream_management,
    )
    stream.open()
    stream.data_to_send()
    return stream


def proceeding() -> ClientStream:
    """A clear stream whose server agreed to STARTTLS."""
    stream = opened()
    stream.receive(server_header() + features(STARTTLS))
    stream.receive(PROCEED)
    stream.data_to_send()
    return stream


def scram_proving(vector: Vector) -> ClientStream:
    """An encrypted stream that has sent the vector's client-final message."""
    stream = opened(encrypted=True)
    stream.receive(server_header() + features(mechanisms(vector.mechanism)))
    stream.receive(sasl("challenge", vector.server_first))
    stream.data_to_send()
    return stream


def authenticated(
    jid: str = ACCOUNT, stream_management: StreamManagement | None = None
) -> ClientStream:
    """A direct-TLS stream restarted after SASL (PLAIN: the password is not
    what these tests are about)."""
    stream = opened(jid, encrypted=True, stream_management=stream_management)
    stream.receive(server_header() + features(mechanisms("PLAIN")))
    stream.receive(sasl("success"))
    stream.data_to_send()
    assert stream.state is State.OPENING
    return stream


def binding(
    jid: str = ACCOUNT, stream_management: StreamManagement | None = None, offer_sm: bool = False
) -> tuple[ClientStream, etree._Element]:
    """An authenticated stream and the bind request it sent."""
    stream = authenticated(jid, stream_management)
    stream.receive(server_header() + features(BIND, SM if offer_sm else ""))
    (request,) = parse_sent(stream.data_to_send())
    return stream, request


def bind_id(request: etree._Element) -> str:
    ident = request.get("id")
    assert ident
    return ident


def ready(stream_management: StreamManagement | None = None) -> ClientStream:
    """A READY stream, with stream management enabled (resumable) if given."""
    if stream_management is None:
        stream, request = binding()
        stream.receive(bind_result(bind_id(request)))
    else:
        stream = enabling(stream_management)
        stream.receive(ENABLED)
    stream.data_to_send()
    assert stream.state is State.READY
    return stream


def enabling(stream_management: StreamManagement | None = None) -> ClientStream:
    """A stream whose resource is bound, waiting for the answer to <enable/>."""
    sm = StreamManagement() if stream_management is None else stream_management
    stream, request = binding(stream_management=sm, offer_sm=True)
    stream.receive(bind_result(bind_id(request)))
    stream.data_to_send()
    return stream


def outgoing(ident: str, **attributes: str) -> etree._Element:
    """A message as a handler builds it: in the component namespace."""
    stanza = new_element(NS_COMPONENT, "message", {"to": "friend@example.net", "id": ident})
    for key, value in attributes.items():
        stanza.set(key, value)
    new_element(NS_COMPONENT, "body", parent=stanza).text = "hello"
    return stanza


def received(stream: ClientStream, data: bytes) -> etree._Element:
    (event,) = stream.receive(data)
    assert isinstance(event, StanzaReceived)
    return event.stanza


def negotiation_failure(events: list[Event]) -> Exception:
    (event,) = events
    assert isinstance(event, NegotiationFailed)
    return event.error


# -- the stream header ----------------------------------------------------------------


def test_open_writes_a_jabber_client_header_version_1_0_to_the_domain() -> None:
    stream = ClientStream(ACCOUNT, PASSWORD)
    stream.open()
    header = sent_header(stream.data_to_send())
    assert header.tag == f"{{{NS_STREAMS}}}stream"
    assert header.nsmap[None] == NS_CLIENT
    assert header.get("version") == "1.0"
    assert header.get("to") == DOMAIN


def test_header_on_a_clear_stream_does_not_name_the_account() -> None:
    stream = ClientStream(ACCOUNT, PASSWORD)
    stream.open()
    assert sent_header(stream.data_to_send()).get("from") is None


def test_header_on_a_direct_tls_stream_is_from_the_bare_jid() -> None:
    stream = ClientStream(ACCOUNT, PASSWORD, encrypted=True)
    stream.open()
    assert sent_header(stream.data_to_send()).get("from") == BARE


def test_header_after_starttls_is_from_the_bare_jid() -> None:
    stream = proceeding()
    stream.tls_started()
    assert sent_header(stream.data_to_send()).get("from") == BARE


def test_account_jid_without_a_local_part_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="local part"):
        ClientStream(DOMAIN, PASSWORD)


@pytest.mark.parametrize("namespace", [NS_COMPONENT, "jabber:server"])
def test_server_header_in_another_namespace_is_invalid_namespace(namespace: str) -> None:
    stream = opened()
    events = stream.receive(server_header(namespace))
    assert events == [ProtocolViolation(events[0].error)]  # type: ignore[attr-defined]
    assert isinstance(events[0].error, InvalidNamespace)  # type: ignore[attr-defined]
    assert_sent_stream_error(stream.data_to_send(), InvalidNamespace)


@pytest.mark.parametrize("version", [None, "0.9", "2.0"])
def test_server_header_without_version_1_x_is_unsupported_version(version: str | None) -> None:
    stream = opened()
    (event,) = stream.receive(server_header(version=version))
    assert isinstance(event, ProtocolViolation)
    assert event.error.condition == "unsupported-version"
    data = stream.data_to_send()
    assert b"<unsupported-version " in data
    assert data.endswith(CLOSE)
    assert stream.state is State.CLOSING


def test_server_header_of_version_1_1_is_accepted() -> None:
    stream = opened()
    assert stream.receive(server_header(version="1.1") + features(STARTTLS)) == []
    assert parse_sent(stream.data_to_send())[0].tag == f"{{{NS_TLS}}}starttls"


# -- STARTTLS -----------------------------------------------------------------------------


def test_starttls_offered_is_asked_for() -> None:
    stream = opened()
    assert stream.receive(server_header() + features(STARTTLS, mechanisms("PLAIN"))) == []
    (starttls,) = parse_sent(stream.data_to_send())
    assert starttls.tag == f"{{{NS_TLS}}}starttls"


def test_proceed_gives_tls_proceed_and_writes_nothing() -> None:
    stream = opened()
    stream.receive(server_header() + features(STARTTLS))
    stream.data_to_send()
    assert stream.receive(PROCEED) == [TlsProceed()]
    assert stream.data_to_send() == b""


def test_tls_started_opens_a_new_stream() -> None:
    stream = proceeding()
    stream.tls_started()
    assert stream.state is State.OPENING
    sent_header(stream.data_to_send())


def test_the_new_stream_after_tls_negotiates_sasl() -> None:
    stream = proceeding()
    stream.tls_started()
    stream.data_to_send()
    assert stream.receive(server_header() + features(mechanisms("PLAIN"))) == []
    (auth,) = parse_sent(stream.data_to_send())
    assert auth.tag == f"{{{NS_SASL}}}auth"


def test_bytes_the_old_parser_held_do_not_reach_the_new_stream() -> None:
    stream = opened()
    stream.receive(server_header() + features(STARTTLS))
    stream.receive(PROCEED + b"<stream:features><starttls xmlns='")
    stream.tls_started()
    stream.data_to_send()
    assert stream.receive(server_header() + features(mechanisms("PLAIN"))) == []
    (auth,) = parse_sent(stream.data_to_send())
    assert auth.get("mechanism") == "PLAIN"


def test_an_element_after_proceed_in_the_same_read_does_not_reach_the_new_stream() -> None:
    stream = opened()
    stream.receive(server_header() + features(STARTTLS))
    stream.data_to_send()
    assert stream.receive(PROCEED + features(mechanisms("PLAIN"))) == [TlsProceed()]
    stream.tls_started()
    stream.data_to_send()
    stream.receive(server_header() + features(mechanisms("PLAIN")))
    (auth,) = parse_sent(stream.data_to_send())
    assert auth.tag == f"{{{NS_SASL}}}auth"


def test_tls_started_before_proceed_is_a_local_protocol_error() -> None:
    stream = opened()
    stream.receive(server_header() + features(STARTTLS))
    with pytest.raises(LocalProtocolError):
        stream.tls_started()


def test_tls_failure_fails_the_negotiation_for_now_and_closes() -> None:
    stream = opened()
    stream.receive(server_header() + features(STARTTLS))
    stream.data_to_send()
    error = negotiation_failure(stream.receive(f"<failure xmlns='{NS_TLS}'/>".encode()))
    assert isinstance(error, TlsUnavailable)
    assert not error.permanent
    assert stream.data_to_send() == CLOSE
    assert stream.state is State.CLOSING


def test_tls_required_and_not_offered_fails_permanently_and_closes() -> None:
    stream = opened()
    error = negotiation_failure(stream.receive(server_header() + features(mechanisms("PLAIN"))))
    assert isinstance(error, TlsUnavailable)
    assert error.permanent
    assert stream.data_to_send() == CLOSE
    assert stream.state is State.CLOSING


def test_tls_optional_and_not_offered_authenticates_with_scram_on_the_clear_stream() -> None:
    stream = opened(tls_required=False)
    assert stream.receive(server_header() + features(mechanisms("PLAIN", "SCRAM-SHA-1"))) == []
    (auth,) = parse_sent(stream.data_to_send())
    assert auth.get("mechanism") == "SCRAM-SHA-1"


def test_tls_optional_and_not_offered_refuses_plain_alone_on_the_clear_stream() -> None:
    stream = opened(tls_required=False)
    error = negotiation_failure(stream.receive(server_header() + features(mechanisms("PLAIN"))))
    assert isinstance(error, NoMechanism)
    assert stream.data_to_send() == CLOSE


def test_a_direct_tls_stream_skips_starttls() -> None:
    stream = opened(encrypted=True)
    stream.receive(server_header() + features(STARTTLS, mechanisms("PLAIN")))
    (auth,) = parse_sent(stream.data_to_send())
    assert auth.tag == f"{{{NS_SASL}}}auth"


# -- SASL -----------------------------------------------------------------------------


@VECTORS
@pytest.mark.usefixtures("rfc_nonces")
def test_scram_auth_carries_the_vectors_client_first_message(vector: Vector) -> None:
    stream = opened(encrypted=True)
    stream.receive(server_header() + features(mechanisms(vector.mechanism)))
    (auth,) = parse_sent(stream.data_to_send())
    assert auth.get("mechanism") == vector.mechanism
    assert payload(auth) == f"n,,n=user,r={vector.client_nonce}".encode()


@VECTORS
@pytest.mark.usefixtures("rfc_nonces")
def test_scram_server_first_is_answered_with_the_vectors_client_final(vector: Vector) -> None:
    stream = opened(encrypted=True)
    stream.receive(server_header() + features(mechanisms(vector.mechanism)))
    stream.data_to_send()
    assert stream.receive(sasl("challenge", vector.server_first)) == []
    (response,) = parse_sent(stream.data_to_send())
    assert response.tag == f"{{{NS_SASL}}}response"
    assert payload(response) == vector.client_final.encode()


@VECTORS
@pytest.mark.usefixtures("rfc_nonces")
def test_scram_server_final_in_success_restarts_the_stream(vector: Vector) -> None:
    stream = scram_proving(vector)
    assert stream.receive(sasl("success", vector.server_final)) == []
    assert sent_header(stream.data_to_send()).get("from") == BARE
    assert stream.state is State.OPENING


@VECTORS
@pytest.mark.usefixtures("rfc_nonces")
def test_scram_server_final_in_a_last_challenge_is_answered_empty(vector: Vector) -> None:
    stream = scram_proving(vector)
    assert stream.receive(sasl("challenge", vector.server_final)) == []
    (response,) = parse_sent(stream.data_to_send())
    assert response.tag == f"{{{NS_SASL}}}response"
    assert response.text == "="  # RFC 6120 §6.4.2: an empty response
    assert stream.state is State.HANDSHAKING


@VECTORS
@pytest.mark.usefixtures("rfc_nonces")
def test_scram_success_after_the_last_challenge_restarts_the_stream(vector: Vector) -> None:
    stream = scram_proving(vector)
    stream.receive(sasl("challenge", vector.server_final))
    stream.data_to_send()
    assert stream.receive(sasl("success")) == []
    sent_header(stream.data_to_send())
    assert stream.state is State.OPENING


@pytest.mark.usefixtures("rfc_nonces")
def test_a_wrong_server_signature_fails_with_server_signature_mismatch() -> None:
    stream = scram_proving(RFC_7677)
    error = negotiation_failure(stream.receive(sasl("success", tampered(RFC_7677.server_final))))
    assert isinstance(error, ServerSignatureMismatch)
    assert stream.data_to_send() == CLOSE
    assert stream.state is State.CLOSING


@pytest.mark.usefixtures("rfc_nonces")
def test_not_authorized_fails_permanently_saying_the_password_is_wrong() -> None:
    stream = scram_proving(RFC_5802)
    failure = f"<failure xmlns='{NS_SASL}'><not-authorized/></failure>".encode()
    error = negotiation_failure(stream.receive(failure))
    assert isinstance(error, AuthenticationFailed)
    assert error.permanent
    assert "password" in str(error)
    assert "wrong" in str(error)
    assert stream.data_to_send() == CLOSE


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (("PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"), "SCRAM-SHA-256"),
        (("PLAIN", "SCRAM-SHA-1"), "SCRAM-SHA-1"),
        (("DIGEST-MD5", "PLAIN"), "PLAIN"),
    ],
)
def test_the_strongest_mechanism_offered_is_chosen(offered: tuple[str, ...], chosen: str) -> None:
    stream = opened(encrypted=True)
    stream.receive(server_header() + features(mechanisms(*offered)))
    (auth,) = parse_sent(stream.data_to_send())
    assert auth.get("mechanism") == chosen


def test_plain_auth_carries_the_local_part_and_the_password() -> None:
    stream = opened(encrypted=True)
    stream.receive(server_header() + features(mechanisms("PLAIN")))
    (auth,) = parse_sent(stream.data_to_send())
    assert payload(auth) == b"\0user\0" + PASSWORD.encode()


def test_what_follows_success_in_the_same_read_is_not_read_by_the_new_stream() -> None:
    stream = opened(encrypted=True)
    stream.receive(server_header() + features(mechanisms("PLAIN")))
    stream.data_to_send()
    assert stream.receive(sasl("success") + server_header() + features(BIND)) == []
    sent_header(stream.data_to_send())  # the new header, and no bind request
    assert stream.state is State.OPENING


def test_a_password_scram_cannot_send_fails_the_negotiation() -> None:
    stream = opened(password="pen\u0007cil", encrypted=True)
    events = stream.receive(server_header() + features(mechanisms("SCRAM-SHA-1")))
    error = negotiation_failure(events)
    assert isinstance(error, UnusableCredentials)
    assert error.permanent
    assert "pen\u0007cil" not in str(error)
    assert stream.data_to_send() == CLOSE


def test_the_password_is_not_in_the_streams_repr() -> None:
    assert PASSWORD not in repr(opened())


# -- resource binding ----------------------------------------------------------------


def test_bind_asks_for_the_jids_resource() -> None:
    _, request = binding()
    assert request.tag == f"{{{NS_CLIENT}}}iq"
    assert request.get("type") == "set"
    assert request.findtext(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}resource") == "empc"


def test_bind_without_a_resource_in_the_jid_asks_for_a_random_one() -> None:
    resources = {
        binding(BARE)[1].findtext(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}resource") for _ in range(2)
    }
    assert len(resources) == 2
    assert "" not in resources
    assert None not in resources


def test_bind_result_without_stream_management_gives_bound_at_once() -> None:
    stream, request = binding()
    assert stream.receive(bind_result(bind_id(request))) == [Bound(ACCOUNT)]
    assert stream.state is State.READY
    assert stream.data_to_send() == b""


def test_the_server_binding_another_resource_gives_bound_with_its_jid() -> None:
    stream, request = binding()
    assert stream.receive(bind_result(bind_id(request), f"{BARE}/x7")) == [Bound(f"{BARE}/x7")]


def test_stanzas_after_the_server_bound_another_resource_are_from_it() -> None:
    stream, request = binding()
    stream.receive(bind_result(bind_id(request), f"{BARE}/x7"))
    stream.send(outgoing("m1"))
    (sent,) = parse_sent(stream.data_to_send())
    assert sent.get("from") == f"{BARE}/x7"


def test_a_bind_conflict_fails_with_bind_failed() -> None:
    stream, request = binding()
    error_iq = (
        f"<iq type='error' id='{bind_id(request)}'><error type='cancel'>"
        f"<conflict xmlns='{NS_STANZAS}'/></error></iq>"
    ).encode()
    error = negotiation_failure(stream.receive(error_iq))
    assert isinstance(error, BindFailed)
    assert error.condition == "conflict"
    assert stream.data_to_send() == CLOSE
    assert stream.state is State.CLOSING


def test_a_bind_result_for_another_id_is_a_stream_error() -> None:
    stream, request = binding()
    (event,) = stream.receive(bind_result(bind_id(request) + "x"))
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, UnsupportedStanzaType)
    assert_sent_stream_error(stream.data_to_send(), UnsupportedStanzaType)


@pytest.mark.parametrize(
    "jid", ["other@example.org/empc", "user@example.net/empc", BARE, "example.org/empc"]
)
def test_a_bound_jid_that_is_no_resource_of_the_account_is_bad_format(jid: str) -> None:
    stream, request = binding()
    (event,) = stream.receive(bind_result(bind_id(request), jid))
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, BadFormat)
    assert_sent_stream_error(stream.data_to_send(), BadFormat)


@pytest.mark.parametrize("jid", [None, "", "user@/empc", "user@example.org/", "a b@example.org/r"])
def test_an_invalid_bound_jid_is_bad_format(jid: str | None) -> None:
    stream, request = binding()
    (event,) = stream.receive(bind_result(bind_id(request), jid))
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, BadFormat)
    assert_sent_stream_error(stream.data_to_send(), BadFormat)


def test_a_bound_jid_differing_only_in_the_case_of_the_local_part_is_the_account() -> None:
    stream, request = binding(f"Bot@{DOMAIN}/empc")
    assert stream.receive(bind_result(bind_id(request), f"bot@{DOMAIN}/empc")) == [
        Bound(f"bot@{DOMAIN}/empc")
    ]


def test_no_resource_binding_offered_is_bad_format() -> None:
    stream = authenticated()
    (event,) = stream.receive(server_header() + features())
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, BadFormat)


# -- enabling stream management --------------------------------------------------------


def test_sm_offered_and_kept_is_enabled_after_binding() -> None:
    stream, request = binding(stream_management=StreamManagement(), offer_sm=True)
    assert stream.receive(bind_result(bind_id(request))) == []
    (enable,) = parse_sent(stream.data_to_send())
    assert enable.tag == f"{{{NS_SM}}}enable"
    assert enable.get("resume") == "true"
    assert stream.state is State.HANDSHAKING


def test_bound_comes_with_enabled() -> None:
    stream = enabling()
    assert stream.receive(ENABLED) == [Bound(ACCOUNT)]
    assert stream.state is State.READY


def test_a_stanza_before_enabled_is_served_once_ready_and_not_counted() -> None:
    sm = StreamManagement()
    stream = enabling(sm)
    assert stream.receive(chat("early")) == []
    bound, early = stream.receive(ENABLED)
    assert bound == Bound(ACCOUNT)
    assert isinstance(early, StanzaReceived)
    assert early.stanza.findtext(f"{{{NS_COMPONENT}}}body") == "early"
    stream.receive(sm_element("r"))
    (answer,) = parse_sent(stream.data_to_send())
    assert answer.get("h") == "0"  # the server counts from its <enabled/>


def test_bound_comes_with_failed_to_enable() -> None:
    sm = StreamManagement()
    stream = enabling(sm)
    assert stream.receive(sm_element("failed")) == [Bound(ACCOUNT)]
    assert stream.state is State.READY
    assert not sm.active


def test_sm_offered_without_a_session_to_keep_binds_at_once() -> None:
    stream, request = binding(offer_sm=True)
    assert stream.receive(bind_result(bind_id(request))) == [Bound(ACCOUNT)]
    assert stream.data_to_send() == b""


def test_sm_kept_but_not_offered_binds_at_once_without_enable() -> None:
    sm = StreamManagement()
    stream, request = binding(stream_management=sm)
    assert stream.receive(bind_result(bind_id(request))) == [Bound(ACCOUNT)]
    assert stream.data_to_send() == b""
    assert not sm.active


def test_an_ack_request_answering_enable_is_a_stream_error() -> None:
    stream = enabling()
    (event,) = stream.receive(ACK_REQUEST)
    assert isinstance(event, ProtocolViolation)


# -- READY: stanzas in ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["message", "presence", "iq"])
def test_each_stanza_kind_arrives_in_the_component_namespace(kind: str) -> None:
    stanza = received(ready(), f"<{kind} from='{DOMAIN}' id='k1' type='get'/>".encode())
    assert stanza.tag == f"{C}{kind}"


def test_a_stanzas_own_children_arrive_in_the_component_namespace() -> None:
    stanza = received(ready(), chat("hello", type="chat"))
    assert [child.tag for child in stanza] == [f"{C}body"]
    assert stanza.findtext(f"{C}body") == "hello"


def test_a_payload_in_another_namespace_arrives_untouched() -> None:
    data = (
        f"<iq type='set' id='p1' from='{DOMAIN}'><query xmlns='{NS_EXAMPLE}'>"
        f"<item name='a'>text</item></query></iq>"
    ).encode()
    stanza = received(ready(), data)
    (query,) = stanza
    assert query.tag == f"{{{NS_EXAMPLE}}}query"
    assert query[0].tag == f"{{{NS_EXAMPLE}}}item"
    assert query[0].get("name") == "a"
    assert query[0].text == "text"


def test_a_stanza_errors_condition_keeps_the_stanzas_namespace() -> None:
    data = (
        f"<iq type='error' id='e1' from='{DOMAIN}'><error type='cancel'>"
        f"<item-not-found xmlns='{NS_STANZAS}'/></error></iq>"
    ).encode()
    stanza = received(ready(), data)
    assert stanza.find(f"{C}error/{{{NS_STANZAS}}}item-not-found") is not None


def test_a_forwarded_client_message_inside_a_payload_stays_in_jabber_client() -> None:
    data = (
        f"<message from='{BARE}' to='{ACCOUNT}'><result xmlns='urn:xmpp:mam:2'>"
        f"<forwarded xmlns='{NS_FORWARD}'><message xmlns='{NS_CLIENT}' from='a@b.c'>"
        "<body>inner</body></message></forwarded></result></message>"
    ).encode()
    stanza = received(ready(), data)
    inner = stanza.find(f"*/{{{NS_FORWARD}}}forwarded/{{{NS_CLIENT}}}message")
    assert inner is not None
    assert inner.findtext(f"{{{NS_CLIENT}}}body") == "inner"


def test_a_received_stanza_keeps_its_attributes_and_xml_lang() -> None:
    data = (
        f"<message xml:lang='fr' type='chat' id='m7' from='f@example.net/x' to='{ACCOUNT}'>"
        "<body xml:lang='de'>hallo</body></message>"
    ).encode()
    stanza = received(ready(), data)
    assert dict(stanza.items()) == {
        XML_LANG: "fr",
        "type": "chat",
        "id": "m7",
        "from": "f@example.net/x",
        "to": ACCOUNT,
    }
    assert stanza[0].get(XML_LANG) == "de"


def test_a_stanza_in_the_same_read_as_the_bind_result_is_delivered() -> None:
    stream, request = binding()
    events = stream.receive(bind_result(bind_id(request)) + chat())
    assert events[0] == Bound(ACCOUNT)
    assert isinstance(events[1], StanzaReceived)


# -- READY: stanzas out -------------------------------------------------------------------


def test_send_writes_jabber_client_from_the_full_jid() -> None:
    stream = ready()
    stream.send(outgoing("m1"))
    data = stream.data_to_send()
    assert NS_COMPONENT.encode() not in data
    (sent,) = parse_sent(data)
    assert sent.tag == f"{{{NS_CLIENT}}}message"
    assert sent[0].tag == f"{{{NS_CLIENT}}}body"
    assert sent.get("from") == ACCOUNT


def test_send_keeps_a_payload_in_another_namespace() -> None:
    stream = ready()
    stanza = outgoing("m1")
    new_element(NS_EXAMPLE, "extra", parent=stanza)
    stream.send(stanza)
    (sent,) = parse_sent(stream.data_to_send())
    assert sent[1].tag == f"{{{NS_EXAMPLE}}}extra"


def test_send_accepts_a_stanza_without_to() -> None:
    stream = ready()
    stream.send(new_element(NS_COMPONENT, "presence"))
    (sent,) = parse_sent(stream.data_to_send())
    assert sent.tag == f"{{{NS_CLIENT}}}presence"
    assert sent.get("to") is None
    assert sent.get("from") == ACCOUNT


def test_send_from_the_bare_jid_goes_out_from_the_full_jid() -> None:
    stream = ready()
    stream.send(outgoing("m1", **{"from": BARE}))
    (sent,) = parse_sent(stream.data_to_send())
    assert sent.get("from") == ACCOUNT


@pytest.mark.parametrize("sender", [f"{BARE}/other", "other@example.org", DOMAIN])
def test_send_from_another_jid_is_refused_and_writes_nothing(sender: str) -> None:
    stream = ready()
    with pytest.raises(LocalProtocolError):
        stream.send(outgoing("m1", **{"from": sender}))
    assert stream.data_to_send() == b""
    assert stream.state is State.READY


def test_send_before_ready_is_refused() -> None:
    stream, _ = binding()
    with pytest.raises(LocalProtocolError):
        stream.send(outgoing("m1"))


def test_send_result_writes_an_iq_result_from_the_full_jid() -> None:
    stream = ready()
    stream.send_result("q1", "friend@example.net/phone", None)
    (sent,) = parse_sent(stream.data_to_send())
    assert sent.tag == f"{{{NS_CLIENT}}}iq"
    assert dict(sent.items()) == {
        "type": "result",
        "id": "q1",
        "to": "friend@example.net/phone",
        "from": ACCOUNT,
    }


def test_send_result_refuses_a_from_of_another_jid() -> None:
    stream = ready()
    with pytest.raises(LocalProtocolError):
        stream.send_result("q1", "friend@example.net/phone", "other@example.org")
    assert stream.data_to_send() == b""


# -- READY: acknowledgements (XEP-0198) ---------------------------------------------------


def test_an_ack_request_is_answered_with_the_count_of_stanzas_received() -> None:
    stream = ready(StreamManagement())
    for number in range(3):
        received(stream, chat(id=f"in{number}"))
    assert stream.receive(ACK_REQUEST) == []
    (answer,) = parse_sent(stream.data_to_send())
    assert answer.tag == f"{{{NS_SM}}}a"
    assert answer.get("h") == "3"


def test_sent_stanzas_wait_for_the_servers_acknowledgement() -> None:
    sm = StreamManagement()
    stream = ready(sm)
    stream.send(outgoing("m1"))
    stream.send_result("q1", None, None)
    assert b"".join(sm.unacked_stanzas) == stream.data_to_send()
    assert sm.unacked == 2


def test_an_ack_releases_the_stanzas_it_acknowledges() -> None:
    sm = StreamManagement()
    stream = ready(sm)
    for number in range(3):
        stream.send(outgoing(f"m{number}"))
    stream.data_to_send()
    assert stream.receive(sm_element("a", h="2")) == []
    (waiting,) = sm.unacked_stanzas
    assert b'id="m2"' in waiting


def test_an_ack_of_more_than_was_sent_is_a_stream_error() -> None:
    stream = ready(StreamManagement())
    stream.send(outgoing("m1"))
    stream.data_to_send()
    (event,) = stream.receive(sm_element("a", h="2"))
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, HandledCountTooHigh)
    assert stream.state is State.DRAINING
    stream.close()
    assert_sent_stream_error(stream.data_to_send(), UndefinedCondition)


def test_an_ack_of_more_than_was_sent_names_handled_count_too_high() -> None:
    stream = ready(StreamManagement())
    stream.send(outgoing("m1"))
    stream.data_to_send()
    stream.receive(sm_element("a", h="2"))
    stream.close()
    (error,) = parse_sent(stream.data_to_send()[: -len(CLOSE)])
    condition = error.find(f"{{{NS_SM}}}handled-count-too-high")
    assert condition is not None
    assert (condition.get("h"), condition.get("send-count")) == ("2", "1")


def test_request_ack_writes_an_ack_request() -> None:
    stream = ready(StreamManagement())
    stream.request_ack()
    (request,) = parse_sent(stream.data_to_send())
    assert request.tag == f"{{{NS_SM}}}r"


def test_request_ack_without_stream_management_writes_nothing() -> None:
    stream = ready()
    stream.request_ack()
    assert stream.data_to_send() == b""


def test_an_ack_request_without_stream_management_is_a_stream_error() -> None:
    stream = ready()
    (event,) = stream.receive(ACK_REQUEST)
    assert isinstance(event, ProtocolViolation)


def test_an_ack_request_when_stream_management_was_refused_is_a_stream_error() -> None:
    stream = enabling()
    stream.receive(sm_element("failed"))
    (event,) = stream.receive(ACK_REQUEST)
    assert isinstance(event, ProtocolViolation)


# -- resumption (XEP-0198) ------------------------------------------------------------------


def suspended(
    sent: int = 3, acked: int = 1, received_count: int = 2
) -> tuple[StreamManagement, list[bytes]]:
    """A session whose stream ended after ``sent`` stanzas out, ``acked``
    of them acknowledged, and ``received_count`` in; and the bytes of each
    stanza sent."""
    sm = StreamManagement()
    first = ready(sm)
    for number in range(received_count):
        received(first, chat(id=f"in{number}"))
    written = []
    for number in range(sent):
        first.send(outgoing(f"m{number}"))
        written.append(first.data_to_send())
    first.receive(sm_element("a", h=str(acked)))
    sm.stream_ended()
    return sm, written


def resuming(sm: StreamManagement) -> tuple[ClientStream, etree._Element]:
    """A second stream of the session, and the resume request it sent."""
    stream = authenticated(stream_management=sm)
    assert stream.receive(server_header() + features(BIND, SM)) == []
    (request,) = parse_sent(stream.data_to_send())
    return stream, request


def test_a_suspended_session_is_resumed_after_sasl_instead_of_binding() -> None:
    sm, _ = suspended(received_count=2)
    _, request = resuming(sm)
    assert request.tag == f"{{{NS_SM}}}resume"
    assert request.get("previd") == SESSION
    assert request.get("h") == "2"


def test_resumed_gives_resumed_with_the_count_sent_again() -> None:
    sm, _ = suspended(sent=3, acked=1)
    stream, _ = resuming(sm)
    assert stream.receive(sm_element("resumed", previd=SESSION, h="1")) == [Resumed(2)]
    assert stream.state is State.READY


def test_resumed_writes_exactly_the_unacknowledged_stanzas_again_in_order() -> None:
    sm, written = suspended(sent=3, acked=1)
    stream, _ = resuming(sm)
    stream.receive(sm_element("resumed", previd=SESSION, h="1"))
    assert stream.data_to_send() == b"".join(written[1:])


def test_a_resumed_session_counts_on() -> None:
    sm, _ = suspended(sent=3, acked=1, received_count=2)
    stream, _ = resuming(sm)
    stream.receive(sm_element("resumed", previd=SESSION, h="1"))
    stream.data_to_send()
    received(stream, chat(id="in2"))
    stream.receive(ACK_REQUEST)
    (answer,) = parse_sent(stream.data_to_send())
    assert answer.get("h") == "3"


def test_resume_failed_gives_resume_failed_with_the_count_lost_then_binds() -> None:
    sm, _ = suspended(sent=3, acked=1)
    stream, _ = resuming(sm)
    assert stream.receive(sm_element("failed")) == [ResumeFailed(2)]
    (request,) = parse_sent(stream.data_to_send())
    assert request.tag == f"{{{NS_CLIENT}}}iq"
    assert request.find(f"{{{NS_BIND}}}bind") is not None


def test_after_resume_failed_a_new_session_is_enabled() -> None:
    sm, _ = suspended()
    stream, _ = resuming(sm)
    stream.receive(sm_element("failed"))
    (request,) = parse_sent(stream.data_to_send())
    assert stream.receive(bind_result(bind_id(request))) == []
    (enable,) = parse_sent(stream.data_to_send())
    assert enable.tag == f"{{{NS_SM}}}enable"
    assert stream.receive(ENABLED) == [Bound(ACCOUNT)]
    assert sm.active


def test_a_suspended_session_the_server_no_longer_offers_to_resume_is_given_up() -> None:
    sm, _ = suspended(sent=3, acked=1)
    stream = authenticated(stream_management=sm)
    assert stream.receive(server_header() + features(BIND)) == [ResumeFailed(2)]
    (request,) = parse_sent(stream.data_to_send())
    assert request.find(f"{{{NS_BIND}}}bind") is not None


def test_a_suspended_session_the_server_no_longer_offers_to_resume_does_not_block_sending() -> None:
    sm, _ = suspended()
    stream, request = binding(stream_management=sm)
    stream.receive(bind_result(bind_id(request)))
    stream.send(outgoing("m9"))
    assert parse_sent(stream.data_to_send())[0].get("id") == "m9"


# -- closing and stream errors --------------------------------------------------------------


def test_close_when_ready_writes_the_close_tag_then_the_servers_closes_it() -> None:
    stream = ready()
    stream.close()
    assert stream.data_to_send() == CLOSE
    assert stream.state is State.CLOSING
    assert stream.receive(CLOSE) == [StreamClosed()]
    assert stream.state is State.CLOSED


def test_the_servers_close_when_ready_drains_until_our_close() -> None:
    stream = ready()
    assert stream.receive(CLOSE) == [ServerClosed()]
    assert stream.state is State.DRAINING
    stream.close()
    assert stream.data_to_send() == CLOSE
    assert stream.state is State.CLOSED


def test_a_stream_error_during_negotiation_is_answered_with_the_close_tag() -> None:
    stream = authenticated()
    events = stream.receive(server_header() + stream_error("system-shutdown"))
    assert events == [StreamErrorReceived(SystemShutdown())]
    assert stream.data_to_send() == CLOSE
    assert stream.state is State.CLOSING


def test_an_unexpected_element_during_sasl_is_unsupported_stanza_type() -> None:
    stream = opened(encrypted=True)
    stream.receive(server_header() + features(mechanisms("PLAIN")))
    stream.data_to_send()
    (event,) = stream.receive(features(BIND))
    assert isinstance(event, ProtocolViolation)
    assert_sent_stream_error(stream.data_to_send(), UnsupportedStanzaType)


def test_the_servers_close_after_a_failed_negotiation_closes_the_stream() -> None:
    stream = opened()
    stream.receive(server_header() + features(mechanisms("PLAIN")))
    stream.data_to_send()
    assert stream.receive(CLOSE) == [StreamClosed()]
    assert stream.data_to_send() == b""
    assert stream.state is State.CLOSED


# -- any reads ---------------------------------------------------------------------------

BIND_ID = b"BIND-ID"
xml_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8)


@st.composite
def transcripts(draw: st.DrawFn) -> list[bytes]:
    """What a server sends an account, one item per answer to what the
    stream writes: STARTTLS, SCRAM, a restart, binding, maybe enabling
    stream management, then stanzas (and maybe acks and its close).
    ``BIND_ID`` stands for the id of the bind request."""
    vector = draw(st.sampled_from([RFC_5802, RFC_7677]))
    rounds = [
        server_header() + features(STARTTLS, mechanisms("PLAIN")),
        PROCEED,
        server_header() + features(mechanisms("PLAIN", vector.mechanism)),
        sasl("challenge", vector.server_first),
    ]
    if draw(st.booleans()):
        rounds += [sasl("challenge", vector.server_final), sasl("success")]
    else:
        rounds.append(sasl("success", vector.server_final))
    offer_sm = draw(st.booleans())
    rounds.append(server_header() + features(BIND, SM if offer_sm else ""))
    rounds.append(bind_result(BIND_ID.decode()))
    tail = b""
    for number, body in enumerate(draw(st.lists(xml_text, max_size=4))):
        tail += chat(escape(body), id=f"in{number}")
        if draw(st.booleans()):
            tail += ACK_REQUEST if offer_sm else b" "
    if draw(st.booleans()):
        tail += CLOSE
    if offer_sm:
        rounds.append(ENABLED + tail)
    else:
        rounds[-1] += tail
    return rounds


def comparable(event: Event) -> object:
    if isinstance(event, StanzaReceived):
        return etree.tostring(event.stanza, method="c14n")
    return event


Outcome = tuple[list[object], bytes, State]


def run(rounds: Sequence[bytes], chunked: Callable[[bytes], Iterable[bytes]]) -> Outcome:
    """Feed each round in the reads ``chunked`` makes of it, starting TLS
    when the stream says so; return the events and every byte written,
    the random bind id replaced by ``BIND_ID``."""
    stream = ClientStream(ACCOUNT, PASSWORD, stream_management=StreamManagement())
    stream.open()
    written = stream.data_to_send()
    events: list[object] = []
    for data in rounds:
        ident = re.search(rb"<iq [^>]*\bid=[\"']([^\"']+)", written)
        for chunk in chunked(data.replace(BIND_ID, ident.group(1) if ident else BIND_ID)):
            for event in stream.receive(chunk):
                events.append(comparable(event))
                if isinstance(event, TlsProceed):
                    stream.tls_started()
            written += stream.data_to_send()
    if ident is not None:
        written = written.replace(ident.group(1), BIND_ID)
    return events, written, stream.state


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(points)]


@PROPERTY
@given(transcripts(), st.lists(st.integers(0, 10_000), max_size=8))
def test_any_reads_of_a_servers_transcript_give_the_same_events_and_bytes(
    rounds: list[bytes], cuts: list[int]
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_client, "SaslClient", _vector_sasl_client)
        whole = run(rounds, lambda data: [data])
        assert Bound(ACCOUNT) in whole[0]  # the transcript is one that succeeds
        assert run(rounds, lambda data: split(data, cuts)) == whole
        assert run(rounds, lambda data: [bytes([b]) for b in data]) == whole


def test_a_whole_transcript_reaches_ready_and_delivers_its_stanzas() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_client, "SaslClient", _vector_sasl_client)
        rounds = [
            server_header() + features(STARTTLS),
            PROCEED,
            server_header() + features(mechanisms(RFC_5802.mechanism)),
            sasl("challenge", RFC_5802.server_first),
            sasl("success", RFC_5802.server_final),
            server_header() + features(BIND, SM),
            bind_result(BIND_ID.decode()),
            ENABLED + chat(id="in0"),
        ]
        events, _, state = run(rounds, lambda data: [data])
    assert events[:2] == [TlsProceed(), Bound(ACCOUNT)]
    assert len(events) == 3
    assert state is State.READY


def test_an_element_other_than_resumed_or_failed_answering_resume_is_a_stream_error() -> None:
    sm, _ = suspended()
    stream, _ = resuming(sm)
    (event,) = stream.receive(sm_element("r"))
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, UnsupportedStanzaType)


@pytest.mark.parametrize(
    "sender", ["User@example.org/empc", "user@EXAMPLE.org", "USER@example.org"]
)
def test_a_reply_from_another_spelling_of_the_account_goes_out_from_the_full_jid(
    sender: str,
) -> None:
    stream = ready()
    stream.send(outgoing("m1", **{"from": sender}))
    stream.send_result("i1", "friend@example.net/x", sender)
    message, result = parse_sent(stream.data_to_send())
    assert message.get("from") == result.get("from") == ACCOUNT


def test_the_namespace_declarations_of_a_stanza_survive_the_change_of_namespace() -> None:
    stream = ready()
    stanza = received(
        stream,
        b"<message xmlns:xs='http://www.w3.org/2001/XMLSchema' from='friend@example.net/x'>"
        b"<field type='xs:string'/></message>",
    )
    assert stanza.nsmap["xs"] == "http://www.w3.org/2001/XMLSchema"
