"""Sending notifications in bounded batches.

A node with 100,000 subscribers makes 100,000 messages per publication:
sent in one go they would hold the reactor for seconds and fill the
outbound queue. :class:`Notifier` sends at most ``batch_size`` of them per
reactor turn, in the order the changes committed; when the server stops
reading (the component's send queue is full) it waits ``retry_delay``
seconds and goes on; when the stream is down, what is waiting is dropped
from memory (with a log line): the outbox keeps it, for this process or
another to send once its lease runs out. At most
``max_queued_bytes`` wait, counting each notification's payload
(serialized) and its recipients' addresses, which is what the queue
holds: past that, a new notification is dropped with a log line, so
memory stays bounded whatever the payloads' size.
"""

from __future__ import annotations

import copy
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lxml import etree
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from empc._component import NotConnected
from empc._connection import SendQueueFull
from empc.protocol import LocalProtocolError, UnackedQueueFull, new_element
from empc.routing import make_stanza

NS_SID = "urn:xmpp:sid:0"


@dataclass
class _Batch:
    """One notification's payload, its message type and who still gets
    it; ``size``: the bytes it counts in the queue; ``done``: called with
    True once the last message is written, with False if it is dropped."""

    payload: etree._Element
    type: str
    recipients: Sequence[str]
    id: str
    size: int
    sender: str | None = None
    done: Callable[[bool], object] | None = None
    next: int = 0


class Notifier:
    """Sends each payload, in a message, to each of its recipients.

    :param clock: schedules the next batch.
    :param send: sends a stanza (the component's ``send``).
    :param batch_size: messages sent per reactor turn.
    :param retry_delay: seconds to wait when the send queue is full.
    :param max_queued_bytes: bytes of notifications that may wait to be
        sent (payloads serialized, and recipients' addresses).
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        send: Callable[[etree._Element], None],
        batch_size: int = 100,
        retry_delay: float = 1.0,
        max_queued_bytes: int = 32 * 2**20,
    ) -> None:
        self.clock = clock
        self.send = send
        self.batch_size = batch_size
        self.retry_delay = retry_delay
        self.max_queued_bytes = max_queued_bytes
        self._batches: deque[_Batch] = deque()
        self._queued = 0
        self._queued_bytes = 0
        self._call: IDelayedCall | None = None
        self._prefix = secrets.token_hex(4)
        self._count = 0

    @property
    def queued(self) -> int:
        """Messages waiting to be sent."""
        return self._queued

    @property
    def queued_bytes(self) -> int:
        """Bytes of the notifications waiting to be sent."""
        return self._queued_bytes

    def notify(
        self,
        payload: etree._Element,
        type: str | None,
        recipients: Sequence[str],
        *,
        id: str | None = None,
        sender: str | None = None,
        done: Callable[[bool], object] | None = None,
    ) -> None:
        """Send ``payload`` (copied into each message) to ``recipients``,
        starting in the next reactor turn; dropped, with a log line, if
        more than ``max_queued_bytes`` would then be waiting.

        :param id: the messages' id, and their XEP-0359 origin-id (a fresh
            one if None): the same for every recipient and every attempt,
            so that a repeat can be told.
        :param sender: their ``from`` (the component's domain if None).
        :param done: called with True once the last message is written,
            with False if the notification is dropped (too much waits, or
            the link is gone).
        """
        if not recipients:
            if done is not None:
                done(True)
            return
        size = len(etree.tostring(payload)) + sum(len(jid) for jid in recipients)
        if self._queued_bytes + size > self.max_queued_bytes:
            self.log.warn(
                "PubSub: dropped a notification of {size} bytes to {count} subscribers: "
                "{queued} bytes already wait to be sent",
                size=size,
                count=len(recipients),
                queued=self._queued_bytes,
            )
            if done is not None:
                done(False)
            return
        self._count += 1
        key = id or f"{self._prefix}-{self._count}"
        self._batches.append(_Batch(payload, type or "", recipients, key, size, sender, done))
        self._queued += len(recipients)
        self._queued_bytes += size
        self._schedule(0)

    def stop(self) -> None:
        """Drop what waits and send nothing more."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        dropped, self._batches = self._batches, deque()
        for batch in dropped:
            if batch.done is not None:
                batch.done(False)
        self._queued = 0
        self._queued_bytes = 0

    def _schedule(self, delay: float) -> None:
        if self._call is None or not self._call.active():
            self._call = self.clock.callLater(delay, self._pump)

    def _pump(self) -> None:
        """Send up to ``batch_size`` messages, then yield the reactor."""
        self._call = None
        for _ in range(self.batch_size):
            if not self._batches:
                return
            batch = self._batches[0]
            message = make_stanza(
                "message",
                {
                    "to": batch.recipients[batch.next],
                    "from": batch.sender,
                    "type": batch.type or None,
                    "id": batch.id,
                },
            )
            message.append(copy.deepcopy(batch.payload))
            new_element(NS_SID, "origin-id", {"id": batch.id}, message)
            try:
                self.send(message)
            except (SendQueueFull, UnackedQueueFull):  # the server is behind: later
                self._schedule(self.retry_delay)
                return
            except NotConnected:
                self.log.warn(
                    "PubSub: not connected; {count} messages wait in the outbox for a link",
                    count=self._queued,
                )
                self.stop()
                return
            except LocalProtocolError as error:  # one bad message: the others go on
                self.log.warn(
                    "PubSub: dropped a notification to {to}: {why}",
                    to=message.get("to"),
                    why=str(error),
                )
            batch.next += 1
            self._queued -= 1
            if batch.next == len(batch.recipients):
                self._batches.popleft()
                self._queued_bytes -= batch.size
                if batch.done is not None:
                    batch.done(True)
        if self._batches:
            self._schedule(0)
