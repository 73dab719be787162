"""The tools of production against real Prosody: the health and metrics
listener scraped while a real client talks to the component, the debug
stanza log, and the SIGTERM drain with actions in flight."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from client import IqReply, XmppClient, login
from component import ComponentProcess, StartComponent
from prometheus_client.parser import text_string_to_metric_families
from sample_handlers import DRAIN, NS_DRAIN, NS_WEATHER
from servers import XmppServer, free_port

pytestmark = pytest.mark.integration

DOMAIN = "echo.localhost"
CONNECTED = re.escape(f"Component {DOMAIN} connected")
CONNECT_TIMEOUT = 20.0
LABEL = {"component": DOMAIN}
# No keepalive pings during a test: they would move the counters.
QUIET = {"interval": 600, "ping_interval": 600}


def _client(server: XmppServer, index: int = 0) -> XmppClient:
    jid, password = server.users[index]
    return login(jid, password, server.c2s_port)


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, by name and labels."""
    status, body = _get(port, "/metrics")
    assert status == 200, body
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset({**LABEL, **labels}.items())), 0.0)


@pytest.fixture
def metered(
    prosody_server: XmppServer, start_component: StartComponent
) -> Iterator[tuple[ComponentProcess, int]]:
    port = free_port()
    component = start_component(
        prosody_server,
        handlers=["sample_handlers:Weather"],
        sections={
            "metrics": {"listen": f"tcp:{port}:interface=127.0.0.1"},
            "logging": {"debug": True},
        },
        **QUIET,
    )
    component.wait_for(CONNECTED, CONNECT_TIMEOUT)
    yield component, port


def test_healthz_and_readyz_say_the_component_is_linked(
    metered: tuple[ComponentProcess, int],
) -> None:
    _, port = metered
    for path in ("/healthz", "/readyz"):
        status, body = _get(port, path)
        assert status == 200, body
        assert json.loads(body) == {
            "status": "ok",
            "components": {DOMAIN: {"linked": True, "started": True}},
        }


def test_metrics_count_a_real_clients_traffic_exactly(
    prosody_server: XmppServer, metered: tuple[ComponentProcess, int]
) -> None:
    _, port = metered
    with _client(prosody_server) as client:
        before = _samples(port)
        pings = [client.ping(DOMAIN) for _ in range(3)]
        forecasts = [
            client.iq(DOMAIN, f"<forecast xmlns='{NS_WEATHER}' city='{city}'/>")
            for city in ("Paris", "Oslo")
        ]
        unknown = client.iq(DOMAIN, "<query xmlns='urn:example:nothing'/>")
        after = _samples(port)
    assert [reply.type for reply in [*pings, *forecasts]] == ["result"] * 5
    assert unknown.error_condition == "service-unavailable", unknown.xml

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("empc_stanzas_received_total", kind="iq") == 6
    assert moved("empc_stanzas_sent_total", kind="iq") == 6
    assert moved("empc_iq_replies_total", outcome="result", condition="") == 5
    assert moved("empc_iq_replies_total", outcome="error", condition="service-unavailable") == 1
    assert moved("empc_action_seconds_count", route="Ping.ping") == 3
    assert moved("empc_action_seconds_count", route="Weather.forecast") == 2
    assert _value(after, "empc_component_linked") == 1
    assert _value(after, "empc_actions_in_flight") == 0


def test_the_debug_log_shows_each_stanza_with_the_message_text_masked(
    prosody_server: XmppServer, metered: tuple[ComponentProcess, int]
) -> None:
    component, _ = metered
    with _client(prosody_server) as client:
        reply = client.ping(DOMAIN)
        client.send_message(DOMAIN, "my secret words")
    assert reply.type == "result", reply.xml
    component.wait_for(rf"Stanza in on {re.escape(DOMAIN)}: <message.*\[15 characters\]")
    component.wait_for(rf"Stanza out on {re.escape(DOMAIN)}: <iq.*type=\"result\"")
    assert "my secret words" not in component.output()


# The SIGTERM drain


def _in_background(
    client: XmppClient, payload: str
) -> tuple[threading.Thread, list[IqReply | Exception]]:
    """Send an IQ from a thread; the list gets its answer, or the error of
    an IQ never answered (the process was gone)."""
    answers: list[IqReply | Exception] = []

    def ask() -> None:
        try:
            answers.append(client.iq(DOMAIN, payload, timeout=DRAIN + 5))
        except Exception as e:
            answers.append(e)

    thread = threading.Thread(target=ask)
    thread.start()
    return thread, answers


@pytest.fixture
def draining(prosody_server: XmppServer, start_component: StartComponent) -> ComponentProcess:
    component = start_component(
        prosody_server, handlers=["sample_handlers:Draining"], limits={"grace": 10}, **QUIET
    )
    component.wait_for(CONNECTED, CONNECT_TIMEOUT)
    return component


def test_sigterm_answers_new_iqs_wait_and_lets_the_running_action_answer(
    prosody_server: XmppServer, draining: ComponentProcess
) -> None:
    with _client(prosody_server, 0) as alice, _client(prosody_server, 1) as bob:
        started = time.monotonic()
        running, answers = _in_background(alice, f"<work xmlns='{NS_DRAIN}'/>")
        time.sleep(0.5)  # the action has started
        draining.send_signal(signal.SIGTERM)
        draining.wait_for("SIGTERM: stopping; 1 actions in flight get up to 10")
        refused = bob.ping(DOMAIN)
        running.join(DRAIN + 10)
        finished = time.monotonic() - started
    assert refused.error_condition == "resource-constraint", refused.xml
    assert refused.error_type == "wait", refused.xml
    [answer] = answers
    assert isinstance(answer, IqReply) and answer.type == "result", answer
    assert "done" in answer.xml and finished >= DRAIN
    assert draining.wait(15) == 0, draining.output()
    assert draining.count("Stream closed cleanly") == 1, draining.output()


def test_a_second_sigterm_exits_at_once_counting_what_it_abandons(
    prosody_server: XmppServer, draining: ComponentProcess
) -> None:
    with _client(prosody_server) as alice:
        running, _ = _in_background(alice, f"<work xmlns='{NS_DRAIN}'/>")
        time.sleep(0.5)
        draining.send_signal(signal.SIGTERM)
        draining.wait_for("SIGTERM: stopping")
        stopped_at = time.monotonic()
        draining.send_signal(signal.SIGTERM)
        code = draining.wait(DRAIN)
        took = time.monotonic() - stopped_at
        running.join(DRAIN + 10)
    assert code == 1, draining.output()
    assert took < DRAIN - 0.5, f"exited {took:.1f} s after the second SIGTERM"
    assert draining.count("exiting at once, abandoning 1 actions") == 1


def test_when_the_grace_runs_out_the_stream_closes_and_the_process_exits_0(
    prosody_server: XmppServer, start_component: StartComponent
) -> None:
    component = start_component(
        prosody_server, handlers=["sample_handlers:Draining"], limits={"grace": 0.5}, **QUIET
    )
    component.wait_for(CONNECTED, CONNECT_TIMEOUT)
    with _client(prosody_server) as alice:
        running, _ = _in_background(alice, f"<work xmlns='{NS_DRAIN}'/>")
        time.sleep(0.5)
        component.send_signal(signal.SIGTERM)
        assert component.wait(DRAIN + 10) == 0, component.output()
        running.join(DRAIN + 10)
    assert component.count("with 1 stanzas still unanswered after 0.5 seconds") == 1
    assert component.count("Stream closed cleanly") == 1, component.output()
