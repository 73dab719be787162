"""The outbox: notifications written in the transaction that caused them.

A change and the notifications it causes commit together: each
notification is a row of ``pubsub_outbox``, as plain JSON (the work runs in
a storage thread, where no XML is built), under a stable ``key`` that its
messages carry as their id (and XEP-0359 origin-id), so that a recipient
can tell a repeat. The process that committed the change sends them at
once and deletes each row once its last message is written. A row has a
``lease``: until then it is the committing process's. A row whose lease
ran out belongs to a process that stopped before sending it all (killed,
say); every process claims such rows now and then (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so that two never claim the same row), and sends
them again, whole: delivery is at least once, and the repeats are bounded
by what the stopped process had sent of them.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from empc.pubsub._model import (
    ApprovalRequested,
    Configured,
    Deleted,
    Item,
    Message,
    NodeConfig,
    Notification,
    Published,
    Purged,
    Retracted,
    SubscriptionChanged,
)

_KINDS: dict[str, type[Notification]] = {
    kind.__name__: kind
    for kind in (
        Published,
        Retracted,
        Purged,
        Deleted,
        Configured,
        SubscriptionChanged,
        ApprovalRequested,
        Message,
    )
}


def new_key() -> str:
    """A fresh key for a notification: its messages' id."""
    return "n-" + secrets.token_hex(12)


def encode(notification: Notification) -> str:
    """``notification`` as JSON (its fields, and its kind)."""
    return json.dumps({"kind": type(notification).__name__, **dataclasses.asdict(notification)})


def decode(text: str) -> Notification:
    """The notification :func:`encode` gave ``text`` for.

    :raises ValueError: for text it did not give.
    """
    fields: dict[str, Any] = json.loads(text)
    kind = _KINDS.get(fields.pop("kind", None))
    if kind is None:
        raise ValueError(f"not an encoded notification: {text[:80]!r}")
    fields["recipients"] = tuple(fields["recipients"])
    if kind is Published:
        fields["items"] = tuple(Item(**item) for item in fields["items"])
    elif kind is Retracted:
        fields["ids"] = tuple(fields["ids"])
    elif kind is Configured and fields["config"] is not None:
        fields["config"] = NodeConfig(**fields["config"])
    return kind(**fields)


@dataclasses.dataclass(frozen=True)
class Pending:
    """A notification of the outbox, under its key."""

    key: str
    notification: Notification


def put(
    connection: Connection, table: sa.Table, notifications: Sequence[Notification], lease: float
) -> list[Pending]:
    """Write ``notifications``, leased until ``lease``, in the caller's
    transaction; return them under their keys. One for nobody (a node
    without subscribers) has nothing to send, and is not written."""
    pending = [Pending(new_key(), n) for n in notifications if n.recipients]
    if pending:
        connection.execute(
            table.insert(),
            [{"key": p.key, "record": encode(p.notification), "lease": lease} for p in pending],
        )
    return pending


def claim(
    connection: Connection, table: sa.Table, now: float, lease: float, limit: int
) -> list[Pending]:
    """Take, leased until ``lease``, up to ``limit`` rows whose lease ran
    out before ``now``, oldest first; rows another process is claiming are
    skipped, not waited for."""
    rows = connection.execute(
        sa.select(table.c.id, table.c.key, table.c.record)
        .where(table.c.lease < now)
        .order_by(table.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return []
    connection.execute(
        table.update().where(table.c.id.in_([row.id for row in rows])).values(lease=lease)
    )
    return [Pending(row.key, decode(row.record)) for row in rows]


def done(connection: Connection, table: sa.Table, keys: Sequence[str]) -> None:
    """Forget the notifications of ``keys``: all their messages are out."""
    connection.execute(table.delete().where(table.c.key.in_(list(keys))))
