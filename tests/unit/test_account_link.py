"""The Twisted side of an account: AccountProtocol over a fake transport
(STARTTLS, direct TLS, SASL, binding, XEP-0198 over the link),
AccountService's retries, the services twistd builds for accounts, their
TLS options, and what ``empc check`` and ``routes`` say about them."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import test_check
import test_connection
import test_service
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree
from OpenSSL import crypto
from support import write_config
from test_metrics import get
from twisted.application.service import IService, IServiceCollection, Service
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    ISSLTransport,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, LogLevel, capturedLogs, formatEvent
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, connect
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from empc import _tap
from empc.__main__ import main
from empc._account import NS_ROSTER, Account
from empc._check import built_components, describe, try_login
from empc._config import Config, load_config
from empc._connection import AccountProtocol, AccountTls, LinkSettings
from empc._service import AccountService, Backoff, explain, is_permanent
from empc.protocol import (
    NS_BIND,
    NS_CLIENT,
    NS_SASL,
    NS_SM,
    NS_STREAMS,
    NS_TLS,
    AuthenticationFailed,
    StreamManagement,
    TlsUnavailable,
    UnackedQueueFull,
)
from empc.protocol._sm import SmState
from empc.routing import make_message, make_stanza

_trial = SynchronousTestCase()
successResultOf = _trial.successResultOf
assertNoResult = _trial.assertNoResult

DOMAIN = "example.org"
BARE = f"bob@{DOMAIN}"
FULL = f"{BARE}/empc"
PASSWORD = "s3cret"
SESSION = "sm-session-1"
NO_TIMERS = LinkSettings(keepalive_interval=0, ping_interval=0)
# Never used to start real TLS: the fake transports only record it.
OPTIONS = optionsForClientTLS(DOMAIN)

# -- what the server says ------------------------------------------------------

HEADER = (
    f"<?xml version='1.0'?><stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'"
    f" from='{DOMAIN}' id='c2s-1' version='1.0'>"
).encode()
CLOSE = b"</stream:stream>"
STARTTLS = f"<starttls xmlns='{NS_TLS}'><required/></starttls>"
BIND = f"<bind xmlns='{NS_BIND}'/>"
SM = f"<sm xmlns='{NS_SM}'/>"
PROCEED = f"<proceed xmlns='{NS_TLS}'/>".encode()
SUCCESS = f"<success xmlns='{NS_SASL}'/>".encode()
ENABLED = f"<enabled xmlns='{NS_SM}' resume='true' id='{SESSION}'/>".encode()
ACK_REQUEST = f"<r xmlns='{NS_SM}'/>".encode()


def features(*children: str) -> bytes:
    return ("<stream:features>" + "".join(children) + "</stream:features>").encode()


def mechanisms(*names: str) -> str:
    offered = "".join(f"<mechanism>{name}</mechanism>" for name in names)
    return f"<mechanisms xmlns='{NS_SASL}'>{offered}</mechanisms>"


def sasl_failure(condition: str) -> bytes:
    return f"<failure xmlns='{NS_SASL}'><{condition}/></failure>".encode()


def sm_element(name: str, **attributes: str) -> bytes:
    attrs = "".join(f" {key}='{value}'" for key, value in attributes.items())
    return f"<{name} xmlns='{NS_SM}'{attrs}/>".encode()


def stream_error(condition: str) -> bytes:
    return (
        f"<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
    ).encode() + CLOSE


def bind_result(iq: etree._Element, jid: str = FULL) -> bytes:
    """The server's answer binding ``jid`` to the binding request ``iq``."""
    return (
        f"<iq type='result' id='{iq.get('id')}'><bind xmlns='{NS_BIND}'>"
        f"<jid>{jid}</jid></bind></iq>"
    ).encode()


def chat(body: str = "hi") -> bytes:
    sender = "alice@example.net/phone"
    return f"<message from='{sender}' to='{FULL}'><body>{body}</body></message>".encode()


# -- what the account writes -----------------------------------------------------


_HEADER = re.compile(rb"<\?xml version='1.0'\?><stream:stream [^>]*>")


def elements(data: bytes) -> list[etree._Element]:
    """The elements in ``data`` but its stream headers, read as the server reads them."""
    body = _HEADER.sub(b"", data)
    wrapped = f"<w xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>".encode() + body + b"</w>"
    return list(etree.fromstring(wrapped))


def tags(data: bytes) -> list[str]:
    return [etree.QName(element).localname for element in elements(data)]


def headers(data: bytes) -> list[etree._Element]:
    """The stream headers in ``data``, as elements."""
    return [etree.fromstring(header + CLOSE) for header in _HEADER.findall(data)]


def is_presence(element: etree._Element) -> bool:
    return element.tag == f"{{{NS_CLIENT}}}presence"


