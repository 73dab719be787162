"""Sending notifications in bounded batches.

A node with 100,000 subscribers makes 100,000 messages per publication:
sent in one go they would hold the reactor for seconds and fill the
outbound queue. :class:`Notifier` sends at most ``batch_size`` of them per
reactor turn, in the order the changes committed; when the server stops
reading (the component's send queue is full) it waits ``retry_delay``
seconds and goes on; when the stream is down, what is waiting is dropped
(with a log line), as notifications are not kept for later. At most
``max_queued`` messages wait; past that, a new notification is dropped
with a log line, so memory stays bounded.
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
from empc.protocol import LocalProtocolError
from empc.routing import make_stanza


@dataclass
class _Batch:
    """One notification's payload, its message type and who still gets it."""

    payload: etree._Element
    type: str
    recipients: Sequence[str]
    id: str
    next: int = 0


class Notifier:
    """Sends each payload, in a message, to each of its recipients.

    :param clock: schedules the next batch.
    :param send: sends a stanza (the component's ``send``).
    :param batch_size: messages sent per reactor turn.
    :param retry_delay: seconds to wait when the send queue is full.
    :param max_queued: messages that may wait to be sent.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        send: Callable[[etree._Element], None],
        batch_size: int = 100,
        retry_delay: float = 1.0,
        max_queued: int = 1_000_000,
    ) -> None:
        self.clock = clock
        self.send = send
        self.batch_size = batch_size
        self.retry_delay = retry_delay
        self.max_queued = max_queued
        self._batches: deque[_Batch] = deque()
        self._queued = 0
        self._call: IDelayedCall | None = None
        self._prefix = secrets.token_hex(4)
        self._count = 0

    @property
    def queued(self) -> int:
        """Messages waiting to be sent."""
        return self._queued

    def notify(self, payload: etree._Element, type: str | None, recipients: Sequence[str]) -> None:
        """Send ``payload`` (copied into each message) to ``recipients``,
        starting in the next reactor turn; dropped, with a log line, if
        ``max_queued`` messages would then be waiting."""
        if not recipients:
            return
        if self._queued + len(recipients) > self.max_queued:
            self.log.warn(
                "PubSub: dropped a notification to {count} subscribers: {queued} messages "
                "already wait to be sent",
                count=len(recipients),
                queued=self._queued,
            )
            return
        self._count += 1
        self._batches.append(
            _Batch(payload, type or "", recipients, f"{self._prefix}-{self._count}")
        )
        self._queued += len(recipients)
        self._schedule(0)

    def stop(self) -> None:
        """Drop what waits and send nothing more."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._batches.clear()
        self._queued = 0

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
                {"to": batch.recipients[batch.next], "type": batch.type or None, "id": batch.id},
            )
            message.append(copy.deepcopy(batch.payload))
            try:
                self.send(message)
            except SendQueueFull:
                self._schedule(self.retry_delay)
                return
            except NotConnected:
                self.log.warn(
                    "PubSub: not connected; dropped {count} notifications", count=self._queued
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
        if self._batches:
            self._schedule(0)
