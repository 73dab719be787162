"""Whether a stanza may run its action: access rules and load limits.

Checked in this order, after the route is found and before the action
runs: access (``forbidden``), the sender's rate (``resource-constraint``),
then the actions in flight, per route and for the component
(``resource-constraint``, type ``wait``). A refused IQ is answered with the
error; a refused message or presence is dropped with a log line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from empc.protocol import JID

LIST_PREFIX = "list:"
_MAX_BUCKETS = 10_000


@dataclass(frozen=True)
class Limits:
    """Load limits of one component.

    :param max_in_flight: actions running at once, all routes together.
    :param rate: stanzas per second each sender (bare JID) may send; None
        switches the rate limit off.
    :param burst: how many stanzas a sender may send at once before the
        rate applies.
    :param threads: the size of the thread pool for blocking actions.
    :param blocking_queue: how many blocking actions may wait for a free
        thread; past ``threads + blocking_queue`` blocking actions in flight,
        blocking routes are refused while the others go on.
    """

    max_in_flight: int = 1000
    rate: float | None = None
    burst: int = 10
    threads: int = 10
    blocking_queue: int = 100


class AccessRule:
    """Allow and deny lists of bare JIDs, domains and named lists.

    An entry with an ``@`` is a bare JID, ``list:NAME`` names a list from the
    config, anything else is a domain. Deny wins; with an allow list, only
    the senders it names pass.

    :raises ValueError: for a list name that ``lists`` does not hold.
    """

    def __init__(
        self,
        allow: Iterable[str] | None,
        deny: Iterable[str] | None,
        lists: Mapping[str, Iterable[str]],
    ) -> None:
        self._allow = None if allow is None else _Entries(allow, lists)
        self._deny = _Entries(deny or (), lists)

    def permits(self, sender: JID) -> bool:
        if self._deny.contain(sender):
            return False
        return self._allow is None or self._allow.contain(sender)


class _Entries:
    def __init__(self, entries: Iterable[str], lists: Mapping[str, Iterable[str]]) -> None:
        self.jids: set[JID] = set()
        self.domains: set[str] = set()
        for entry in entries:
            if entry.startswith(LIST_PREFIX):
                name = entry[len(LIST_PREFIX) :]
                if name not in lists:
                    raise ValueError(f"no access list named {name!r}")
                for member in lists[name]:
                    self._add(member)
            else:
                self._add(entry)

    def _add(self, entry: str) -> None:
        jid = JID.parse(entry)
        if jid.local is None:
            self.domains.add(jid.domain)
        else:
            self.jids.add(jid.bare.casefold())

    def contain(self, sender: JID) -> bool:
        return sender.domain in self.domains or sender.bare.casefold() in self.jids


class RateLimiter:
    """A token bucket per sender (bare JID).

    Memory is bounded: at most 10,000 senders are tracked; past that the
    buckets that have refilled, which carry no information, are dropped.
    """

    def __init__(self, clock: IReactorTime, rate: float, burst: int) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = float(burst)
        self._buckets: dict[JID, tuple[float, float]] = {}

    def allow(self, sender: JID) -> bool:
        """Take a token for ``sender``; False when the bucket is empty."""
        now = self._clock.seconds()
        tokens, then = self._buckets.get(sender, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens < 1:
            self._buckets[sender] = (tokens, now)
            return False
        if len(self._buckets) >= _MAX_BUCKETS and sender not in self._buckets:
            self._forget_full(now)
        self._buckets[sender] = (tokens - 1, now)
        return True

    def _forget_full(self, now: float) -> None:
        for sender, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self._rate >= self._burst:
                del self._buckets[sender]
        if len(self._buckets) >= _MAX_BUCKETS:  # all busy: forget the oldest
            for sender in list(self._buckets)[: _MAX_BUCKETS // 10]:
                del self._buckets[sender]
