"""Stream management (XEP-0198) for a client stream, as a sans-IO state machine.

Theory of operation
-------------------

One :class:`StreamManagement` holds the stream management session of an
account: the count of stanzas handled from the server, the last count the
server acknowledged, and the queue of outgoing stanzas it has not
acknowledged yet, *as the bytes that were written*. It outlives a
connection, so that the next connection can resume the session and write
again exactly what the server never handled.

It knows no sockets and never writes: the client stream sends what its
methods return, tells it of each stanza written (:meth:`sent`) and handled
(:meth:`received`), and hands it the server's elements in the
``urn:xmpp:sm:3`` namespace. All state transitions live in this module::

    DISABLED  --enable()--> ENABLING
    ENABLING  --enabled()--> ENABLED
    ENABLING  --enable_failed()--> DISABLED
    ENABLED   --stream_ended(), resumable--> SUSPENDED
    SUSPENDED --resume()--> RESUMING
    RESUMING  --resumed()--> ENABLED      (returns the stanzas to write again)
    RESUMING  --resume_failed()--> DISABLED  (returns the stanzas that may be lost)
    RESUMING  --stream_ended(), resumable--> SUSPENDED
    ENABLING, ENABLED, RESUMING --stream_ended(), not resumable--> DISABLED
                                             (returns the stanzas that may be lost)
    any       --reset()--> DISABLED

Counting follows XEP-0198: the outgoing count starts at zero when
``<enable/>`` is sent (a stanza written before ``<enabled/>`` arrives is
counted and queued), the incoming count when ``<enabled/>`` arrives; both
carry over a resumption, and both wrap from 2**32 - 1 to 0. The queue holds
at most ``max_unacked`` stanzas: :meth:`sent` refuses one more, so that a
server that stops acknowledging cannot make it grow without bound.

A server that breaks the protocol (a malformed element, an element no one
asked for, an ``h`` acknowledging more than was sent) gets a typed
:class:`~empc.protocol._errors.StreamError`, for the client stream to send
before closing; the session is then no longer resumable, since its
counters cannot be trusted, and :meth:`stream_ended` hands back what may
have been lost. A cleanly closed stream (``</stream:stream>``) ends the
session too (XEP-0198 "Stream Closure").
"""

from __future__ import annotations

import enum
import re
from collections import deque
from typing import NoReturn

from lxml import etree

from ._errors import (
    BadFormat,
    LocalProtocolError,
    StreamError,
    UndefinedCondition,
    UnsupportedStanzaType,
)
from ._xml import new_element

NS_SM = "urn:xmpp:sm:3"

# h is an xs:unsignedInt that wraps from 2**32 - 1 to 0.
_MODULUS = 2**32
# An h behind the last one by up to half the counter's range is a stale
# ack; one ahead by more than was sent acknowledges too much (serial number
# arithmetic, RFC 1982: the queue's bound keeps "ahead" far below half).
_HALF = 2**31
# Ten digits hold every unsigned 32-bit value; leading zeros are allowed.
_UNSIGNED = re.compile(r"0*([0-9]{1,10})")
_XML_SPACE = " \t\r\n"
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


class SmState(enum.Enum):
    DISABLED = "disabled"
    ENABLING = "enabling"
    ENABLED = "enabled"
    SUSPENDED = "suspended"
    RESUMING = "resuming"


class UnackedQueueFull(LocalProtocolError):
    """The server has not acknowledged ``max_unacked`` stanzas yet: one more
    would grow the queue past its bound. Nothing was queued; ask for an ack
    (:meth:`StreamManagement.request`) and send once it arrives."""


class HandledCountTooHigh(UndefinedCondition):
    """The server acknowledged more stanzas than were sent: an
    ``undefined-condition`` stream error with XEP-0198's
    ``<handled-count-too-high/>`` as its application condition.

    :ivar h: the count the server acknowledged.
    :ivar send_count: the count of stanzas sent, modulo 2**32.
    """

    def __init__(self, h: int, send_count: int) -> None:
        super().__init__(f"the server acknowledged {h} stanzas, but {send_count} were sent")
        self.h = h
        self.send_count = send_count

    def application_condition(self) -> etree._Element:
        """The ``<handled-count-too-high/>`` element to put in the
        ``<stream:error/>`` beside ``<undefined-condition/>``."""
        return new_element(
            NS_SM,
            "handled-count-too-high",
            {"h": str(self.h), "send-count": str(self.send_count)},
        )


