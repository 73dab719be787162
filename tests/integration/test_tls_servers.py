"""What the TLS test servers offer a client, pinned as tests, without empc's
streams: the features before and after STARTTLS, the SASL mechanisms, XEP-0198
stream management after authentication, direct TLS (XEP-0368), and that a
client trusting only the private CA logs in, but refuses a certificate for
another name.

If these fail, the account tests cannot mean anything.
"""

from __future__ import annotations

import base64
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import scramp
from client import LoginError, XmppClient, login
from lxml import etree
from servers import LOOPBACK, XmppServer
from tls import CertificateAuthority, CuttableProxy, TlsCertificates

pytestmark = pytest.mark.integration

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SM = "urn:xmpp:sm:3"
PROBE_TIMEOUT = 10.0
STREAM_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='{host}' version='1.0'>"
)

# The mechanisms each server offers on the encrypted stream.  Prosody stores
# one SCRAM hash (SHA-256 here) and so offers that SCRAM alone (and no -PLUS:
# it binds only to tls-unique, which TLS 1.3 lacks); ejabberd stores the
# passwords in plain and so offers every SCRAM, with channel binding too.
MECHANISMS_AFTER_TLS = {
    "prosody": {"PLAIN", "SCRAM-SHA-256"},
    "ejabberd": {
        "PLAIN",
        "DIGEST-MD5",
        "X-OAUTH2",
        *(f"SCRAM-SHA-{bits}{plus}" for bits in (1, 256, 512) for plus in ("", "-PLUS")),
    },
}
# The resumption time (s) each server offers in <enabled/>: Prosody's
# smacks_hibernation_time default, ejabberd's resume_timeout.
RESUMPTION_MAX = {"prosody": "600", "ejabberd": "300"}


class StreamClosed(Exception):
    """The server closed the stream or the connection, or sent nothing in time."""


class RawStream:
    """A client stream read element by element: just enough XMPP to see
    what a server offers, with every read bounded by ``deadline``."""

    def __init__(self, sock: socket.socket, host: str, deadline: float) -> None:
        self.sock = sock
        self.host = host
        self.deadline = deadline
        self._parser: etree.XMLPullParser
        self._depth = 0

    def open(self) -> etree._Element:
        """Send a stream header; return the server's ``<stream:features/>``."""
        self._parser = etree.XMLPullParser(events=("start", "end"))
        self._depth = 0
        self.send(STREAM_HEADER.format(host=self.host))
        return self.expect(f"{{{NS_STREAMS}}}features")

    def send(self, data: str) -> None:
        self.sock.sendall(data.encode())

    def expect(self, tag: str) -> etree._Element:
        element = self.next_element()
        if element.tag != tag:
            raise AssertionError(f"expected {tag}, got {etree.tostring(element)!r}")
        return element

    def next_element(self) -> etree._Element:
        """The next complete child of the stream element."""
        while True:
            for event, element in self._parser.read_events():
                self._depth += 1 if event == "start" else -1
                if event == "end" and self._depth == 1:
                    assert isinstance(element, etree._Element)
                    return element
                if self._depth == 0:
                    raise StreamClosed("the server closed the stream")
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise StreamClosed("no answer in time")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except OSError as exc:
                raise StreamClosed(f"read failed: {exc}") from exc
            if not data:
                raise StreamClosed("the server closed the connection")
            self._parser.feed(data)


@dataclass(frozen=True)
class Features:
    """What a ``<stream:features/>`` offers."""

    starttls: bool
    starttls_required: bool
    mechanisms: frozenset[str]
    bind: bool
    sm: bool

    @classmethod
    def of(cls, features: etree._Element) -> Features:
        starttls = features.find(f"{{{NS_TLS}}}starttls")
        return cls(
            starttls=starttls is not None,
            starttls_required=starttls is not None
            and starttls.find(f"{{{NS_TLS}}}required") is not None,
            mechanisms=frozenset(
                mechanism.text or "" for mechanism in features.iter(f"{{{NS_SASL}}}mechanism")
            ),
            bind=features.find(f"{{{NS_BIND}}}bind") is not None,
            sm=features.find(f"{{{NS_SM}}}sm") is not None,
        )