# -- fake transports ----------------------------------------------------------------


class StartTlsTransport(StringTransport):
    """A clear connection that records what starting TLS on it was asked with."""

    def __init__(self) -> None:
        super().__init__()
        self.tls_started: list[object] = []

    def startTLS(self, options: object) -> None:
        self.tls_started.append(options)


@implementer(ISSLTransport)
class DirectTlsTransport(StringTransport):
    """A connection encrypted from the start (XEP-0368)."""

    def getPeerCertificate(self) -> None:
        return None


class AccountLink(test_connection.Link):
    """An AccountProtocol on a fake transport, the test playing its server."""

    def __init__(
        self,
        *,
        transport: StringTransport | None = None,
        session: StreamManagement | None = None,
        tls_required: bool = True,
        announce: bool = True,
        settings: LinkSettings = NO_TIMERS,
        account: Account | None = None,
    ) -> None:
        self.clock = Clock()
        self.account = account or Account(FULL, [], self.clock, announce=announce)
        self.component = self.account
        self.session = session or StreamManagement()
        self.transport = transport or StartTlsTransport()
        self.protocol = AccountProtocol(
            self.account,
            PASSWORD,
            self.clock,
            settings,
            # Direct, as a tls: endpoint in the config would say.
            tls=AccountTls(
                OPTIONS,
                required=tls_required,
                direct=isinstance(self.transport, DirectTlsTransport),
            ),
            stream_management=self.session,
        )
        self.protocol.makeConnection(self.transport)

    def sent(self) -> list[etree._Element]:
        return elements(self.written())

    def start_tls(self) -> None:
        self.feed(HEADER + features(STARTTLS))
        self.feed(PROCEED)

    def authenticate(self) -> None:
        """STARTTLS unless encrypted already, then SASL PLAIN."""
        if not ISSLTransport.providedBy(self.transport):
            self.start_tls()
        self.feed(HEADER + features(mechanisms("PLAIN")))
        self.feed(SUCCESS)
        self.written()

    def bind(self, offer_sm: bool = True, jid: str = FULL) -> None:
        """Offer binding (and stream management), and bind ``jid``."""
        self.feed(HEADER + features(BIND, SM if offer_sm else ""))
        [iq] = self.sent()
        self.feed(bind_result(iq, jid))

    def log_in(self, offer_sm: bool = True) -> None:
        """The whole log-in, stream management enabled when offered."""
        self.authenticate()
        self.bind(offer_sm)
        if offer_sm:
            self.written()  # <enable/>
            self.feed(ENABLED)


def resumed_link(session: StreamManagement, account: Account) -> AccountLink:
    """A new connection of ``account`` with ``session`` suspended, up to its
    ``<resume/>``."""
    link = AccountLink(transport=DirectTlsTransport(), session=session, account=account)
    link.authenticate()
    link.feed(HEADER + features(BIND, SM))
    return link


@pytest.fixture
def logs() -> Iterator[list[LogEvent]]:
    with capturedLogs() as events:
        yield events  # type: ignore[misc]


def messages(logs: list[LogEvent], level: LogLevel | None = None) -> list[str]:
    return [
        formatEvent(event) for event in logs if level is None or event.get("log_level") is level
    ]


# STARTTLS and direct TLS


def test_a_clear_connections_first_header_names_no_sender() -> None:
    [header] = headers(AccountLink().written())
    assert header.get("to") == DOMAIN
    assert header.get("from") is None


def test_starttls_offer_is_answered_with_starttls() -> None:
    link = AccountLink()
    link.written()
    link.feed(HEADER + features(STARTTLS, mechanisms("SCRAM-SHA-1")))
    assert [element.tag for element in link.sent()] == [f"{{{NS_TLS}}}starttls"]


def test_proceed_starts_tls_with_the_options_given() -> None:
    link = AccountLink()
    link.feed(HEADER + features(STARTTLS))
    assert isinstance(link.transport, StartTlsTransport)
    assert link.transport.tls_started == []
    link.feed(PROCEED)
    assert link.transport.tls_started == [OPTIONS]


def test_proceed_opens_a_new_stream_from_the_bare_jid() -> None:
    link = AccountLink()
    link.feed(HEADER + features(STARTTLS))
    link.written()
    link.feed(PROCEED)
    [header] = headers(link.written())
    assert (header.get("to"), header.get("from")) == (DOMAIN, BARE)


def test_direct_tls_sends_no_starttls_and_uses_plain() -> None:
    link = AccountLink(transport=DirectTlsTransport())
    link.written()
    link.feed(HEADER + features(STARTTLS, mechanisms("PLAIN")))
    [auth] = link.sent()
    assert (auth.tag, auth.get("mechanism")) == (f"{{{NS_SASL}}}auth", "PLAIN")


