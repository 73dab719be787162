"""The HTTP listener: /healthz, /readyz and /metrics, its config and its wiring."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from test_service import CLOSE, HANDSHAKE_OK, SERVER_HEADER, stream_error, successResultOf
from test_systemd import write_config
from twisted.application.service import IService, MultiService
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError, ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IListeningPort, IProtocol
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.web.resource import getChildForRequest
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyRequest

from empc import _tap
from empc._component import Component
from empc._config import Config, ConfigError, load_config
from empc._metrics import Health, MetricsEndpoint, metrics_site
from empc.storage import Database


def get(site: Site, path: bytes) -> tuple[int, bytes, DummyRequest]:
    """Answer a GET of ``path`` by ``site``'s resources, in memory."""
    request = DummyRequest(path.strip(b"/").split(b"/"))
    body = getChildForRequest(site.resource, request).render(request)
    assert isinstance(body, bytes)
    return request.responseCode or 200, body, request


@dataclass
class Watched:
    """A component service as the metrics see it."""

    component: Component
    running: bool = True
    send_queue: int = 0


def health_of(started: dict[str, bool], database: Database | None = None) -> Health:
    health = Health(CollectorRegistry(), database)
    for domain, running in started.items():
        health.add_component(Watched(Component(domain, [], Clock()), running))
    return health


def sample(health: Health, name: str, **labels: str) -> float | None:
    return health.registry.get_sample_value(name, labels)


def test_healthz_is_503_naming_each_component_until_every_one_is_linked() -> None:
    health = health_of({"a.example.org": True, "b.example.org": True})
    health.link_changed("a.example.org", True)
    code, body, request = get(metrics_site(health), b"/healthz")
    assert code == 503
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"application/json"]
    assert json.loads(body) == {
        "status": "unavailable",
        "components": {
            "a.example.org": {"linked": True, "started": True},
            "b.example.org": {"linked": False, "started": True},
        },
    }


def test_healthz_is_200_once_every_component_is_linked() -> None:
    health = health_of({"a.example.org": True, "b.example.org": True})
    health.link_changed("a.example.org", True)
    health.link_changed("b.example.org", True)
    code, body, _ = get(metrics_site(health), b"/healthz")
    assert (code, json.loads(body)["status"]) == (200, "ok")


def test_healthz_is_503_again_when_a_link_is_lost() -> None:
    health = health_of({"a.example.org": True})
    health.link_changed("a.example.org", True)
    health.link_changed("a.example.org", False)
    assert get(metrics_site(health), b"/healthz")[0] == 503


def test_readyz_is_503_while_a_component_has_not_started_its_handlers() -> None:
    health = health_of({"a.example.org": False})
    health.link_changed("a.example.org", True)
    code, body, _ = get(metrics_site(health), b"/readyz")
    assert (code, json.loads(body)["status"]) == (503, "unavailable")
    assert get(metrics_site(health), b"/healthz")[0] == 200


def test_readyz_is_200_once_linked_and_started() -> None:
    health = health_of({"a.example.org": True})
    health.link_changed("a.example.org", True)
    assert get(metrics_site(health), b"/readyz")[0] == 200


def test_metrics_give_the_link_state_per_component_in_the_text_format() -> None:
    health = health_of({"a.example.org": True, "b.example.org": True})
    health.link_changed("b.example.org", True)
    code, body, _ = get(metrics_site(health), b"/metrics")
    assert code == 200
    assert 'empc_component_linked{component="a.example.org"} 0.0' in body.decode()
    assert 'empc_component_linked{component="b.example.org"} 1.0' in body.decode()


def test_reconnects_count_the_links_after_the_first() -> None:
    health = health_of({"a.example.org": True})
    name = "empc_component_reconnects_total"
    assert sample(health, name, component="a.example.org") == 0
    health.link_changed("a.example.org", True)
    health.link_changed("a.example.org", False)
    assert sample(health, name, component="a.example.org") == 0
    health.link_changed("a.example.org", True)
    assert sample(health, name, component="a.example.org") == 1


