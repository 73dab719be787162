"""The PubSub service's state in SQL (SQLAlchemy Core, on empc.storage).

:class:`SqlStore` is the model's :class:`~empc.pubsub._model.Store` over
one connection, inside the transaction that
:meth:`empc.storage.Database.transaction` opened: the service builds one
per operation. Items are ordered by ``seq``, a counter per node that each
publication raises (on PostgreSQL the update of the node's row also
serializes the publications to one node).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from empc.pubsub._model import (
    MEMBER,
    NONE,
    OWNER,
    PUBLISHER,
    SUBSCRIBED,
    Item,
    Node,
    NodeConfig,
    Subscription,
)
from empc.storage import Schema

metadata = sa.MetaData()


def _node_id() -> sa.Column[int]:
    """The column that ties a row to its node (and is part of its key)."""
    return sa.Column(
        "node_id",
        sa.Integer,
        sa.ForeignKey("pubsub_nodes.id", ondelete="CASCADE"),
        primary_key=True,
    )


nodes = sa.Table(
    "pubsub_nodes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("creator", sa.Text),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("access_model", sa.String(16), nullable=False),
    sa.Column("publish_model", sa.String(16), nullable=False),
    sa.Column("max_items", sa.Integer, nullable=False),
    sa.Column("persist_items", sa.Boolean, nullable=False),
    sa.Column("deliver_payloads", sa.Boolean, nullable=False),
    sa.Column("notification_type", sa.String(16), nullable=False),
    sa.Column("send_last_published_item", sa.String(16), nullable=False),
    sa.Column("notify_config", sa.Boolean, nullable=False),
    sa.Column("notify_delete", sa.Boolean, nullable=False),
    sa.Column("notify_retract", sa.Boolean, nullable=False),
)

affiliations = sa.Table(
    "pubsub_affiliations",
    metadata,
    _node_id(),
    sa.Column("jid", sa.Text, primary_key=True),
    sa.Column("affiliation", sa.String(16), nullable=False),
    sa.Index("pubsub_affiliations_jid", "jid"),
)

subscriptions = sa.Table(
    "pubsub_subscriptions",
    metadata,
    _node_id(),
    sa.Column("jid", sa.Text, primary_key=True),
    sa.Column("bare", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("bounces", sa.Integer, nullable=False, server_default="0"),
    sa.Index("pubsub_subscriptions_bare", "bare"),
)

items = sa.Table(
    "pubsub_items",
    metadata,
    _node_id(),
    sa.Column("item_id", sa.Text, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.Text),
    sa.Column("publisher", sa.Text),
    sa.Column("published", sa.Float, nullable=False),
    sa.Index("pubsub_items_seq", "node_id", "seq", unique=True),
)

outbox = sa.Table(
    "pubsub_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False, unique=True),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("lease", sa.Float, nullable=False),
    sa.Index("pubsub_outbox_lease", "lease"),
)
"""Notifications not all sent yet (see :mod:`empc.pubsub._outbox`)."""

SCHEMA = Schema("pubsub", metadata, Path(__file__).with_name("migrations"))
"""The PubSub service's tables, for :attr:`PubSub.schemas`."""

_CONFIG = tuple(option.name for option in fields(NodeConfig))
_AFFILIATED = (OWNER, PUBLISHER, MEMBER)