class StreamManagement:
    """The XEP-0198 state of one session, kept across connections.

    :param max_unacked: how many sent stanzas may wait for the server's
        acknowledgement; :meth:`sent` refuses one more.
    :raises ValueError: if ``max_unacked`` is not between 1 and 2**31 - 1.
    """

    def __init__(self, max_unacked: int = 1000) -> None:
        if not 0 < max_unacked < _HALF:
            raise ValueError(f"max_unacked must be between 1 and {_HALF - 1}, not {max_unacked}")
        self.max_unacked = max_unacked
        self.state = SmState.DISABLED
        self._queue: deque[bytes] = deque()
        self._acked = 0  # the last h the server sent; the send count is this + len(queue)
        self._inbound = 0
        self._resumable = False
        self._session_id: str | None = None
        self._max_resume: int | None = None
        self._location: str | None = None

    def __repr__(self) -> str:
        return f"<StreamManagement {self.state.value} unacked={self.unacked}>"

    @property
    def active(self) -> bool:
        """Whether stream management is enabled on the current stream
        (ENABLED): acks may be requested and answered."""
        return self.state is SmState.ENABLED

    @property
    def resumable(self) -> bool:
        """Whether the server offered to resume the session and nothing has
        ended it since: after the stream ends, :meth:`resume` may be sent."""
        return self._resumable

    @property
    def session_id(self) -> str | None:
        """The server's SM-ID for the session, when it offered resumption."""
        return self._session_id

    @property
    def max_resume(self) -> int | None:
        """How many seconds the server keeps the session for resumption, if
        it said."""
        return self._max_resume

    @property
    def location(self) -> str | None:
        """Where the server prefers to be reconnected to ("host:port", an
        IPv6 host in brackets), if it said."""
        return self._location

    @property
    def unacked(self) -> int:
        """How many sent stanzas wait for the server's acknowledgement."""
        return len(self._queue)

    @property
    def unacked_stanzas(self) -> tuple[bytes, ...]:
        """The stanzas that wait for the server's acknowledgement, oldest first."""
        return tuple(self._queue)

    def enable(self) -> etree._Element:
        """The ``<enable resume='true'/>`` to send once the resource is
        bound. The outgoing count starts at zero now.

        :raises LocalProtocolError: unless the state is DISABLED (a session
            that is enabled, or suspended waiting for :meth:`resume`).
        """
        self._expect(SmState.DISABLED, "enable")
        # DISABLED holds no counts and no queue: every way here resets them.
        self.state = SmState.ENABLING
        return new_element(NS_SM, "enable", {"resume": "true"})

    def enabled(self, element: etree._Element) -> None:
        """Consume the server's ``<enabled/>``: stream management is on, the
        incoming count starts at zero. The session is resumable if the
        element says ``resume='true'`` (or ``'1'``) and names an ``id``.

        :raises UnsupportedStanzaType: if no ``<enable/>`` is waiting for an
            answer.
        :raises BadFormat: if ``resume`` is not a boolean, ``max`` not a
            positive integer, or ``resume`` is true without an ``id``.
        """
        self._expect_answer(SmState.ENABLING, element)
        resume = self._boolean(element, "resume")
        session_id = element.get("id") or None
        if resume and session_id is None:
            self._breach(BadFormat("<enabled/> offers resumption without an id"))
        max_resume = self._positive(element, "max")
        self._resumable = resume
        self._session_id = session_id if resume else None
        self._max_resume = max_resume
        self._location = element.get("location") or None
        self.state = SmState.ENABLED

    def enable_failed(self, element: etree._Element) -> None:
        """Consume the ``<failed/>`` answering ``<enable/>``: no stream
        management on this stream. The stanzas queued since ``<enable/>``
        are forgotten: the stream that carries them goes on.

        :raises UnsupportedStanzaType: if no ``<enable/>`` is waiting for an
            answer.
        """
        self._expect_answer(SmState.ENABLING, element)
        self.reset()

    def sent(self, data: bytes) -> None:
        """Count one stanza written to the stream, and keep ``data`` until
        the server acknowledges it. Nothing happens when stream management
        is off (DISABLED).

        :raises UnackedQueueFull: if ``max_unacked`` stanzas already wait
            for an acknowledgement; nothing was queued.
        :raises LocalProtocolError: while the session waits to be resumed
            (SUSPENDED or RESUMING): no stanza may be written before
            ``<resumed/>``.
        """
        if self.state is SmState.DISABLED:
            return
        if self.state not in (SmState.ENABLING, SmState.ENABLED):
            raise LocalProtocolError(
                f"cannot send a stanza while the session is {self.state.value}"
            )
        if len(self._queue) >= self.max_unacked:
            raise UnackedQueueFull(
                f"{len(self._queue)} stanzas wait for the server's acknowledgement"
            )
        self._queue.append(data)

    def received(self) -> None:
        """Count one stanza (message, presence or IQ) received and handled.
        Nothing happens unless stream management is on (ENABLED)."""
        if self.state is SmState.ENABLED:
            self._inbound = (self._inbound + 1) % _MODULUS

    def request(self) -> etree._Element:
        """The ``<r/>`` asking the server to acknowledge what it handled.

        :raises LocalProtocolError: unless the state is ENABLED.
        """
        self._expect(SmState.ENABLED, "request an ack on")
        return new_element(NS_SM, "r")

    def answer(self) -> etree._Element:
        """The ``<a h='...'/>`` telling the server how many of its stanzas
        were handled: the answer to its ``<r/>``, or unasked.

        :raises LocalProtocolError: unless the state is ENABLED.
        """
        self._expect(SmState.ENABLED, "acknowledge stanzas on")
        return new_element(NS_SM, "a", {"h": str(self._inbound)})

    def acked(self, element: etree._Element) -> None:
        """Consume the server's ``<a h='...'/>``: the stanzas it acknowledges
        leave the queue. An ``h`` behind the last one (by up to 2**31,
        counting the wrap) is stale and changes nothing.

        :raises UnsupportedStanzaType: unless the state is ENABLED.
        :raises BadFormat: if ``h`` is missing or not an unsigned 32-bit
            integer.
        :raises HandledCountTooHigh: if ``h`` acknowledges more stanzas
            than were sent.
        """
        self._expect_answer(SmState.ENABLED, element)
        self._acknowledge(self._count(element))

    def resume(self) -> etree._Element:
        """The ``<resume h='...' previd='...'/>`` to send, once the new
        stream is authenticated, instead of binding a resource.

        :raises LocalProtocolError: unless the state is SUSPENDED (the
            session is resumable and its stream has ended), or if the server
            broke the protocol since.
        """
        self._expect(SmState.SUSPENDED, "resume")
        if not self._resumable or self._session_id is None:
            raise LocalProtocolError("cannot resume a session whose server broke the protocol")
        self.state = SmState.RESUMING
        return new_element(NS_SM, "resume", {"h": str(self._inbound), "previd": self._session_id})

    def resumed(self, element: etree._Element) -> list[bytes]:
        """Consume the server's ``<resumed/>``: the session goes on over the
        new stream, with its counts carried over.

        :returns: the stanzas the server did not handle, oldest first, to
            write again in that order. They stay queued until acknowledged:
            do not pass them to :meth:`sent` again.
        :raises UnsupportedStanzaType: if no ``<resume/>`` is waiting for an
            answer.
        :raises BadFormat: if ``h`` is missing or not an unsigned 32-bit
            integer, or ``previd`` does not name the session.
        :raises HandledCountTooHigh: if ``h`` acknowledges more stanzas
            than were sent.
        """
        self._expect_answer(SmState.RESUMING, element)
        h = self._count(element)
        previd = element.get("previd")
        if previd != self._session_id:
            self._breach(
                BadFormat(f"<resumed/> names the session {previd!r}, not {self._session_id!r}")
            )
        self._acknowledge(h)
        self.state = SmState.ENABLED
        return list(self._queue)

    def resume_failed(self, element: etree._Element) -> list[bytes]:
        """Consume the ``<failed/>`` answering ``<resume/>``: the session is
        gone (DISABLED); bind a resource and enable a new one.

        :returns: the stanzas that may be lost, oldest first: those the
            ``h`` of the failure does not acknowledge, or every one when it
            carries none.
        :raises UnsupportedStanzaType: if no ``<resume/>`` is waiting for an
            answer.
        :raises BadFormat: if ``h`` is present but not an unsigned 32-bit
            integer.
        :raises HandledCountTooHigh: if ``h`` acknowledges more stanzas
            than were sent.
        """
        self._expect_answer(SmState.RESUMING, element)
        if element.get("h") is not None:
            self._acknowledge(self._count(element))
        lost = list(self._queue)
        self.reset()
        return lost

    def stream_ended(self, *, cleanly: bool = False) -> list[bytes]:
        """The stream that carried the session has ended.

        A resumable session that was ENABLED or RESUMING is SUSPENDED, kept
        for :meth:`resume` on the next stream. Any other session ends
        (DISABLED), as does every session whose stream was closed
        ``cleanly`` (with ``</stream:stream>``, which ends it on the server
        too). Nothing happens when DISABLED or SUSPENDED.

        :returns: the stanzas that may be lost when the session ends, oldest
            first; none when it is kept.
        """
        if self._resumable and not cleanly:
            self.state = SmState.SUSPENDED
            return []
        lost = list(self._queue)
        self.reset()
        return lost

    def reset(self) -> None:
        """Forget the session (DISABLED): counts, queue and resumption."""
        self.state = SmState.DISABLED
        self._queue.clear()
        self._acked = 0
        self._inbound = 0
        self._resumable = False
        self._session_id = None
        self._max_resume = None
        self._location = None

    def _acknowledge(self, h: int) -> None:
        ahead = (h - self._acked) % _MODULUS
        if ahead >= _HALF:
            return  # behind the last h: a stale ack
        if ahead > len(self._queue):
            self._breach(HandledCountTooHigh(h, (self._acked + len(self._queue)) % _MODULUS))
        for _ in range(ahead):
            self._queue.popleft()
        self._acked = h

    def _count(self, element: etree._Element) -> int:
        """The element's ``h``, an unsigned 32-bit integer.

        :raises BadFormat: if it is missing or not one.
        """
        value = element.get("h")
        match = _UNSIGNED.fullmatch(value.strip(_XML_SPACE)) if value is not None else None
        if match is None or int(match.group(1)) >= _MODULUS:
            self._breach(BadFormat(f"{_name(element)} without an unsigned 32-bit h: {value!r}"))
        return int(match.group(1))

    def _positive(self, element: etree._Element, attribute: str) -> int | None:
        value = element.get(attribute)
        if value is None:
            return None
        match = _UNSIGNED.fullmatch(value.strip(_XML_SPACE))
        if match is None or int(match.group(1)) == 0:
            self._breach(BadFormat(f"{_name(element)} with a {attribute} of {value!r}"))
        return int(match.group(1))

    def _boolean(self, element: etree._Element, attribute: str) -> bool:
        value = element.get(attribute, "false")
        boolean = _BOOLEANS.get(value.strip(_XML_SPACE))
        if boolean is None:
            self._breach(BadFormat(f"{_name(element)} with a {attribute} of {value!r}"))
        return boolean

    def _breach(self, error: StreamError) -> NoReturn:
        # Counts a server got wrong cannot be trusted to resume with.
        self._resumable = False
        raise error

    def _expect(self, state: SmState, action: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"cannot {action} a session that is {self.state.value}")

    def _expect_answer(self, state: SmState, element: etree._Element) -> None:
        if self.state is not state:
            self._breach(
                UnsupportedStanzaType(f"{_name(element)} while the session is {self.state.value}")
            )


def _name(element: etree._Element) -> str:
    return f"<{etree.QName(element).localname}/>"
