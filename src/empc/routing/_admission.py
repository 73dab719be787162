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
MAX_SENDERS = 10_000


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

    A bucket untouched for ``burst / rate`` seconds (the refill time) is
    full again and says nothing a new bucket would not, so buckets live in
    two generations: those touched since the last turn, and those touched
    in the turn before. A turn, at least a refill time after the previous
    one, forgets the older generation: every bucket in it has refilled.
    Each call costs a dict lookup or two, and a turn drops a dict whose
    entries were each added once by a call.

    Memory is bounded by ``max_senders``: when the newer generation holds
    half of them, the turn comes early. The buckets forgotten then may not
    have refilled; those senders get a fresh burst (a flood of that many
    senders costs a sender's limit some precision, never the memory).

    :raises ValueError: for a ``rate`` that is not positive, a ``burst``
        below 1 or ``max_senders`` below 2.
    """

    def __init__(
        self, clock: IReactorTime, rate: float, burst: int, max_senders: int = MAX_SENDERS
    ) -> None:
        if not rate > 0:
            raise ValueError(f"the rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"the burst must be at least 1, got {burst}")
        if max_senders < 2:
            raise ValueError(f"max_senders must be at least 2, got {max_senders}")
        self._clock = clock
        self._rate = rate
        self._burst = float(burst)
        self._refill_time = burst / rate
        self._generation_size = max_senders // 2
        self._current: dict[JID, tuple[float, float]] = {}
        self._previous: dict[JID, tuple[float, float]] = {}
        self._turn_at = clock.seconds() + self._refill_time

    def __len__(self) -> int:
        """How many buckets are kept (a sender may count twice, once per
        generation): at most ``max_senders``."""
        return len(self._current) + len(self._previous)

    def allow(self, sender: JID) -> bool:
        """Take a token for ``sender``; False when the bucket is empty."""
        now = self._clock.seconds()
        if now >= self._turn_at:
            self._turn(now)
        bucket = self._current.get(sender)
        if bucket is None:
            # A new sender, or one coming back from the older generation:
            # either way one more entry in the newer generation.
            bucket = self._previous.get(sender)
            if len(self._current) >= self._generation_size:
                self._turn(now)
        if bucket is None:
            tokens = self._burst
        else:
            tokens, then = bucket
            tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens < 1:
            self._current[sender] = (tokens, now)
            return False
        self._current[sender] = (tokens - 1, now)
        return True

    def _turn(self, now: float) -> None:
        self._previous = self._current
        self._current = {}
        self._turn_at = now + self._refill_time
