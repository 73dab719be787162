"""What a component did, in plain counts, for the metrics.

The component and its router add to a :class:`Tally` as stanzas go by:
an increment of a dict entry or an attribute, a few tens of nanoseconds
(``defaultdict``, not ``Counter``, whose item update runs in Python and
costs twice as much). The metrics listener reads it when scraped, and only
then builds its families. A component without metrics has no tally and
counts nothing.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict

from lxml import etree

from ._stanzas import STANZA_KINDS, parse_stanza_error

# Upper bounds, in seconds, of the action latency buckets: from an action
# that answers at once to one that reaches the default 30-second deadline.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_FIRST_BOUND = LATENCY_BUCKETS[0]


class Latency:
    """A histogram of action latencies: how many fell at or under each
    bound of :data:`LATENCY_BUCKETS` (and above the last), and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0


class Tally:
    """Counts of one component's traffic.

    :ivar received: stanzas received, by kind (``iq``, ``message``,
        ``presence``).
    :ivar sent: stanzas sent, by kind, but IQ results: every IQ answered
        sends one, and counting it once saves an increment per request.
    :ivar results: IQ results sent.
    :ivar errors: IQ errors sent, by condition.
    :ivar refused: stanzas whose action did not run, by reason: ``access``
        (an access rule), ``rate`` (the sender's rate), ``in_flight`` (too
        many actions running) or ``draining`` (the stream was ending).
    :ivar latency: per route name, how long its actions took, from
        admission to outcome.
    """

    __slots__ = ("errors", "latency", "received", "refused", "results", "sent")

    def __init__(self) -> None:
        self.received: defaultdict[str, int] = defaultdict(int)
        self.sent: defaultdict[str, int] = defaultdict(int)
        self.results = 0
        self.errors: defaultdict[str, int] = defaultdict(int)
        self.refused: defaultdict[str, int] = defaultdict(int)
        self.latency: dict[str, Latency] = {}

    def sent_by_kind(self) -> dict[str, int]:
        """Stanzas sent, by kind, IQ results included."""
        return self.sent | {"iq": self.sent.get("iq", 0) + self.results}

    def count_sent(self, stanza: etree._Element) -> None:
        """Count a stanza sent, and the answer it is if it is an IQ's."""
        kind = STANZA_KINDS.get(stanza.tag, "other")
        if kind == "iq":
            iq_type = stanza.get("type")
            if iq_type == "result":
                self.results += 1
                return
            if iq_type == "error":
                self.errors[parse_stanza_error(stanza).condition] += 1
        self.sent[kind] += 1

    def observe(self, route: str, seconds: float) -> None:
        """Record that an action of ``route`` took ``seconds``."""
        latency = self.latency.get(route)
        if latency is None:
            latency = self.latency[route] = Latency()
        # Most actions answer within the first bound: no search for them.
        index = 0 if seconds <= _FIRST_BOUND else bisect_left(LATENCY_BUCKETS, seconds)
        latency.counts[index] += 1
        latency.total += seconds