def test_handshake_failures_are_counted_by_condition() -> None:
    health = health_of({"a.example.org": True})
    health.handshake_failed("a.example.org", "not-authorized")
    health.handshake_failed("a.example.org", "not-authorized")
    health.handshake_failed("a.example.org", "conflict")
    name = "empc_handshake_failures_total"
    assert sample(health, name, component="a.example.org", condition="not-authorized") == 2
    assert sample(health, name, component="a.example.org", condition="conflict") == 1


def test_storage_pool_is_in_the_metrics_when_there_is_a_database() -> None:
    health = health_of({"a.example.org": True}, Database("sqlite://", clock=MemoryReactorClock()))
    assert sample(health, "empc_storage_connections_in_use") == 0
    assert sample(health, "empc_storage_pool_size") == 1


def test_without_a_database_there_is_no_storage_metric() -> None:
    assert sample(health_of({"a.example.org": True}), "empc_storage_pool_size") is None


def test_each_health_has_a_registry_of_its_own() -> None:
    first = health_of({"a.example.org": True})
    first.handshake_failed("a.example.org", "conflict")
    second = health_of({"a.example.org": True})
    name = "empc_handshake_failures_total"
    assert sample(second, name, component="a.example.org", condition="conflict") is None


# Config and wiring


def test_without_a_metrics_section_there_is_no_listener(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path), {}).metrics_listen is None


def test_an_empty_metrics_section_listens_on_loopback_port_9180(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "metrics:\n"), {})
    assert config.metrics_listen == "tcp:9180:interface=127.0.0.1"


def test_a_bad_listen_endpoint_names_key_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.listen \(line 5\): not a server endpoint"):
        load_config(write_config(tmp_path, "metrics:\n  listen: nonsense:1\n"), {})


def test_an_unknown_metrics_key_names_key_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.port \(line 5\): unknown key"):
        load_config(write_config(tmp_path, "metrics:\n  port: 9180\n"), {})


def test_the_process_listens_where_the_config_says_and_answers_health(tmp_path: Path) -> None:
    extra = "metrics:\n  listen: tcp:0:interface=127.0.0.1\n"
    config = load_config(write_config(tmp_path, extra), {})
    reactor = MemoryReactorClock()
    top = _tap.build_services(config, reactor, {})
    assert isinstance(top, MultiService)
    top.startService()
    [(port, site, _, interface)] = reactor.tcpServers
    assert (port, interface) == (0, "127.0.0.1")
    code, body, _ = get(site, b"/healthz")
    assert code == 503
    assert json.loads(body)["components"] == {"a.example.org": {"linked": False, "started": True}}
    top.stopService()


def started_process(tmp_path: Path) -> tuple[Config, MemoryReactorClock, IService, Site]:
    """The services of a config with a metrics listener, started on a
    memory reactor, and the listener's site."""
    config = load_config(
        write_config(tmp_path, "metrics:\n  listen: tcp:0:interface=127.0.0.1\n"), {}
    )
    reactor = MemoryReactorClock()
    top = _tap.build_services(config, reactor, {})
    top.startService()
    return config, reactor, top, reactor.tcpServers[0][1]


def connect(reactor: MemoryReactorClock, server_says: bytes) -> IProtocol:
    """Answer the last connection attempt with ``server_says``."""
    factory = reactor.tcpClients[-1][2]
    protocol = factory.buildProtocol(None)
    assert protocol is not None
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(server_says)
    if server_says.endswith(CLOSE):
        protocol.connectionLost(ConnectionDone())
    return protocol


def test_the_process_counts_refusals_and_links_of_its_components(tmp_path: Path) -> None:
    config, reactor, top, site = started_process(tmp_path)
    connect(reactor, SERVER_HEADER + stream_error("conflict") + CLOSE)
    reactor.advance(config.backoff.max_delay * 2)
    connect(reactor, SERVER_HEADER + HANDSHAKE_OK)
    text = get(site, b"/metrics")[1].decode()
    assert (
        'empc_handshake_failures_total{component="a.example.org",condition="conflict"} 1.0' in text
    )
    assert 'empc_component_linked{component="a.example.org"} 1.0' in text
    assert get(site, b"/readyz")[0] == 200
    top.stopService()


def iq_get(payload: str, id: str) -> bytes:
    return (
        f"<iq type='get' id='{id}' from='alice@example.org/r' to='a.example.org'>{payload}</iq>"
    ).encode()


