"""The empc component, run by ``twistd``, against real Prosody and ejabberd.

Black box: only the process's log, its exit code, and what XMPP clients see.
"""

from __future__ import annotations

import re
import signal
import time

import pytest
from client import DISCO_INFO_NS, PING_NS, XmppClient, login
from component import ComponentProcess, CountingProxy, StartComponent
from servers import XmppServer

pytestmark = pytest.mark.integration

DOMAIN = "echo.localhost"
CONNECTED = re.escape(f"Component {DOMAIN} connected")
CONNECT_TIMEOUT = 20.0
# Server restart (ejabberd boots in a few seconds) plus max_delay.
RECONNECT_TIMEOUT = 45.0


def _client(server: XmppServer) -> XmppClient:
    jid, password = server.users[0]
    return login(jid, password, server.c2s_port)


@pytest.fixture
def connected(xmpp_server: XmppServer, start_component: StartComponent) -> ComponentProcess:
    """The component, connected to the server under test."""
    component = start_component(xmpp_server)
    component.wait_for(CONNECTED, CONNECT_TIMEOUT)
    return component


def test_handshake_succeeds(xmpp_server: XmppServer, start_component: StartComponent) -> None:
    component = start_component(xmpp_server)
    line = component.wait_for(CONNECTED, CONNECT_TIMEOUT)
    assert DOMAIN in line
    assert component.returncode is None, "the component exited"


def test_ping(xmpp_server: XmppServer, connected: ComponentProcess) -> None:
    with _client(xmpp_server) as client:
        reply = client.ping(DOMAIN)
    assert reply.type == "result", reply.xml


def test_disco_info(xmpp_server: XmppServer, connected: ComponentProcess) -> None:
    with _client(xmpp_server) as client:
        info = client.disco_info(DOMAIN)
    assert info.reply.type == "result", info.reply.xml
    assert info.identities, info.reply.xml
    assert all("category" in i and "type" in i for i in info.identities)
    assert {PING_NS, DISCO_INFO_NS} <= info.features, info.reply.xml


def test_unknown_payload_is_service_unavailable(
    xmpp_server: XmppServer, connected: ComponentProcess
) -> None:
    with _client(xmpp_server) as client:
        reply = client.iq(DOMAIN, "<query xmlns='urn:example:unknown'/>")
    assert reply.type == "error", reply.xml
    assert reply.error_condition == "service-unavailable", reply.xml


def test_wrong_secret_is_reported_and_not_retried_in_a_loop(
    xmpp_server: XmppServer, start_component: StartComponent
) -> None:
    # The proxy counts connection attempts, whatever the component logs.
    proxy = CountingProxy(xmpp_server.component_port)
    try:
        component = start_component(
            xmpp_server,
            secret="definitely-wrong",
            port=proxy.port,
            permanent_error_delay=30,
        )
        line = component.wait_for(
            r"(?i)not-authorized.*secret|secret.*not-authorized", CONNECT_TIMEOUT
        )
        assert "not-authorized" in line
        time.sleep(3)  # a tight retry loop would reconnect many times by now
        attempts = proxy.connections
    finally:
        proxy.stop()
    log = component.output()
    assert 1 <= attempts <= 2, f"{attempts} connection attempts in ~3 s\n{log}"
    assert component.count("not-authorized") <= 2, log
    assert component.count(CONNECTED) == 0, log


def test_reconnects_after_server_restart(
    xmpp_server: XmppServer, connected: ComponentProcess
) -> None:
    xmpp_server.restart()
    connected.wait_for(CONNECTED, RECONNECT_TIMEOUT, count=2)
    with _client(xmpp_server) as client:
        reply = client.ping(DOMAIN)
    assert reply.type == "result", reply.xml


def test_sigterm_exits_cleanly(connected: ComponentProcess) -> None:
    connected.send_signal(signal.SIGTERM)
    code = connected.wait(10)
    assert code is not None, f"still running 10 s after SIGTERM\n{connected.output()}"
    assert code == 0, connected.output()
    connected.wait_for("Stream closed", 1)
