"""IQs the component sends, and the Deferreds waiting for their answers."""

from __future__ import annotations

import secrets

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from empc.protocol import JID, InvalidJID

from ._stanzas import parse_stanza_error


class RequestTimeout(Exception):
    """No answer to an IQ arrived before its deadline."""


class PendingRequests:
    """Matches IQ answers to the requests they answer.

    An answer counts only if its id is one we sent and it comes from the
    JID the request was sent to (local parts compared case-folded, as the
    server normalizes them): a forged answer from anyone else is ignored.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._pending: dict[str, tuple[JID, Deferred[etree._Element], IDelayedCall]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def register(self, iq: etree._Element, timeout: float) -> Deferred[etree._Element]:
        """Give ``iq`` a fresh unpredictable id and wait for its answer.

        The Deferred fires with the ``result`` IQ, fails with the
        :class:`~empc.StanzaError` of an ``error`` answer, with
        :class:`RequestTimeout` after ``timeout`` seconds, or with the reason
        passed to :meth:`fail_all`.

        :raises InvalidJID: if the IQ has no valid ``to``; nothing is
            registered then.
        """
        peer = JID.parse(iq.get("to") or "").casefold()
        request_id = secrets.token_urlsafe(12)
        iq.set("id", request_id)

        def cancel(d: Deferred[etree._Element]) -> None:
            self._forget(request_id)

        answer: Deferred[etree._Element] = Deferred(cancel)
        deadline = self._clock.callLater(timeout, self._expire, request_id, timeout)
        self._pending[request_id] = (peer, answer, deadline)
        return answer

    def resolve(self, iq: etree._Element) -> bool:
        """Hand an incoming ``result`` or ``error`` IQ to its request.

        Returns whether it answered a pending request.
        """
        request_id = iq.get("id")
        entry = self._pending.get(request_id) if request_id else None
        if entry is None:
            return False
        peer, answer, _ = entry
        try:
            sender = JID.parse(iq.get("from") or "").casefold()
        except InvalidJID:
            return False
        if sender != peer:
            return False
        self._forget(request_id)
        if iq.get("type") == "error":
            answer.errback(parse_stanza_error(iq))
        else:
            answer.callback(iq)
        return True

    def fail_all(self, reason: Failure) -> None:
        """Fail every pending request, for instance when the link drops."""
        pending, self._pending = self._pending, {}
        for _, answer, deadline in pending.values():
            deadline.cancel()
            answer.errback(reason)

    def _expire(self, request_id: str, timeout: float) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is not None:
            entry[1].errback(RequestTimeout(f"no answer within {timeout} seconds"))

    def _forget(self, request_id: str | None) -> None:
        entry = self._pending.pop(request_id or "", None)
        if entry is not None and entry[2].active():
            entry[2].cancel()