@dataclass(frozen=True)
class Session:
    """What a probe saw from connecting to logging in with stream management."""

    before_tls: Features | None  # None: direct TLS, no plaintext stream
    after_tls: Features
    after_auth: Features
    enabled: dict[str, str] = field(default_factory=dict)  # <enabled/>'s attributes
    acked: str | None = None  # the h of the <a/> answering an <r/>


def _sasl(stream: RawStream, name: str, payload: str = "") -> None:
    encoded = base64.b64encode(payload.encode()).decode() or "="
    stream.send(f"<{name} xmlns='{NS_SASL}'>{encoded}</{name}>")


def _payload(element: etree._Element) -> str:
    return base64.b64decode(element.text or "").decode()


def scram_login(stream: RawStream, mechanism: str, username: str, password: str) -> None:
    """Authenticate with the SCRAM ``mechanism`` (by scramp), checking the
    server's signature whether it comes in <success/> or a last challenge."""
    scram = scramp.ScramClient([mechanism], username, password)
    first = base64.b64encode(scram.get_client_first().encode()).decode()
    stream.send(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{first}</auth>")
    scram.set_server_first(_payload(stream.expect(f"{{{NS_SASL}}}challenge")))
    _sasl(stream, "response", scram.get_client_final())
    answer = stream.next_element()
    if answer.tag == f"{{{NS_SASL}}}challenge":
        scram.set_server_final(_payload(answer))
        _sasl(stream, "response")
        stream.expect(f"{{{NS_SASL}}}success")
    else:
        assert answer.tag == f"{{{NS_SASL}}}success", etree.tostring(answer)
        scram.set_server_final(_payload(answer))


def tls_context(certificates: TlsCertificates) -> ssl.SSLContext:
    """Verifies the server's certificate against the private CA alone."""
    return ssl.create_default_context(cafile=certificates.ca_file)


@dataclass
class Connection:
    """A client stream over TLS, and what the server offered on the way."""

    stream: RawStream
    before_tls: Features | None  # None: direct TLS, no plaintext stream
    after_tls: Features


@contextmanager
def encrypted(
    server: XmppServer,
    certificates: TlsCertificates,
    *,
    direct_tls: bool = False,
    port: int | None = None,
) -> Iterator[Connection]:
    """A stream to ``server`` encrypted with STARTTLS on its c2s port (or
    ``port``) or, ``direct_tls``, on its direct TLS port; closed on exit."""
    deadline = time.monotonic() + PROBE_TIMEOUT
    address = (LOOPBACK, port or (server.direct_tls_port if direct_tls else server.c2s_port))
    context = tls_context(certificates)
    with socket.create_connection(address, timeout=PROBE_TIMEOUT) as plain:
        before_tls = None
        if not direct_tls:
            stream = RawStream(plain, server.host, deadline)
            before_tls = Features.of(stream.open())
            stream.send(f"<starttls xmlns='{NS_TLS}'/>")
            stream.expect(f"{{{NS_TLS}}}proceed")
        with context.wrap_socket(plain, server_hostname=server.host) as sock:
            stream = RawStream(sock, server.host, deadline)
            yield Connection(stream, before_tls, Features.of(stream.open()))


def log_in(stream: RawStream, server: XmppServer, mechanism: str = "SCRAM-SHA-256") -> Features:
    """Authenticate as the bot; return the features of the new stream."""
    user, password = server.bot
    scram_login(stream, mechanism, user.partition("@")[0], password)
    return Features.of(stream.open())


def bind_and_enable(stream: RawStream) -> dict[str, str]:
    """Bind a resource and enable stream management with resumption;
    return the attributes of ``<enabled/>``."""
    stream.send(
        f"<iq type='set' id='bind'><bind xmlns='{NS_BIND}'><resource>probe</resource></bind></iq>"
    )
    bound = stream.next_element()
    assert bound.get("type") == "result", etree.tostring(bound)
    stream.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
    enabled = stream.expect(f"{{{NS_SM}}}enabled")
    return {str(name): str(value) for name, value in enabled.attrib.items()}


def acked(stream: RawStream) -> str | None:
    """Ask for an ack (``<r/>``); return the ``h`` of the server's ``<a/>``,
    passing over the server's own requests (left unanswered)."""
    stream.send(f"<r xmlns='{NS_SM}'/>")
    while (answer := stream.next_element()).tag == f"{{{NS_SM}}}r":
        pass
    assert answer.tag == f"{{{NS_SM}}}a", etree.tostring(answer)
    return answer.get("h")


def probe(
    server: XmppServer,
    certificates: TlsCertificates,
    *,
    direct_tls: bool = False,
    port: int | None = None,
    mechanism: str = "SCRAM-SHA-256",
) -> Session:
    """Connect as :func:`encrypted` does, log in as the bot with
    ``mechanism``, bind a resource and enable stream management (if
    offered), then close."""
    with encrypted(server, certificates, direct_tls=direct_tls, port=port) as connection:
        stream = connection.stream
        after_auth = log_in(stream, server, mechanism)
        session = Session(connection.before_tls, connection.after_tls, after_auth)
        if after_auth.sm:
            session = replace(session, enabled=bind_and_enable(stream), acked=acked(stream))
        stream.send("</stream:stream>")
    return session


# -- features ---------------------------------------------------------------


def test_starttls_is_offered_and_required_before_anything_else(
    tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates
) -> None:
    before = probe(tls_xmpp_server, tls_certificates).before_tls
    assert before is not None
    assert before.starttls
    assert before.starttls_required
    # Nothing to log in with before TLS: the password never goes out in clear.
    assert before.mechanisms == frozenset()


def test_mechanisms_after_starttls(
    tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates
) -> None:
    session = probe(tls_xmpp_server, tls_certificates)
    assert session.after_tls.mechanisms == MECHANISMS_AFTER_TLS[tls_xmpp_server.name]
    assert not session.after_tls.starttls


def test_every_scram_offered_logs_in(
    tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates
) -> None:
    offered = MECHANISMS_AFTER_TLS[tls_xmpp_server.name]
    scrams = sorted(m for m in offered if m.startswith("SCRAM-") and not m.endswith("-PLUS"))
    assert "SCRAM-SHA-256" in scrams
    for mechanism in scrams:
        # Raises unless the server accepts the proof and proves the password back.
        probe(tls_xmpp_server, tls_certificates, mechanism=mechanism)


def test_stream_management_is_offered_after_authentication(
    tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates
) -> None:
    session = probe(tls_xmpp_server, tls_certificates)
    assert not session.after_tls.sm
    assert session.after_auth.sm
    assert session.after_auth.bind


def test_stream_management_enables_with_resumption(
    tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates
) -> None:
    session = probe(tls_xmpp_server, tls_certificates)
    assert session.enabled.get("resume") in ("true", "1"), session.enabled
    assert session.enabled.get("id"), session.enabled
    assert session.enabled.get("max") == RESUMPTION_MAX[tls_xmpp_server.name], session.enabled
    # h counts the stanzas the server received since <enable/>: none (bind came before).
    assert session.acked == "0"


def test_direct_tls_port_offers_the_same_mechanisms(
    tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates
) -> None:
    session = probe(tls_xmpp_server, tls_certificates, direct_tls=True)
    assert session.before_tls is None
    assert session.after_tls.mechanisms == MECHANISMS_AFTER_TLS[tls_xmpp_server.name]
    assert session.after_auth.sm


# -- certificates -------------------------------------------------------------


def test_wrong_name_certificate_is_refused_by_a_verifying_client(
    wrong_name_xmpp_server: XmppServer, tls_certificates: TlsCertificates
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        probe(wrong_name_xmpp_server, tls_certificates)


def test_wrong_name_server_is_signed_by_the_same_ca(
    wrong_name_xmpp_server: XmppServer, tls_certificates: TlsCertificates
) -> None:
    # Only the name is wrong: without the name check, the chain verifies.
    context = tls_context(tls_certificates)
    context.check_hostname = False
    address = (LOOPBACK, wrong_name_xmpp_server.direct_tls_port or 0)
    with (
        socket.create_connection(address, timeout=PROBE_TIMEOUT) as plain,
        context.wrap_socket(plain) as sock,
    ):
        certificate = sock.getpeercert()
    assert certificate is not None
    assert certificate["subjectAltName"] == (("DNS", "wrong.example"),)


def test_slixmpp_logs_in_over_starttls_trusting_only_the_private_ca(
    tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates
) -> None:
    jid, password = tls_xmpp_server.bot
    with login(jid, password, tls_xmpp_server.c2s_port, ca_file=tls_certificates.ca_file) as client:
        assert client.ping(tls_xmpp_server.host).type == "result"
        assert client.encrypted


def test_slixmpp_refuses_the_wrong_name(
    wrong_name_xmpp_server: XmppServer, tls_certificates: TlsCertificates
) -> None:
    jid, password = wrong_name_xmpp_server.bot
    client = XmppClient(
        jid, password, wrong_name_xmpp_server.c2s_port, timeout=5, ca_file=tls_certificates.ca_file
    )
    with pytest.raises(LoginError, match="Hostname mismatch"):
        client.connect()


def test_slixmpp_refuses_a_certificate_from_another_ca(
    tls_xmpp_server: XmppServer, tmp_path: Path
) -> None:
    other_ca = CertificateAuthority(tmp_path)
    jid, password = tls_xmpp_server.bot
    client = XmppClient(
        jid, password, tls_xmpp_server.c2s_port, timeout=5, ca_file=other_ca.ca_file
    )
    with pytest.raises(LoginError, match="unable to get local issuer certificate"):
        client.connect()


# -- the proxy --------------------------------------------------------------------


@pytest.fixture
def proxy(tls_xmpp_server: XmppServer) -> Iterator[CuttableProxy]:
    """A cuttable proxy to the server's c2s (STARTTLS) port."""
    started = CuttableProxy(tls_xmpp_server.c2s_port)
    yield started
    started.stop()


def test_proxy_cut_ends_connections_and_keeps_listening(
    proxy: CuttableProxy, tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates
) -> None:
    deadline = time.monotonic() + PROBE_TIMEOUT
    with socket.create_connection((LOOPBACK, proxy.port), timeout=PROBE_TIMEOUT) as sock:
        stream = RawStream(sock, tls_xmpp_server.host, deadline)
        stream.open()
        assert proxy.cut() == 1
        with pytest.raises(StreamClosed):
            stream.next_element()
    # A new connection goes through as before.
    assert probe(tls_xmpp_server, tls_certificates, port=proxy.port).after_auth.sm
    assert proxy.connections == 2


def test_session_resumes_after_the_connection_is_cut(
    proxy: CuttableProxy, tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates
) -> None:
    host = tls_xmpp_server.host
    with encrypted(tls_xmpp_server, tls_certificates, port=proxy.port) as first:
        log_in(first.stream, tls_xmpp_server)
        previd = bind_and_enable(first.stream)["id"]
        first.stream.send(
            f"<iq type='get' id='ping' to='{host}'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        assert first.stream.next_element().get("type") == "result"
        # Both servers ask for an ack right after each stanza they send;
        # the connection is cut before this one is answered.
        first.stream.expect(f"{{{NS_SM}}}r")
        assert acked(first.stream) == "1"
        assert proxy.cut() == 1
    with encrypted(tls_xmpp_server, tls_certificates, port=proxy.port) as second:
        log_in(second.stream, tls_xmpp_server)
        second.stream.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>")
        resumed = second.stream.expect(f"{{{NS_SM}}}resumed")
        assert resumed.get("previd") == previd
        # The server had received one stanza (the ping) on the old connection.
        assert resumed.get("h") == "1"
        # It sends again the stanza we did not ack, then asks for an ack.
        again = second.stream.next_element()
        assert (again.tag, again.get("id")) == ("{jabber:client}iq", "ping"), etree.tostring(again)
        second.stream.expect(f"{{{NS_SM}}}r")
        # The session goes on: still one stanza received from us.
        assert acked(second.stream) == "1"