class SqlStore:
    """The model's store over ``connection``, in its transaction.

    :ivar connection: the transaction's connection: an application's own
        tables may join the same transaction through it.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._ids: dict[str, int] = {}

    def _run(self, statement: Any) -> sa.CursorResult[Any]:
        return self.connection.execute(statement)

    def _id(self, name: str) -> int:
        """The row id of node ``name`` (which the model checked exists)."""
        if name not in self._ids:
            found = self._run(sa.select(nodes.c.id).where(nodes.c.name == name)).scalar()
            if found is None:
                raise LookupError(f"no node {name!r}")
            self._ids[name] = found
        return self._ids[name]

    # -- nodes --

    def node(self, name: str, *, lock: bool = False) -> Node | None:
        query = sa.select(nodes).where(nodes.c.name == name)
        if lock:
            query = query.with_for_update()  # PostgreSQL; SQLite has one writer at a time
        row = self._run(query).first()
        if row is None:
            return None
        self._ids[name] = row.id
        return _node(row)

    def add_node(self, node: Node) -> bool:
        config = {name: getattr(node.config, name) for name in _CONFIG}
        values = dict(name=node.name, creator=node.creator, created=node.created, **config)
        # One statement, not a look then an insert: of two transactions
        # adding one name, the second waits for the first, then adds nothing.
        dialect = postgresql if self.connection.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(nodes).values(**values)
        added = self._run(
            insert.on_conflict_do_nothing(index_elements=[nodes.c.name]).returning(nodes.c.id)
        ).scalar()
        if added is None:
            return False
        self._ids[node.name] = added
        return True

    def update_config(self, name: str, config: NodeConfig) -> None:
        values = {option: getattr(config, option) for option in _CONFIG}
        self._run(nodes.update().where(nodes.c.id == self._id(name)).values(**values))

    def remove_node(self, name: str) -> None:
        node_id = self._id(name)
        # Explicit, not left to ON DELETE CASCADE: SQLite enforces foreign
        # keys only when asked to.
        for table in (items, subscriptions, affiliations):
            self._run(table.delete().where(table.c.node_id == node_id))
        self._run(nodes.delete().where(nodes.c.id == node_id))
        del self._ids[name]

    def nodes(self, member: str | None, limit: int) -> list[Node]:
        query = sa.select(nodes).order_by(nodes.c.name).limit(limit)
        if member is not None:
            on_list = (
                sa.select(affiliations.c.node_id)
                .where(affiliations.c.jid == member)
                .where(affiliations.c.affiliation.in_(_AFFILIATED))
            )
            query = query.where(
                sa.or_(nodes.c.access_model != "whitelist", nodes.c.id.in_(on_list))
            )
        return [_node(row) for row in self._run(query)]

    # -- affiliations --

    def affiliation(self, name: str, jid: str) -> str:
        found = self._run(
            sa.select(affiliations.c.affiliation)
            .where(affiliations.c.node_id == self._id(name))
            .where(affiliations.c.jid == jid)
        ).scalar()
        return found or NONE

    def affiliations(self, name: str, limit: int) -> dict[str, str]:
        rows = self._run(
            sa.select(affiliations.c.jid, affiliations.c.affiliation)
            .where(affiliations.c.node_id == self._id(name))
            .order_by(affiliations.c.jid)
            .limit(limit)
        )
        return {row.jid: row.affiliation for row in rows}

    def affiliations_of(self, jid: str, name: str | None, limit: int) -> list[tuple[str, str]]:
        query = (
            sa.select(nodes.c.name, affiliations.c.affiliation)
            .join(nodes, nodes.c.id == affiliations.c.node_id)
            .where(affiliations.c.jid == jid)
            .order_by(nodes.c.name)
            .limit(limit)
        )
        if name is not None:
            query = query.where(nodes.c.name == name)
        return [(row.name, row.affiliation) for row in self._run(query)]

    def set_affiliation(self, name: str, jid: str, affiliation: str) -> None:
        node_id = self._id(name)
        self._run(
            affiliations.delete()
            .where(affiliations.c.node_id == node_id)
            .where(affiliations.c.jid == jid)
        )
        if affiliation != NONE:
            self._run(
                affiliations.insert().values(node_id=node_id, jid=jid, affiliation=affiliation)
            )

    # -- subscriptions --

    def subscription(self, name: str, jid: str) -> Subscription | None:
        state = self._run(
            sa.select(subscriptions.c.state)
            .where(subscriptions.c.node_id == self._id(name))
            .where(subscriptions.c.jid == jid)
        ).scalar()
        return None if state is None else Subscription(name, jid, state)

    def subscriptions(self, name: str, limit: int | None) -> list[Subscription]:
        query = (
            sa.select(subscriptions.c.jid, subscriptions.c.state)
            .where(subscriptions.c.node_id == self._id(name))
            .order_by(subscriptions.c.jid)
            .limit(limit)
        )
        return [Subscription(name, row.jid, row.state) for row in self._run(query)]

    def subscriptions_of(self, bare: str, name: str | None, limit: int) -> list[Subscription]:
        query = (
            sa.select(nodes.c.name, subscriptions.c.jid, subscriptions.c.state)
            .join(nodes, nodes.c.id == subscriptions.c.node_id)
            .where(subscriptions.c.bare == bare)
            .order_by(nodes.c.name, subscriptions.c.jid)
            .limit(limit)
        )
        if name is not None:
            query = query.where(nodes.c.name == name)
        return [Subscription(row.name, row.jid, row.state) for row in self._run(query)]

    def set_subscription(self, name: str, jid: str, state: str | None) -> None:
        node_id = self._id(name)
        known = self.subscription(name, jid)
        if state is None:
            self._run(
                subscriptions.delete()
                .where(subscriptions.c.node_id == node_id)
                .where(subscriptions.c.jid == jid)
            )
        elif known is None:
            self._run(
                subscriptions.insert().values(
                    node_id=node_id, jid=jid, bare=jid.partition("/")[0], state=state, bounces=0
                )
            )
        else:
            self._run(
                subscriptions.update()
                .where(subscriptions.c.node_id == node_id)
                .where(subscriptions.c.jid == jid)
                .values(state=state)
            )

    def count_subscribers(self, name: str) -> int:
        return int(
            self._run(
                sa.select(sa.func.count())
                .select_from(subscriptions)
                .where(subscriptions.c.node_id == self._id(name))
                .where(subscriptions.c.state == SUBSCRIBED)
            ).scalar_one()
        )

    def add_bounce(self, jid: str, name: str | None) -> list[tuple[str, int]]:
        condition = subscriptions.c.jid == jid
        if name is not None:
            node = self.node(name)
            if node is None:
                return []
            condition = sa.and_(condition, subscriptions.c.node_id == self._id(name))
        self._run(
            subscriptions.update().where(condition).values(bounces=subscriptions.c.bounces + 1)
        )
        rows = self._run(
            sa.select(nodes.c.name, subscriptions.c.bounces)
            .join(nodes, nodes.c.id == subscriptions.c.node_id)
            .where(condition)
            .order_by(nodes.c.name)
        )
        return [(row.name, row.bounces) for row in rows]

    # -- items --

    def items(self, name: str, ids: Sequence[str]) -> list[Item]:
        if not ids:
            return []
        rows = self._run(
            sa.select(items)
            .where(items.c.node_id == self._id(name))
            .where(items.c.item_id.in_(list(ids)))
            .order_by(items.c.seq.desc())
        )
        return [_item(row) for row in rows]

    def page(
        self,
        name: str,
        limit: int,
        *,
        after: str | None = None,
        before: str | None = None,
        offset: int = 0,
    ) -> list[Item] | None:
        node_id = self._id(name)
        query = sa.select(items).where(items.c.node_id == node_id)
        seq: int | None = None
        if after is not None or before:
            seq = self._seq(node_id, after if after is not None else before or "")
            if seq is None:
                return None
        if after is not None:
            query = query.where(items.c.seq < seq).order_by(items.c.seq.desc())
        elif before is not None:
            # The items just newer than the anchor (or the oldest), nearest first.
            if before:
                query = query.where(items.c.seq > seq)
            rows = self._run(query.order_by(items.c.seq).limit(limit)).all()
            return [_item(row) for row in reversed(rows)]
        else:
            query = query.order_by(items.c.seq.desc()).offset(offset)
        return [_item(row) for row in self._run(query.limit(limit))]

    def _seq(self, node_id: int, item_id: str) -> int | None:
        found: int | None = self._run(
            sa.select(items.c.seq)
            .where(items.c.node_id == node_id)
            .where(items.c.item_id == item_id)
        ).scalar()
        return found

    def position(self, name: str, item_id: str) -> int:
        node_id = self._id(name)
        seq = self._seq(node_id, item_id)
        return int(
            self._run(
                sa.select(sa.func.count())
                .select_from(items)
                .where(items.c.node_id == node_id)
                .where(items.c.seq > (seq or 0))
            ).scalar_one()
        )

    def count_items(self, name: str) -> int:
        return int(
            self._run(
                sa.select(sa.func.count())
                .select_from(items)
                .where(items.c.node_id == self._id(name))
            ).scalar_one()
        )

    def put_item(self, name: str, item: Item) -> None:
        node_id = self._id(name)
        self._run(nodes.update().where(nodes.c.id == node_id).values(last_seq=nodes.c.last_seq + 1))
        seq = self._run(sa.select(nodes.c.last_seq).where(nodes.c.id == node_id)).scalar_one()
        self.remove_items(name, [item.id])
        self._run(
            items.insert().values(
                node_id=node_id,
                item_id=item.id,
                seq=seq,
                payload=item.payload,
                publisher=item.publisher,
                published=item.published,
            )
        )

    def remove_items(self, name: str, ids: Sequence[str]) -> list[str]:
        found = [item.id for item in self.items(name, ids)]
        if found:
            self._run(
                items.delete()
                .where(items.c.node_id == self._id(name))
                .where(items.c.item_id.in_(found))
            )
        return found

    def trim(self, name: str, keep: int) -> None:
        node_id = self._id(name)
        newest_dropped = self._run(
            sa.select(items.c.seq)
            .where(items.c.node_id == node_id)
            .order_by(items.c.seq.desc())
            .offset(keep)
            .limit(1)
        ).scalar()
        if newest_dropped is not None:
            self._run(
                items.delete()
                .where(items.c.node_id == node_id)
                .where(items.c.seq <= newest_dropped)
            )


def _node(row: sa.Row[Any]) -> Node:
    config = NodeConfig(**{option: getattr(row, option) for option in _CONFIG})
    return Node(row.name, config, row.creator, row.created)


def _item(row: sa.Row[Any]) -> Item:
    return Item(row.item_id, row.payload, row.publisher, row.published)