def test_direct_tls_stream_header_names_the_bare_jid_at_once() -> None:
    [header] = headers(AccountLink(transport=DirectTlsTransport()).written())
    assert header.get("from") == BARE


def test_tls_optional_without_starttls_authenticates_with_scram_in_the_clear() -> None:
    link = AccountLink(tls_required=False)
    link.written()
    link.feed(HEADER + features(mechanisms("PLAIN", "SCRAM-SHA-1")))
    [auth] = link.sent()
    assert auth.get("mechanism") == "SCRAM-SHA-1"


# Refusals


def refused_for_no_tls() -> AccountLink:
    link = AccountLink()
    link.feed(HEADER + features(mechanisms("PLAIN"), BIND))
    return link


def test_no_starttls_with_tls_required_fires_handshake_done_once_the_connection_is_gone() -> None:
    link = refused_for_no_tls()
    assertNoResult(link.protocol.handshake_done)
    link.lose(ConnectionDone())
    assert successResultOf(link.protocol.handshake_done) is None


def test_no_starttls_with_tls_required_is_refused_as_tls_unavailable_permanently() -> None:
    link = refused_for_no_tls()
    link.lose(ConnectionDone())
    assert isinstance(link.protocol.refusal, TlsUnavailable)
    assert is_permanent(link.protocol.refusal)


def test_no_starttls_with_tls_required_drops_the_connection() -> None:
    link = refused_for_no_tls()
    assert link.transport.disconnecting
    assert not link.account.connected


def refused_password() -> AccountLink:
    link = AccountLink(transport=DirectTlsTransport())
    link.feed(HEADER + features(mechanisms("PLAIN")))
    link.feed(sasl_failure("not-authorized"))
    link.lose(ConnectionDone())
    return link


def test_wrong_password_is_refused_as_authentication_failed_permanently() -> None:
    refusal = refused_password().protocol.refusal
    assert isinstance(refusal, AuthenticationFailed)
    assert is_permanent(refusal)


def test_wrong_password_is_explained_as_a_wrong_password() -> None:
    refusal = refused_password().protocol.refusal
    assert refusal is not None
    assert "password for that JID is wrong" in explain(refusal, BARE)


def test_wrong_password_does_not_link_the_account() -> None:
    assert not refused_password().account.connected


# Binding and the new session


def test_bound_account_is_linked_with_no_refusal() -> None:
    link = AccountLink()
    link.log_in()
    assert link.account.connected
    assert successResultOf(link.protocol.handshake_done) is None
    assert link.protocol.refusal is None


def test_new_session_sends_the_initial_presence_and_asks_for_the_roster() -> None:
    link = AccountLink()
    link.log_in()
    presence, roster = link.sent()
    assert is_presence(presence) and presence.get("type") is None
    assert presence.get("from") == FULL
    assert roster.get("type") == "get"
    assert roster.find(f"{{{NS_ROSTER}}}query") is not None


def test_linked_account_is_logged_as_connected(logs: list[LogEvent]) -> None:
    AccountLink().log_in()
    assert any(f"Account {BARE} connected" in line for line in messages(logs)), messages(logs)


def test_the_jid_the_server_binds_is_the_one_stanzas_come_from() -> None:
    link = AccountLink(transport=DirectTlsTransport())
    link.authenticate()
    link.bind(offer_sm=False, jid=f"{BARE}/server-chosen")
    [presence, _] = link.sent()
    assert presence.get("from") == f"{BARE}/server-chosen"
    assert str(link.account.jid) == f"{BARE}/server-chosen"


# Stream management over the link


def test_sm_offered_enable_goes_out_after_binding() -> None:
    link = AccountLink(transport=DirectTlsTransport())
    link.authenticate()
    link.bind()
    [enable] = link.sent()
    assert (enable.tag, enable.get("resume")) == (f"{{{NS_SM}}}enable", "true")


def quiet_session(keepalive_interval: float = 0) -> AccountLink:
    """A linked account with stream management on that sent nothing yet."""
    settings = LinkSettings(keepalive_interval=keepalive_interval, ping_interval=0)
    link = AccountLink(transport=DirectTlsTransport(), announce=False, settings=settings)
    link.log_in()
    link.written()
    return link


def note() -> etree._Element:
    return etree.fromstring(f"<message xmlns='jabber:component:accept' to='alice@{DOMAIN}'/>")


def test_an_ack_is_requested_after_ack_every_stanzas_sent() -> None:
    link = quiet_session()
    for _ in range(AccountProtocol.ack_every - 1):
        link.protocol.send(note())
    assert "r" not in tags(link.written())
    link.protocol.send(note())
    assert tags(link.written()) == ["message", "r"]


