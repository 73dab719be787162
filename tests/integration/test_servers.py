"""Smoke tests of the test servers themselves, without empc.

If these fail, the component tests cannot mean anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import time

import pytest
from client import XmppClient, login
from component import CountingProxy
from servers import LOOPBACK, XmppServer

pytestmark = pytest.mark.integration

STREAM_HEADER = (
    "<stream:stream xmlns='jabber:component:accept' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
)


def _read_until(
    sock: socket.socket, buffer: str, pattern: str, deadline: float
) -> tuple[re.Match[str] | None, str]:
    """Read until ``pattern`` matches the received text, the peer closes, or
    ``deadline``; return the match (or None) and everything received."""
    regex = re.compile(pattern, re.DOTALL)
    while not (match := regex.search(buffer)):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, buffer
        sock.settimeout(remaining)
        try:
            data = sock.recv(4096)
        except OSError:  # timeout, or reset by a server that gave up on us
            return None, buffer
        if not data:
            return None, buffer
        buffer += data.decode(errors="replace")
    return match, buffer


def component_handshake(port: int, domain: str, secret: str, timeout: float = 10.0) -> str:
    """A raw XEP-0114 handshake; return what the server said after ours."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(STREAM_HEADER.format(domain=domain).encode())
        header, received = _read_until(sock, "", r"<stream:stream\b[^>]*>", deadline)
        assert header, f"no stream header from the server: {received!r}"
        # Prosody sends id='' (then a stream error) for a domain it does not know.
        stream_id = re.search(r"\bid=['\"]([^'\"]*)['\"]", header.group(0))
        assert stream_id, f"no stream id in {header.group(0)!r}"
        digest = hashlib.sha1((stream_id.group(1) + secret).encode()).hexdigest()
        with contextlib.suppress(OSError):  # the server may have closed already
            sock.sendall(f"<handshake>{digest}</handshake>".encode())
        # Success is an empty <handshake/>; failure a stream error then close.
        _, answer = _read_until(
            sock,
            received[header.end() :],
            r"<handshake\s*/>|<handshake>\s*</handshake>|</stream:stream>",
            deadline,
        )
        return answer


def test_server_is_listening(xmpp_server: XmppServer) -> None:
    assert xmpp_server.running
    assert xmpp_server.host == "localhost"
    assert xmpp_server.c2s_port != xmpp_server.component_port
    assert len(xmpp_server.users) >= 2


def test_two_users_log_in(xmpp_server: XmppServer) -> None:
    (alice, alice_pw), (bob, bob_pw) = xmpp_server.users[:2]
    with (
        login(alice, alice_pw, xmpp_server.c2s_port) as a,
        login(bob, bob_pw, xmpp_server.c2s_port) as b,
    ):
        # Both sessions are usable at the same time.
        assert a.ping(xmpp_server.host).type == "result"
        assert b.ping(xmpp_server.host).type == "result"


def test_wrong_password_is_refused(xmpp_server: XmppServer) -> None:
    jid, _ = xmpp_server.users[0]
    client = XmppClient(jid, "not-the-password", xmpp_server.c2s_port, timeout=10)
    with pytest.raises(Exception, match="authentication failed"):
        client.connect()


def test_ping_server_domain(xmpp_server: XmppServer) -> None:
    jid, password = xmpp_server.users[0]
    with login(jid, password, xmpp_server.c2s_port) as client:
        reply = client.ping(xmpp_server.host)
    assert reply.type == "result", reply.xml


def test_disco_info_server_domain(xmpp_server: XmppServer) -> None:
    jid, password = xmpp_server.users[0]
    with login(jid, password, xmpp_server.c2s_port) as client:
        info = client.disco_info(xmpp_server.host)
    assert info.reply.type == "result", info.reply.xml
    assert "urn:xmpp:ping" in info.features


@pytest.mark.parametrize("domain", ["echo.localhost", "second.localhost"])
def test_component_handshake(xmpp_server: XmppServer, domain: str) -> None:
    secret = xmpp_server.component(domain).secret
    answer = component_handshake(xmpp_server.component_port, domain, secret)
    assert re.search(r"<handshake\s*/>|<handshake>\s*</handshake>", answer), answer


def test_component_wrong_secret(xmpp_server: XmppServer) -> None:
    answer = component_handshake(xmpp_server.component_port, "echo.localhost", "nope")
    assert "stream:error" in answer, answer
    assert "not-authorized" in answer, answer


def test_component_unconfigured_domain_is_refused(xmpp_server: XmppServer) -> None:
    # A domain the server does not know must never get a session.
    answer = component_handshake(xmpp_server.component_port, "unknown.localhost", "s3cret")
    assert not re.search(r"<handshake\s*/>", answer), answer
    assert "stream:error" in answer, answer


def test_restart_keeps_ports_and_users(xmpp_server: XmppServer) -> None:
    ports = (xmpp_server.c2s_port, xmpp_server.component_port)
    xmpp_server.restart()
    assert xmpp_server.running
    assert (xmpp_server.c2s_port, xmpp_server.component_port) == ports
    jid, password = xmpp_server.users[0]
    with login(jid, password, xmpp_server.c2s_port) as client:
        assert client.ping(xmpp_server.host).type == "result"
    answer = component_handshake(xmpp_server.component_port, "echo.localhost", "s3cret")
    assert re.search(r"<handshake\s*/>", answer), answer


def test_counting_proxy_forwards_and_counts(xmpp_server: XmppServer) -> None:
    # test_component relies on CountingProxy to count reconnection attempts.
    proxy = CountingProxy(xmpp_server.component_port)
    try:
        ok = component_handshake(proxy.port, "echo.localhost", "s3cret")
        refused = component_handshake(proxy.port, "echo.localhost", "nope")
        assert proxy.connections == 2
    finally:
        proxy.stop()
    assert re.search(r"<handshake\s*/>", ok), ok
    assert "not-authorized" in refused, refused
