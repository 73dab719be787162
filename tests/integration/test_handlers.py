"""Handlers from a config, served by ``twistd empc`` against real servers.

The handlers live in ``sample_handlers.py``; a real XMPP client (alice, or
bob) talks to the component through Prosody or ejabberd and sees only what
a client would see: results, their payloads, and stanza errors.
"""

from __future__ import annotations

import re
import signal
import threading
import time
import xml.etree.ElementTree as ET

import pytest
from client import DISCO_INFO_NS, PING_NS, STANZAS_NS, IqReply, XmppClient, login
from component import ComponentProcess, StartComponent
from sample_handlers import NS_ADMIN, NS_BLOCKING, NS_SECOND, NS_SLOW, NS_WEATHER
from servers import XmppServer

pytestmark = pytest.mark.integration

DOMAIN = "echo.localhost"
SECOND = "second.localhost"
CONNECT_TIMEOUT = 20.0
HANDLERS = [
    "sample_handlers:Weather",
    "sample_handlers:Slow",
    "sample_handlers:Blocking",
    "sample_handlers:Lingering",
    "sample_handlers:Admin",
]


def _connected(domain: str) -> str:
    return re.escape(f"Component {domain} connected")


def _login(server: XmppServer, user: int = 0) -> XmppClient:
    """User 0 is alice, user 1 is bob."""
    jid, password = server.users[user]
    return login(jid, password, server.c2s_port)


def _payload(reply: IqReply, namespace: str, name: str) -> ET.Element:
    assert reply.type == "result", reply.xml
    found = reply.element.find(f"{{{namespace}}}{name}")
    assert found is not None, f"no {{{namespace}}}{name} in {reply.xml}"
    return found


def _error_text(reply: IqReply) -> str | None:
    text = next(reply.element.iter(f"{{{STANZAS_NS}}}text"), None)
    return None if text is None else text.text


def _forecast(city: str) -> str:
    return f"<forecast xmlns='{NS_WEATHER}' city='{city}'/>"


@pytest.fixture
def component(xmpp_server: XmppServer, start_component: StartComponent) -> ComponentProcess:
    """echo.localhost with every sample handler; alice is the only admin."""
    process = start_component(
        xmpp_server,
        handlers=HANDLERS,
        access_lists={"admins": [f"alice@{xmpp_server.host}"]},
    )
    process.wait_for(_connected(DOMAIN), CONNECT_TIMEOUT)
    return process


def test_result_payload_reaches_the_client(
    xmpp_server: XmppServer, component: ComponentProcess
) -> None:
    with _login(xmpp_server) as client:
        reply = client.iq(DOMAIN, _forecast("Paris"))
    forecast = _payload(reply, NS_WEATHER, "forecast")
    assert forecast.get("city") == "Paris", reply.xml
    assert forecast.get("sky") == "sunny", reply.xml
    assert forecast.get("domain") == DOMAIN, reply.xml


def test_stanza_error_reaches_the_client(
    xmpp_server: XmppServer, component: ComponentProcess
) -> None:
    with _login(xmpp_server) as client:
        reply = client.iq(DOMAIN, _forecast("Atlantis"))
    assert reply.type == "error", reply.xml
    assert reply.error_condition == "item-not-found", reply.xml
    assert reply.error_type == "cancel", reply.xml
    assert _error_text(reply) == "no such city", reply.xml


@pytest.mark.parametrize("action", ["never", "sleep"])
def test_action_past_its_timeout_is_remote_server_timeout(
    xmpp_server: XmppServer, component: ComponentProcess, action: str
) -> None:
    # "never" returns a Deferred that never fires; "sleep" awaits a 10 s
    # deferLater. Both routes have timeout=1.
    with _login(xmpp_server) as client:
        started = time.monotonic()
        reply = client.iq(DOMAIN, f"<{action} xmlns='{NS_SLOW}'/>", timeout=8)
        elapsed = time.monotonic() - started
        # The component is still serving after the late action was dropped.
        assert client.ping(DOMAIN).type == "result"
    assert reply.type == "error", reply.xml
    assert reply.error_condition == "remote-server-timeout", reply.xml
    assert reply.error_type == "wait", reply.xml
    assert 0.9 <= elapsed < 3.0, f"answered after {elapsed:.2f} s"
    component.wait_for(rf"Slow\.{action} did not finish in time", 5)