def test_the_keepalive_tick_requests_an_ack_when_stanzas_were_sent() -> None:
    link = quiet_session(keepalive_interval=60)
    link.protocol.send(note())
    link.written()
    link.clock.advance(30)
    assert tags(link.written()) == ["r"]


def test_the_keepalive_tick_requests_no_ack_when_nothing_was_sent() -> None:
    link = quiet_session(keepalive_interval=60)
    link.clock.advance(30)
    assert link.written() == b""


def test_the_servers_ack_request_is_answered_with_the_count_handled() -> None:
    link = quiet_session()
    link.feed(chat() + chat())
    link.written()
    link.feed(ACK_REQUEST)
    [answer] = link.sent()
    assert (answer.tag, answer.get("h")) == (f"{{{NS_SM}}}a", "2")


def test_the_servers_ack_takes_the_stanzas_it_handled_off_the_queue() -> None:
    link = AccountLink()
    link.log_in()
    assert link.session.unacked == 2  # the initial presence and the roster request
    link.feed(sm_element("a", h="2"))
    assert link.session.unacked == 0


def test_a_session_that_ends_with_unacknowledged_stanzas_logs_them_as_maybe_lost(
    logs: list[LogEvent],
) -> None:
    link = AccountLink()
    link.log_in()
    link.feed(CLOSE)
    link.lose(ConnectionDone())
    [error] = messages(logs, LogLevel.error)
    assert f"2 stanzas sent by {BARE} were not acknowledged" in error


def test_a_connection_lost_while_ready_keeps_the_session_resumable() -> None:
    link = AccountLink()
    link.log_in()
    link.lose()
    assert link.session.state is SmState.SUSPENDED
    assert link.session.resumable


def suspended() -> AccountLink:
    """A session whose link dropped with its initial presence and roster
    request unacknowledged."""
    link = AccountLink()
    link.log_in()
    link.lose()
    return link


def test_a_new_connection_sends_resume_after_sasl() -> None:
    first = suspended()
    second = resumed_link(first.session, first.account)
    [resume] = second.sent()
    assert resume.tag == f"{{{NS_SM}}}resume"
    assert (resume.get("previd"), resume.get("h")) == (SESSION, "0")


def test_resumed_writes_the_unacknowledged_stanzas_again() -> None:
    first = suspended()
    second = resumed_link(first.session, first.account)
    second.written()
    second.feed(sm_element("resumed", previd=SESSION, h="1"))
    [roster] = second.sent()  # the presence was acknowledged
    assert roster.find(f"{{{NS_ROSTER}}}query") is not None


def test_resumed_links_the_account_again() -> None:
    first = suspended()
    second = resumed_link(first.session, first.account)
    second.feed(sm_element("resumed", previd=SESSION, h="0"))
    assert first.account.connected
    assert second.protocol.refusal is None


def test_resumption_is_logged_with_the_count_sent_again(logs: list[LogEvent]) -> None:
    first = suspended()
    second = resumed_link(first.session, first.account)
    second.feed(sm_element("resumed", previd=SESSION, h="0"))
    assert f"Resumed the session of {BARE}; sent 2 stanzas again" in messages(logs)


def test_resumed_session_sends_no_second_initial_presence() -> None:
    first = suspended()
    second = resumed_link(first.session, first.account)
    second.written()
    second.feed(sm_element("resumed", previd=SESSION, h="0"))
    sent = second.sent()
    assert len([element for element in sent if is_presence(element)]) == 1  # the one resent
    assert len(sent) == 2


def failed_resumption() -> AccountLink:
    first = suspended()
    second = resumed_link(first.session, first.account)
    second.written()
    second.feed(sm_element("failed", h="0"))
    return second


def test_failed_resumption_warns_with_the_number_of_stanzas_lost(logs: list[LogEvent]) -> None:
    failed_resumption()
    warnings = messages(logs, LogLevel.warn)
    assert any("could not resume the session" in w and "2 stanzas" in w for w in warnings), warnings


def test_failed_resumption_binds_a_fresh_resource() -> None:
    [iq] = failed_resumption().sent()
    assert iq.find(f"{{{NS_BIND}}}bind") is not None


def test_failed_resumption_sends_a_new_initial_presence_once_bound() -> None:
    link = failed_resumption()
    [iq] = link.sent()
    link.feed(bind_result(iq) + ENABLED)
    assert [etree.QName(element).localname for element in link.sent()] == [
        "enable",
        "presence",
        "iq",
    ]


def test_a_stream_the_server_closes_ends_the_session() -> None:
    link = AccountLink()
    link.log_in()
    link.feed(CLOSE)
    link.lose(ConnectionDone())
    assert link.session.state is SmState.DISABLED
    assert not link.session.resumable


