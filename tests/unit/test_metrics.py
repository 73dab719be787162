"""The HTTP listener: /healthz, /readyz and /metrics, its config and its wiring."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from test_service import CLOSE, HANDSHAKE_OK, SERVER_HEADER, stream_error
from test_systemd import write_config
from twisted.application.service import MultiService
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import getChildForRequest
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyRequest

from empc import _tap
from empc._config import ConfigError, load_config
from empc._metrics import Health, metrics_site
from empc.storage import Database


def get(site: Site, path: bytes) -> tuple[int, bytes, DummyRequest]:
    """Answer a GET of ``path`` by ``site``'s resources, in memory."""
    request = DummyRequest(path.strip(b"/").split(b"/"))
    body = getChildForRequest(site.resource, request).render(request)
    assert isinstance(body, bytes)
    return request.responseCode or 200, body, request


def health_of(started: dict[str, bool], database: Database | None = None) -> Health:
    health = Health(CollectorRegistry(), database)
    for domain in started:
        health.add_component(domain, functools.partial(started.__getitem__, domain))
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


def connect(reactor: MemoryReactorClock, server_says: bytes) -> None:
    """Answer the last connection attempt with ``server_says``."""
    factory = reactor.tcpClients[-1][2]
    protocol = factory.buildProtocol(None)
    assert protocol is not None
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(server_says)
    if server_says.endswith(CLOSE):
        protocol.connectionLost(ConnectionDone())


def test_the_process_counts_refusals_and_links_of_its_components(tmp_path: Path) -> None:
    extra = "metrics:\n  listen: tcp:0:interface=127.0.0.1\n"
    config = load_config(write_config(tmp_path, extra), {})
    reactor = MemoryReactorClock()
    top = _tap.build_services(config, reactor, {})
    top.startService()
    site = reactor.tcpServers[0][1]
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