def test_blocking_action_runs_in_the_thread_pool(
    xmpp_server: XmppServer, component: ComponentProcess
) -> None:
    with _login(xmpp_server) as client:
        started = time.monotonic()
        reply = client.iq(DOMAIN, f"<work xmlns='{NS_BLOCKING}'/>")
        elapsed = time.monotonic() - started
    work = _payload(reply, NS_BLOCKING, "work")
    thread = work.get("thread", "")
    # Twisted names pool threads "PoolThread-<pool name>-<n>".
    assert "empc-actions" in thread, reply.xml
    assert thread != "MainThread", reply.xml
    assert elapsed >= 0.2, f"answered after {elapsed:.2f} s, before the action's sleep ended"


def test_an_iq_still_running_at_sigterm_is_answered_before_the_component_exits(
    xmpp_server: XmppServer, component: ComponentProcess
) -> None:
    with _login(xmpp_server) as client:
        stop = threading.Timer(0.5, component.send_signal, [signal.SIGTERM])
        stop.start()
        try:
            reply = client.iq(DOMAIN, f"<linger xmlns='{NS_BLOCKING}'/>")
        finally:
            stop.join()
    assert _payload(reply, NS_BLOCKING, "linger").get("done") == "yes", reply.xml
    assert component.wait(15) == 0, component.output()
    assert component.count("Stream closed cleanly") == 1, component.output()


def test_access_list_allows_alice_and_forbids_bob(
    xmpp_server: XmppServer, component: ComponentProcess
) -> None:
    payload = f"<status xmlns='{NS_ADMIN}'/>"
    with _login(xmpp_server, 0) as alice, _login(xmpp_server, 1) as bob:
        allowed = alice.iq(DOMAIN, payload)
        refused = bob.iq(DOMAIN, payload)
    status = _payload(allowed, NS_ADMIN, "status")
    assert status.get("state") == "ok", allowed.xml
    assert status.get("sender", "").startswith(f"alice@{xmpp_server.host}/"), allowed.xml
    assert refused.type == "error", refused.xml
    assert refused.error_condition == "forbidden", refused.xml
    assert refused.error_type == "auth", refused.xml


def test_disco_info_lists_the_features_of_the_routes(
    xmpp_server: XmppServer, component: ComponentProcess
) -> None:
    with _login(xmpp_server) as client:
        info = client.disco_info(DOMAIN)
    assert info.reply.type == "result", info.reply.xml
    expected = {PING_NS, DISCO_INFO_NS, NS_WEATHER, NS_SLOW, NS_BLOCKING, NS_ADMIN}
    assert expected <= info.features, info.reply.xml
    assert NS_SECOND not in info.features, info.reply.xml


def test_two_components_in_one_process(
    xmpp_server: XmppServer, start_component: StartComponent
) -> None:
    process = start_component(
        xmpp_server,
        components=[
            {
                "domain": DOMAIN,
                "handlers": [{"class": "sample_handlers:Weather", "config": {"station": "first"}}],
            },
            {
                "domain": SECOND,
                "handlers": [
                    {"class": "sample_handlers:Weather", "config": {"station": "second"}},
                    "sample_handlers:Second",
                ],
            },
        ],
    )
    process.wait_for(_connected(DOMAIN), CONNECT_TIMEOUT)
    process.wait_for(_connected(SECOND), CONNECT_TIMEOUT)
    hello = f"<hello xmlns='{NS_SECOND}'/>"
    with _login(xmpp_server) as client:
        pings = {domain: client.ping(domain, timeout=5) for domain in (DOMAIN, SECOND)}
        forecasts = {domain: client.iq(domain, _forecast("Oslo")) for domain in (DOMAIN, SECOND)}
        hellos = {domain: client.iq(domain, hello) for domain in (DOMAIN, SECOND)}
        infos = {domain: client.disco_info(domain) for domain in (DOMAIN, SECOND)}
    assert process.count(r"Component \S+ connected") == 2, process.output()

    for domain, reply in pings.items():
        assert reply.type == "result", f"{domain}: {reply.xml}"

    for domain, station in ((DOMAIN, "first"), (SECOND, "second")):
        forecast = _payload(forecasts[domain], NS_WEATHER, "forecast")
        assert forecast.get("city") == "Oslo", forecasts[domain].xml
        assert forecast.get("station") == station, forecasts[domain].xml
        assert forecast.get("domain") == domain, forecasts[domain].xml

    assert hellos[DOMAIN].type == "error", hellos[DOMAIN].xml
    assert hellos[DOMAIN].error_condition == "service-unavailable", hellos[DOMAIN].xml
    assert _payload(hellos[SECOND], NS_SECOND, "hello").get("domain") == SECOND

    assert NS_WEATHER in infos[DOMAIN].features, infos[DOMAIN].reply.xml
    assert NS_SECOND not in infos[DOMAIN].features, infos[DOMAIN].reply.xml
    assert {NS_WEATHER, NS_SECOND} <= infos[SECOND].features, infos[SECOND].reply.xml