def test_a_stream_the_account_closes_ends_the_session() -> None:
    link = AccountLink()
    link.log_in()
    link.protocol.close()
    assert link.written().endswith(CLOSE)
    link.feed(CLOSE)
    link.lose(ConnectionDone())
    assert not link.session.resumable


def test_a_refused_log_in_keeps_the_suspended_session_resumable() -> None:
    first = suspended()
    second = AccountLink(
        transport=DirectTlsTransport(), session=first.session, account=first.account
    )
    second.feed(HEADER + features(mechanisms("PLAIN")))
    second.feed(sasl_failure("temporary-auth-failure"))
    second.lose(ConnectionDone())
    assert first.session.resumable


# AccountService


class Attempt(test_service.Attempt):
    """One connection the endpoint made, the test playing its server."""

    def written(self) -> list[etree._Element]:
        data = self.transport.value()
        self.transport.clear()
        return elements(data)

    def log_in(self) -> None:
        """Accept the password, and offer binding and stream management."""
        for data in (HEADER + features(mechanisms("PLAIN")), SUCCESS, HEADER + features(BIND, SM)):
            self.feed(data)


@implementer(IStreamClientEndpoint)
class DirectTlsEndpoint:
    """Connects at once, over a connection encrypted from the start."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        proxy = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5223))
        assert proxy is not None
        transport = DirectTlsTransport()
        proxy.makeConnection(transport)
        self.attempts.append(Attempt(proxy, transport))
        return succeed(proxy)


BACKOFF = Backoff(initial_delay=1.0, jitter=0.5, permanent_error_delay=300.0)


def started_service() -> tuple[AccountService, DirectTlsEndpoint, Clock]:
    clock, endpoint = Clock(), DirectTlsEndpoint()
    account = Account(FULL, [], clock)
    service = AccountService(
        account,
        endpoint,
        PASSWORD,
        clock,
        tls=AccountTls(OPTIONS, direct=True),
        link=NO_TIMERS,
        backoff=BACKOFF,
        random=lambda: 0.0,
    )
    service.startService()
    return service, endpoint, clock


def refuse(attempt: Attempt, answer: bytes) -> None:
    attempt.feed(HEADER + features(mechanisms("PLAIN")))
    attempt.feed(answer)
    attempt.lose()


def test_a_refused_password_waits_the_permanent_error_delay() -> None:
    _, endpoint, clock = started_service()
    refuse(endpoint.attempts[0], sasl_failure("not-authorized"))
    clock.advance(BACKOFF.permanent_error_delay - 1)
    assert len(endpoint.attempts) == 1
    clock.advance(1)
    assert len(endpoint.attempts) == 2


def test_a_refused_password_logs_one_error_naming_the_account(logs: list[LogEvent]) -> None:
    _, endpoint, _ = started_service()
    refuse(endpoint.attempts[0], sasl_failure("not-authorized"))
    [error] = messages(logs, LogLevel.error)
    assert f"Could not connect {BARE}" in error
    assert "password" in error


def test_a_transient_refusal_backs_off_with_the_initial_delay() -> None:
    _, endpoint, clock = started_service()
    refuse(endpoint.attempts[0], sasl_failure("temporary-auth-failure"))
    clock.advance(BACKOFF.initial_delay)
    assert len(endpoint.attempts) == 2


def test_the_service_resumes_the_session_on_its_next_connection() -> None:
    _, endpoint, clock = started_service()
    first = endpoint.attempts[0]
    first.log_in()
    first.feed(bind_result(first.written()[-1]) + ENABLED)
    first.lose()
    clock.advance(BACKOFF.max_delay * 2)
    second = endpoint.attempts[1]
    second.log_in()
    assert second.written()[-1].tag == f"{{{NS_SM}}}resume"


@pytest.mark.parametrize(
    ("condition", "component_advice"),
    [("host-unknown", 'Component "'), ("invalid-namespace", "rather than the component port")],
)
def test_an_account_refused_with_a_stream_error_gets_no_component_advice(
    logs: list[LogEvent], condition: str, component_advice: str
) -> None:
    _, endpoint, _ = started_service()
    endpoint.attempts[0].feed(HEADER + stream_error(condition))
    endpoint.attempts[0].lose()
    [error] = messages(logs, LogLevel.error)
    assert component_advice not in error


# The services twistd builds, and their TLS


def make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        _builder(subject, subject, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def make_server_certificate(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], name: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    ca_key, ca_certificate = ca
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        _builder(subject, ca_certificate.subject, key)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, certificate


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


@implementer(IHandshakeListener)
class Handshake(Protocol):
    """The client's side of an in-memory TLS connection: how it ended."""

    def __init__(self) -> None:
        self.completed = False
        self.lost: Failure | None = None

    def handshakeCompleted(self) -> None:
        self.completed = True

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        self.lost = reason


