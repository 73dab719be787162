"""The operators' HTTP listener: ``/healthz``, ``/readyz`` and ``/metrics``.

:class:`Health` hears what the component services already report (a link
going up or down, a refused handshake) and reads, when asked, whether each
component's handlers have started, and the component's
:class:`~empc.routing.Tally` of its traffic. :func:`metrics_site` serves it
with twisted.web in the process's own reactor: ``/healthz`` answers 200
when every component is linked, ``/readyz`` when moreover every
component's handlers have started, 503 otherwise, both with a JSON body
giving each component's state; ``/metrics`` is the Prometheus text format
from a registry of the process's own. Nothing here runs per stanza: the
tallies, gauges and the storage pool are read at scrape time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from empc._component import Component
from empc.routing import LATENCY_BUCKETS
from empc.storage import Database

# As prometheus_client writes its own bounds: le="1.0", le="+Inf".
_BUCKET_BOUNDS = [floatToGoString(bound) for bound in (*LATENCY_BUCKETS, float("inf"))]


class Watched(Protocol):
    """A component service, as the health endpoints and metrics see it."""

    @property
    def component(self) -> Component:
        """The component, with its domain, its router and its tally."""

    @property
    def running(self) -> int:
        """Whether (non-zero) its handlers have started and it connects."""

    @property
    def send_queue(self) -> int:
        """Bytes sent that the server has not read yet."""


class Health(Collector):
    """The state of each component, for the health endpoints and metrics.

    ``add_component`` adds a component service to watch; ``link_changed``
    and ``handshake_failed`` are the component service's ``on_link`` and
    ``on_handshake_failure``. The metrics go to ``registry``, labelled
    with the component's domain:

    - ``empc_component_linked`` (1 or 0),
      ``empc_component_reconnects_total`` (links made after the first),
      ``empc_handshake_failures_total`` (by stream error condition, or
      ``timeout``);
    - from the component's tally, when it has one:
      ``empc_stanzas_received_total`` and ``empc_stanzas_sent_total`` (by
      ``kind``), ``empc_iq_replies_total`` (by ``outcome``, ``result`` or
      ``error``, and ``condition``), ``empc_refusals_total`` (by
      ``reason``: ``access``, ``rate``, ``in_flight``, ``draining``) and
      ``empc_action_seconds`` (a histogram per ``route``);
    - ``empc_actions_in_flight`` and ``empc_send_queue_bytes``;
    - with a database, ``empc_storage_connections_in_use`` and
      ``empc_storage_pool_size``.
    """

    def __init__(self, registry: CollectorRegistry, database: Database | None = None) -> None:
        self._linked: dict[str, bool] = {}
        self._ever_linked: set[str] = set()
        self._watched: dict[str, Watched] = {}
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

    def add_component(self, service: Watched) -> None:
        """Watch ``service``'s component, not linked yet."""
        domain = service.component.domain
        self._linked[domain] = False
        self._watched[domain] = service
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
            domain: {"linked": linked, "started": bool(self._watched[domain].running)}
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
        yield from _traffic(self._watched)
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


def _traffic(watched: dict[str, Watched]) -> Iterator[Metric]:
    """The families of the components' tallies and load gauges."""
    received = CounterMetricFamily(
        "empc_stanzas_received", "Stanzas received, by kind.", labels=["component", "kind"]
    )
    sent = CounterMetricFamily(
        "empc_stanzas_sent", "Stanzas sent, by kind.", labels=["component", "kind"]
    )
    replies = CounterMetricFamily(
        "empc_iq_replies",
        "IQ answers sent, by outcome (result or error) and error condition.",
        labels=["component", "outcome", "condition"],
    )
    refusals = CounterMetricFamily(
        "empc_refusals",
        "Stanzas not served, by reason (access, rate, in_flight, draining).",
        labels=["component", "reason"],
    )
    latency = HistogramMetricFamily(
        "empc_action_seconds",
        "How long actions took, from admission to outcome, per route.",
        labels=["component", "route"],
    )
    in_flight = GaugeMetricFamily(
        "empc_actions_in_flight", "Actions started and not completed.", labels=["component"]
    )
    send_queue = GaugeMetricFamily(
        "empc_send_queue_bytes",
        "Bytes sent that the server has not read yet.",
        labels=["component"],
    )
    for domain, service in watched.items():
        component = service.component
        in_flight.add_metric([domain], component.router.unanswered)
        send_queue.add_metric([domain], service.send_queue)
        tally = component.tally
        if tally is None:
            continue
        for kind, count in tally.received.items():
            received.add_metric([domain, kind], count)
        for kind, count in tally.sent_by_kind().items():
            sent.add_metric([domain, kind], count)
        replies.add_metric([domain, "result", ""], tally.results)
        for condition, count in tally.errors.items():
            replies.add_metric([domain, "error", condition], count)
        for reason, count in tally.refused.items():
            refusals.add_metric([domain, reason], count)
        for route, observed in tally.latency.items():
            buckets = zip(_BUCKET_BOUNDS, accumulate(observed.counts), strict=True)
            latency.add_metric([domain, route], list(buckets), observed.total)
    yield from (received, sent, replies, refusals, latency, in_flight, send_queue)


@implementer(IStreamServerEndpoint)
class MetricsEndpoint:
    """The listener's endpoint, as the config names it (``where``).

    A port it cannot take (in use, say) is logged in one line and
    ``on_failure`` is called (``twistd empc`` stops, with status 1): a
    process running without the metrics its operators expect is worse
    than one that does not start. Listening on every interface is allowed,
    with a warning: the endpoints tell the process's state to anyone who
    can reach the port.
    """

    log = Logger()

    def __init__(
        self, endpoint: IStreamServerEndpoint, where: str, on_failure: Callable[[], object]
    ) -> None:
        self._endpoint = endpoint
        self._where = where
        self._on_failure = on_failure

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        listening = self._endpoint.listen(factory)
        listening.addCallbacks(self._listening, self._failed)
        return listening

    def _listening(self, port: IListeningPort) -> IListeningPort:
        host = getattr(port.getHost(), "host", None)
        if host in ("0.0.0.0", "::"):
            self.log.warn(
                "The metrics listener {where} is open on every interface: name one "
                "(interface=127.0.0.1) or protect the port",
                where=self._where,
            )
        return port

    def _failed(self, failure: Failure) -> Failure | None:
        if failure.check(CancelledError):  # the process stopped first
            return failure
        self.log.error(
            "Cannot listen for metrics on {where}: {why}; stopping",
            where=self._where,
            why=str(failure.value),
        )
        self._on_failure()
        return None