def test_the_process_counts_the_traffic_of_its_components(tmp_path: Path) -> None:
    _, reactor, top, site = started_process(tmp_path)
    server = connect(reactor, SERVER_HEADER + HANDSHAKE_OK)
    server.dataReceived(
        iq_get("<ping xmlns='urn:xmpp:ping'/>", "p1")
        + iq_get("<ping xmlns='urn:xmpp:ping'/>", "p2")
        + iq_get("<query xmlns='urn:example:nothing'/>", "u1")
        + b"<message from='alice@example.org/r' to='a.example.org'><body>hi</body></message>"
    )
    text = get(site, b"/metrics")[1].decode()
    labels = 'component="a.example.org"'
    for line in (
        f'empc_stanzas_received_total{{{labels},kind="iq"}} 3.0',
        f'empc_stanzas_received_total{{{labels},kind="message"}} 1.0',
        f'empc_stanzas_sent_total{{{labels},kind="iq"}} 3.0',
        f'empc_iq_replies_total{{{labels},condition="",outcome="result"}} 2.0',
        f'empc_iq_replies_total{{{labels},condition="service-unavailable",outcome="error"}} 1.0',
        f'empc_action_seconds_bucket{{{labels},le="0.001",route="Ping.ping"}} 2.0',
        f'empc_action_seconds_bucket{{{labels},le="1.0",route="Ping.ping"}} 2.0',
        f'empc_action_seconds_bucket{{{labels},le="+Inf",route="Ping.ping"}} 2.0',
        f'empc_action_seconds_count{{{labels},route="Ping.ping"}} 2.0',
        f"empc_actions_in_flight{{{labels}}} 0.0",
        f"empc_send_queue_bytes{{{labels}}} 0.0",
    ):
        assert line in text, line
    top.stopService()


def test_a_handshake_without_answer_is_counted_as_a_timeout(tmp_path: Path) -> None:
    config, reactor, top, site = started_process(tmp_path)
    server = connect(reactor, SERVER_HEADER)
    reactor.advance(config.link.handshake_timeout)
    server.connectionLost(Failure(ConnectionAborted()))  # what the abort leads to
    text = get(site, b"/metrics")[1].decode()
    assert (
        'empc_handshake_failures_total{component="a.example.org",condition="timeout"} 1.0' in text
    )
    top.stopService()


def test_without_metrics_a_component_counts_nothing(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path), {})
    services = _tap.build_services(config, MemoryReactorClock(), {})
    assert [component.tally for component in _tap.components_of(services)] == [None]


class FixedEndpoint:
    """An endpoint whose listen has the outcome the test chose."""

    def __init__(self, outcome: Deferred[IListeningPort]) -> None:
        self.outcome = outcome

    def listen(self, factory: object) -> Deferred[IListeningPort]:
        return self.outcome


class Port:
    def __init__(self, host: str) -> None:
        self.host = host

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", self.host, 9180)


def test_a_port_that_cannot_be_taken_is_logged_and_stops_the_process() -> None:
    stops: list[None] = []
    refused = fail(CannotListenError("127.0.0.1", 9180, OSError("Address already in use")))
    endpoint = MetricsEndpoint(
        FixedEndpoint(refused), "tcp:9180:interface=127.0.0.1", lambda: stops.append(None)
    )
    with capturedLogs() as logs:
        listening = endpoint.listen(Factory())
    assert successResultOf(listening) is None
    assert stops == [None]
    [line] = [formatEvent(event) for event in logs]
    assert line.startswith("Cannot listen for metrics on tcp:9180:interface=127.0.0.1: ")
    assert "Address already in use" in line and line.endswith("; stopping")


@pytest.mark.parametrize(
    ("host", "warned"), [("0.0.0.0", True), ("::", True), ("127.0.0.1", False)]
)
def test_listening_on_every_interface_is_warned_about(host: str, warned: bool) -> None:
    endpoint = MetricsEndpoint(FixedEndpoint(succeed(Port(host))), "tcp:9180", lambda: None)
    with capturedLogs() as logs:
        endpoint.listen(Factory())
    warnings = [formatEvent(event) for event in logs if "every interface" in formatEvent(event)]
    assert len(warnings) == (1 if warned else 0)