def tls_handshake(
    client: IOpenSSLClientConnectionCreator,
    server: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
) -> Handshake:
    """Run ``client``'s TLS handshake against a server showing ``server``'s
    certificate, in memory."""
    key, certificate = server
    options = CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),
        certificate=crypto.X509.from_cryptography(certificate),
    )
    handshake = Handshake()
    server_side = TLSMemoryBIOFactory(options, False, Factory.forProtocol(Protocol))
    client_side = TLSMemoryBIOFactory(client, True, Factory.forProtocol(lambda: handshake))
    server_protocol = server_side.buildProtocol(None)
    client_protocol = client_side.buildProtocol(None)
    pump = connect(
        server_protocol,
        FakeTransport(server_protocol, True),
        client_protocol,
        FakeTransport(client_protocol, False),
    )
    pump.flush()
    return handshake


ACCOUNT_CONFIG = f"""
    accounts:
      - jid: {FULL}
        password: {PASSWORD}
        server: tcp:host=127.0.0.1:port=5222
"""


def account_config(tmp_path: Path, extra: str = "") -> Config:
    return load_config(write_config(tmp_path, ACCOUNT_CONFIG + extra), {})


def with_trust_roots(tmp_path: Path, *certificates: x509.Certificate) -> Config:
    path = tmp_path / "ca.pem"
    path.write_bytes(pem(*certificates))
    return account_config(tmp_path, f"        trust_roots: {path}\n")


def services_of(root: IService) -> Iterator[IService]:
    yield root
    if IServiceCollection.providedBy(root):
        for child in root:  # type: ignore[attr-defined]
            yield from services_of(child)


def account_services(root: IService) -> list[AccountService]:
    return [s for s in services_of(root) if isinstance(s, AccountService)]


def test_build_services_makes_an_account_service_per_account(tmp_path: Path) -> None:
    extra = "      - jid: carol@example.net/bot\n        password: other\n"
    services = _tap.build_services(account_config(tmp_path, extra), MemoryReactorClock(), {})
    assert [str(s.component.jid) for s in account_services(services)] == [
        FULL,
        "carol@example.net/bot",
    ]


def test_an_account_service_serves_the_account_at_its_bare_jid(tmp_path: Path) -> None:
    services = _tap.build_services(account_config(tmp_path), MemoryReactorClock(), {})
    [service] = account_services(services)
    assert isinstance(service.component, Account)
    assert service.component.domain == BARE


def link_in(reactor: MemoryReactorClock) -> None:
    """Answer the last connection of the reactor as a server that starts
    TLS, accepts the account's password and binds its resource."""
    protocol = reactor.tcpClients[-1][2].buildProtocol(None)
    transport = StartTlsTransport()
    protocol.makeConnection(transport)
    for data in (
        HEADER + features(STARTTLS),
        PROCEED,
        HEADER + features(mechanisms("PLAIN")),
        SUCCESS,
        HEADER + features(BIND),
    ):
        protocol.dataReceived(data)
    protocol.dataReceived(bind_result(elements(transport.value())[-1]))


class Notifier(Service):
    """Stands for systemd's notifier: records the names it is given."""

    def __init__(self, domains: Iterable[str]) -> None:
        self.domains = list(domains)
        self.told: list[tuple[str, bool]] = []

    def link_changed(self, domain: str, linked: bool) -> None:
        self.told.append((domain, linked))


