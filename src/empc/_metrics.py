"""The operators' HTTP listener: ``/healthz``, ``/readyz`` and ``/metrics``.

:class:`Health` hears what the component services already report (a link
going up or down, a refused handshake) and reads, when asked, whether each
component's handlers have started. :func:`metrics_site` serves it with
twisted.web in the process's own reactor: ``/healthz`` answers 200 when
every component is linked, ``/readyz`` when moreover every component's
handlers have started, 503 otherwise, both with a JSON body giving each
component's state; ``/metrics`` is the Prometheus text format from a
registry of the process's own. Nothing here runs per stanza: the link gauge
and the storage pool are read at scrape time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from empc.storage import Database


class Health(Collector):
    """The state of each component, for the health endpoints and metrics.

    ``add_component`` names a component and how to tell that its handlers
    have started; ``link_changed`` and ``handshake_failed`` are the
    component service's ``on_link`` and ``on_handshake_failure``. The
    metrics go to ``registry``: ``empc_component_linked`` (1 or 0),
    ``empc_component_reconnects_total`` (links made after the first),
    ``empc_handshake_failures_total`` (by stream error condition), and
    with a database ``empc_storage_connections_in_use`` and
    ``empc_storage_pool_size``.
    """

    def __init__(self, registry: CollectorRegistry, database: Database | None = None) -> None:
        self._linked: dict[str, bool] = {}
        self._ever_linked: set[str] = set()
        self._started: dict[str, Callable[[], bool]] = {}
        self._database = database
        self.registry = registry
        self._reconnects = Counter(
            "empc_component_reconnects",
            "Links made again after a component's first one.",
            ["component"],
            registry=registry,
        )
        self._handshake_failures = Counter(
            "empc_handshake_failures",
            "Handshakes the server refused, by stream error condition.",
            ["component", "condition"],
            registry=registry,
        )
        registry.register(self)

    def add_component(self, domain: str, started: Callable[[], bool]) -> None:
        """Watch ``domain``, not linked yet; ``started`` says whether its
        handlers have started."""
        self._linked[domain] = False
        self._started[domain] = started
        self._reconnects.labels(domain)  # shown as 0 before the first

    def link_changed(self, domain: str, linked: bool) -> None:
        """Record that ``domain``'s link went up (``linked``) or down."""
        self._linked[domain] = linked
        if linked:
            if domain in self._ever_linked:
                self._reconnects.labels(domain).inc()
            self._ever_linked.add(domain)

    def handshake_failed(self, domain: str, condition: str) -> None:
        """Count a handshake of ``domain`` refused with ``condition``."""
        self._handshake_failures.labels(domain, condition).inc()

    def states(self) -> dict[str, dict[str, bool]]:
        """Each component's link and whether its handlers have started."""
        return {
            domain: {"linked": linked, "started": self._started[domain]()}
            for domain, linked in self._linked.items()
        }

    def collect(self) -> Iterator[Metric]:
        linked = GaugeMetricFamily(
            "empc_component_linked",
            "Whether the component is linked (1) or not (0).",
            labels=["component"],
        )
        for domain, up in self._linked.items():
            linked.add_metric([domain], 1 if up else 0)
        yield linked
        if self._database is not None:
            yield GaugeMetricFamily(
                "empc_storage_connections_in_use",
                "Storage connections running a transaction.",
                value=self._database.in_use,
            )
            yield GaugeMetricFamily(
                "empc_storage_pool_size",
                "Storage connections at most.",
                value=self._database.pool_size,
            )


class HealthResource(Resource):
    """``/healthz`` (``require_started`` false) or ``/readyz`` (true):
    200 when every component is linked (and, for ``/readyz``, has started
    its handlers), 503 otherwise; either way a JSON body
    ``{"status": "ok"|"unavailable", "components": {domain: {"linked": ..,
    "started": ..}}}``."""

    isLeaf = True

    def __init__(self, health: Health, require_started: bool) -> None:
        super().__init__()
        self._health = health
        self._require_started = require_started

    def render_GET(self, request: Request) -> bytes:
        states = self._health.states()
        keys = ("linked", "started") if self._require_started else ("linked",)
        ok = all(state[key] for state in states.values() for key in keys)
        request.setResponseCode(200 if ok else 503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        body = {"status": "ok" if ok else "unavailable", "components": states}
        return json.dumps(body).encode()


class MetricsResource(Resource):
    """``/metrics``: ``registry`` in the Prometheus text format.

    Rendered in the reactor thread, which owns the state it reads: a scrape
    is a few dozen lines. (``prometheus_client.twisted.MetricsResource``
    would run it in the global reactor's thread pool, importing that
    reactor as soon as it is imported.)
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self._registry)


class _QuietSite(Site):
    """A site that writes no access log: a scrape every few seconds is no news."""

    def log(self, request: http.Request) -> None:
        pass


def metrics_site(health: Health) -> Site:
    """The site of the listener: ``/healthz``, ``/readyz`` and ``/metrics``
    (``health``'s registry; any other path is 404)."""
    root = Resource()
    root.putChild(b"healthz", HealthResource(health, require_started=False))
    root.putChild(b"readyz", HealthResource(health, require_started=True))
    root.putChild(b"metrics", MetricsResource(registry=health.registry))
    return _QuietSite(root)