def test_systemd_waits_for_the_account_by_the_name_its_links_are_told_by(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notifiers: list[Notifier] = []

    def notifier_from_environ(environ: object, domains: Iterable[str], *_: object) -> Notifier:
        notifiers.append(Notifier(domains))
        return notifiers[-1]

    monkeypatch.setattr(_tap, "notifier_from_environ", notifier_from_environ)
    reactor = MemoryReactorClock()
    _tap.build_services(account_config(tmp_path), reactor, {}).startService()
    [notifier] = notifiers
    link_in(reactor)
    assert notifier.told == [(notifier.domains[0], True)]
    assert [name.split("/")[0] for name in notifier.domains] == [BARE]


def test_healthz_reports_a_linked_account(tmp_path: Path) -> None:
    config = account_config(tmp_path, "    metrics:\n      listen: tcp:0:interface=127.0.0.1\n")
    reactor = MemoryReactorClock()
    top = _tap.build_services(config, reactor, {})
    top.startService()
    link_in(reactor)
    code, body, _ = get(reactor.tcpServers[0][1], b"/healthz")
    assert code == 200, body


def test_shutdown_counts_the_actions_of_accounts(tmp_path: Path) -> None:
    services = _tap.build_services(account_config(tmp_path), MemoryReactorClock(), {})
    assert [c.domain for c in _tap.components_of(services)] == [BARE]


def test_account_tls_trusts_a_server_certificate_for_the_jid_domain_signed_by_trust_roots(
    tmp_path: Path,
) -> None:
    ca = make_ca("Test CA")
    [account] = with_trust_roots(tmp_path, ca[1]).accounts
    handshake = tls_handshake(
        _tap.account_tls(account).options, make_server_certificate(ca, DOMAIN)
    )
    assert handshake.completed, handshake.lost


def test_account_tls_refuses_a_certificate_for_another_name(tmp_path: Path) -> None:
    ca = make_ca("Test CA")
    [account] = with_trust_roots(tmp_path, ca[1]).accounts
    tls = _tap.account_tls(account).options
    handshake = tls_handshake(tls, make_server_certificate(ca, "other.example.net"))
    assert not handshake.completed


def test_account_tls_refuses_a_certificate_signed_by_another_ca(tmp_path: Path) -> None:
    [account] = with_trust_roots(tmp_path, make_ca("Test CA")[1]).accounts
    tls = _tap.account_tls(account).options
    handshake = tls_handshake(tls, make_server_certificate(make_ca("Other CA"), DOMAIN))
    assert not handshake.completed


def test_account_tls_trusts_every_certificate_of_a_two_certificate_trust_roots_file(
    tmp_path: Path,
) -> None:
    first, second = make_ca("First CA"), make_ca("Second CA")
    [account] = with_trust_roots(tmp_path, first[1], second[1]).accounts
    tls = _tap.account_tls(account).options
    assert tls_handshake(tls, make_server_certificate(second, DOMAIN)).completed
    assert tls_handshake(tls, make_server_certificate(first, DOMAIN)).completed


def test_build_services_accepts_a_two_certificate_trust_roots_file(tmp_path: Path) -> None:
    config = with_trust_roots(tmp_path, make_ca("First CA")[1], make_ca("Second CA")[1])
    assert len(account_services(_tap.build_services(config, MemoryReactorClock(), {}))) == 1


# empc check and routes


def test_describe_shows_the_account_with_its_server(tmp_path: Path) -> None:
    config = account_config(tmp_path)
    lines = describe(config, *built_components(config, MemoryReactorClock())).splitlines()
    at = lines.index(f"account {BARE}")
    assert lines[at + 1] == "  server: tcp:host=127.0.0.1:port=5222"


def test_routes_prints_the_route_table_of_an_accounts_only_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["routes", "-c", write_config(tmp_path, ACCOUNT_CONFIG)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{BARE}:"
    assert any("Roster.push" in line for line in out), out


def server_endpoint(transport: StringTransport) -> test_check.FakeEndpoint:
    """An endpoint connecting to ``transport``, the test playing the server."""
    endpoint = test_check.FakeEndpoint()
    endpoint.transport = transport
    return endpoint


def log_in_once(tmp_path: Path, endpoint: test_check.FakeEndpoint) -> list[str]:
    config = account_config(tmp_path)
    answers: list[str] = []
    try_login(config.accounts[0], config, endpoint, Clock(), 10.0).addCallback(answers.append)  # type: ignore[arg-type]
    return answers


def test_try_login_with_a_refused_password_answers_in_plain_words(tmp_path: Path) -> None:
    endpoint = server_endpoint(StartTlsTransport())
    answers = log_in_once(tmp_path, endpoint)
    endpoint.server_says(HEADER + features(STARTTLS) + PROCEED)
    endpoint.server_says(HEADER + features(mechanisms("PLAIN")) + sasl_failure("not-authorized"))
    assert answers == []
    endpoint.connection_lost()
    assert answers == [
        "not-authorized: the password for that JID is wrong (or the account does not exist)"
    ]


def test_try_login_over_starttls_starts_tls_for_the_jid_domain(tmp_path: Path) -> None:
    transport = StartTlsTransport()
    endpoint = server_endpoint(transport)
    log_in_once(tmp_path, endpoint)
    endpoint.server_says(HEADER + features(STARTTLS) + PROCEED)
    [options] = transport.tls_started
    assert IOpenSSLClientConnectionCreator.providedBy(options)


def test_a_ping_that_cannot_go_for_want_of_acknowledgements_drops_the_link(
    logs: list[LogEvent],
) -> None:
    # A server that stops acknowledging fills the queue; the ping, which
    # cannot be sent then, is what tells the link is dead.
    settings = LinkSettings(keepalive_interval=0, ping_interval=60, ping_timeout=30)
    link = AccountLink(session=StreamManagement(max_unacked=2), settings=settings)
    link.log_in()  # the presence and the roster request fill the queue
    link.written()
    link.clock.advance(60)
    assert link.transport.disconnecting or link.transport.disconnected
    assert any("does not read (or acknowledge)" in m for m in messages(logs))


def ping_to_the_server() -> etree._Element:
    ping = make_stanza("iq", {"type": "get", "to": DOMAIN})
    etree.SubElement(ping, "{urn:xmpp:ping}ping")
    return ping


def bound_anew(first: AccountLink) -> AccountLink:
    """The next connection of ``first``'s suspended session, which the
    server cannot resume: a new session is bound and enabled."""
    second = resumed_link(first.session, first.account)
    second.written()
    second.feed(sm_element("failed"))
    [bind_request] = second.sent()
    second.feed(bind_result(bind_request))
    second.written()  # <enable/>
    second.feed(ENABLED)
    return second


def message_to_alice(body: str) -> etree._Element:
    return make_message("alice@example.net/phone", body)


def test_while_suspended_what_handlers_send_waits_and_goes_out_once_resumed() -> None:
    first = suspended()
    assert first.account.connected  # to its handlers, the link is up
    first.account.send(message_to_alice("during"))
    second = resumed_link(first.session, first.account)
    second.written()  # <resume/>
    second.feed(sm_element("resumed", previd=SESSION, h="0"))
    *resent, held = second.sent()
    assert len(resent) == 2  # the presence and the roster request, not acknowledged
    assert held.findtext("{jabber:client}body") == "during"
    assert held.get("from") == FULL


def test_while_suspended_a_request_stays_pending_and_takes_its_answer_once_resumed() -> None:
    first = suspended()
    ping = ping_to_the_server()
    answers: list[etree._Element] = []
    first.account.request(ping).addCallback(answers.append)
    second = resumed_link(first.session, first.account)
    second.written()
    second.feed(sm_element("resumed", previd=SESSION, h="2"))
    (sent,) = second.sent()
    second.feed(f"<iq type='result' id='{sent.get('id')}' from='{DOMAIN}' to='{FULL}'/>".encode())
    assert [answer.get("type") for answer in answers] == ["result"]


def test_while_suspended_what_waits_leaves_room_in_the_queue_for_a_new_session() -> None:
    # Two stanzas wait for an acknowledgement; a new session needs room
    # for its presence and its roster request.
    first = suspended()
    room = first.session.max_unacked - 2 - 2
    for n in range(room):
        first.account.send(message_to_alice(f"{n}"))
    with pytest.raises(UnackedQueueFull):
        first.account.send(message_to_alice("one too many"))


def small_suspended(max_unacked: int) -> AccountLink:
    link = AccountLink(session=StreamManagement(max_unacked=max_unacked))
    link.log_in()
    link.lose()
    return link


def test_what_waited_fits_in_the_queue_beside_what_the_server_never_acknowledged(
    logs: list[LogEvent],
) -> None:
    first = small_suspended(5)  # 2 unacknowledged: room for 1 held
    first.account.send(message_to_alice("held"))
    with pytest.raises(UnackedQueueFull):
        first.account.send(message_to_alice("no room"))
    second = resumed_link(first.session, first.account)
    second.written()
    second.feed(sm_element("resumed", previd=SESSION, h="0"))
    bodies = [e.findtext("{jabber:client}body") for e in second.sent()]
    assert bodies == [None, None, "held"]
    assert not any("dropped a stanza" in m for m in messages(logs))


def test_after_a_failed_resumption_the_presence_goes_before_what_waited() -> None:
    first = small_suspended(5)
    first.account.send(message_to_alice("held"))
    second = bound_anew(first)
    kinds = [etree.QName(e).localname for e in second.sent()]
    assert kinds == ["presence", "iq", "message"]


def test_a_link_lost_while_the_service_closes_it_ends_the_session_and_its_requests() -> None:
    link = AccountLink()
    link.log_in()
    ping = ping_to_the_server()
    failures: list[Failure] = []
    link.account.request(ping).addErrback(failures.append)
    link.protocol.close()  # SIGTERM: draining
    link.lose()
    assert [f.type for f in failures] == [ConnectionLost]
    assert not link.account.connected


def test_a_new_session_after_a_failed_resumption_sends_what_waited(
    logs: list[LogEvent],
) -> None:
    first = suspended()
    first.account.send(message_to_alice("during"))
    second = bound_anew(first)
    bodies = [e.findtext("{jabber:client}body") for e in second.sent()]
    assert "during" in bodies


def test_stopping_while_suspended_fails_pending_requests_and_says_what_never_went(
    logs: list[LogEvent],
) -> None:
    first = suspended()
    first.account.send(message_to_alice("during"))
    ping = ping_to_the_server()
    failures: list[Failure] = []
    first.account.request(ping).addErrback(failures.append)
    first.account.unlink(Failure(ConnectionLost("the service stopped")))
    assert [f.type for f in failures] == [ConnectionLost]
    assert any(
        "2 stanzas bob@example.org sent while its link was down" in m for m in messages(logs)
    )
