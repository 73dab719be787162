"""The rules of a PubSub service (XEP-0060), knowing no XML.

Theory of operation: every operation is a method of :class:`PubSubModel`
that takes a :class:`Store` (the service's state, read and written through
one database transaction) and the actor asking (a :class:`~empc.JID`, or
None for the application itself, which may do anything). It checks who
may do what, changes the state, and returns an :class:`Outcome`: its value
(an item id, a page of items...) and the :class:`Notification` objects the
change causes, each with its recipients. It raises :class:`PubSubError`
with XEP-0060's condition when the request is refused; the transaction is
then rolled back, so a refused request changes nothing. Notifications are
sent by the caller once the transaction has committed: nobody hears of a
change that did not happen.

A change reads its node first, locking it (``store.node(name,
lock=True)``): changes to one node then run one after another, each
seeing what the previous one committed, so that no check (an owner is
left, the subscription exists, the node exists) is made stale by another
change before it commits. On PostgreSQL (read committed) that is
``SELECT ... FOR UPDATE`` of the node's row; SQLite lets one transaction
write at a time anyway. A node is the unit of every rule here, and
changes to different nodes still run side by side. (Running every
transaction serializable would also close these gaps, but it turns a
short wait into a retry: publishers to one busy node would run out of
attempts, and the service would answer ``wait``.)

Payloads are opaque text here (the serialized XML of an item's payload);
the XML layer builds and reads them. JIDs are kept as text: affiliations
by bare JID, subscriptions by the JID subscribed (bare or full), both with
the local part case-folded as servers compare it.

Who may do what, by affiliation (XEP-0060 §4.1), refined by the node's
access and publish models:

============  =========  =========  =======  ==========  =============
affiliation   retrieve   subscribe  publish  retract     owner actions
============  =========  =========  =======  ==========  =============
owner         yes        yes        yes      any item    yes
publisher     yes        yes        yes      any item    no
member        yes        yes        model    own items   no
none          model      model      model    own items   no
outcast       no         no         no       no          no
============  =========  =========  =======  ==========  =============
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Generic, Protocol, TypeVar

from empc.protocol import JID
from empc.pubsub._errors import PubSubError, unsupported

T = TypeVar("T")

OWNER, PUBLISHER, MEMBER, NONE, OUTCAST = "owner", "publisher", "member", "none", "outcast"
AFFILIATIONS = (OWNER, PUBLISHER, MEMBER, NONE, OUTCAST)
SUBSCRIBED, PENDING = "subscribed", "pending"
ACCESS_MODELS = ("open", "authorize", "whitelist")
PUBLISH_MODELS = ("publishers", "subscribers", "open")
NOTIFICATION_TYPES = ("headline", "normal")
SEND_LAST_PUBLISHED_ITEM = ("never", "on_sub")
_MAX_TITLE = 1024
_MAX_JID_KEY = 2000


@dataclass(frozen=True)
class NodeConfig:
    """A node's configuration: the ``pubsub#...`` options of XEP-0060 §16.4.4
    this service supports, under their own names."""

    title: str = ""
    access_model: str = "open"
    publish_model: str = "publishers"
    max_items: int = 10
    persist_items: bool = True
    deliver_payloads: bool = True
    notification_type: str = "headline"
    send_last_published_item: str = "never"
    notify_config: bool = True
    notify_delete: bool = True
    notify_retract: bool = True


@dataclass(frozen=True)
class Limits:
    """Service-wide bounds.

    :param max_item_size: bytes of an item's payload, serialized.
    :param max_items: the most items a node may keep (``pubsub#max_items``
        at most this; ``max`` means this).
    :param max_page: the most items one answer carries (RSM pages beyond).
    :param max_node_length: bytes of a node name (UTF-8).
    :param max_item_id_length: bytes of an item id (UTF-8).
    :param max_list: the most entries a list of subscriptions, affiliations
        or nodes carries.
    :param bounce_limit: notifications a subscription's address may bounce
        before the subscription is dropped.
    """

    max_item_size: int = 65536
    max_items: int = 1000
    max_page: int = 100
    max_node_length: int = 1024
    max_item_id_length: int = 256
    max_list: int = 1000
    bounce_limit: int = 3


@dataclass(frozen=True)
class Node:
    name: str
    config: NodeConfig
    creator: str | None = None
    created: float = 0.0


@dataclass(frozen=True)
class Item:
    """A published item: ``payload`` is its serialized XML (None: none)."""

    id: str
    payload: str | None
    publisher: str | None = None
    published: float = 0.0


@dataclass(frozen=True)
class Subscription:
    node: str
    jid: str
    state: str


@dataclass(frozen=True)
class Page:
    """Items of a node, newest first: ``count`` in the node, the first one
    at position ``first_index`` (0: the newest) in that order."""

    items: list[Item]
    count: int
    first_index: int | None


@dataclass(frozen=True)
class NodeMetadata:
    """What XEP-0128's ``pubsub#meta-data`` form tells of a node."""

    node: Node
    owners: list[str]
    publishers: list[str]
    subscribers: int


# -- what a change causes ------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Notification:
    """A message to send to each of ``recipients``, of message ``type``."""

    node: str
    recipients: tuple[str, ...]
    type: str = "headline"


@dataclass(frozen=True, kw_only=True)
class Published(Notification):
    """New or replaced items (none for a notification-only transient node);
    ``payloads``: whether to include theirs."""

    items: tuple[Item, ...]
    payloads: bool


@dataclass(frozen=True, kw_only=True)
class Retracted(Notification):
    ids: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Purged(Notification):
    pass


@dataclass(frozen=True, kw_only=True)
class Deleted(Notification):
    redirect: str | None = None


@dataclass(frozen=True, kw_only=True)
class Configured(Notification):
    """The node's configuration changed; ``config`` is sent along when the
    node delivers payloads, else None."""

    config: NodeConfig | None


@dataclass(frozen=True, kw_only=True)
class SubscriptionChanged(Notification):
    """``jid``'s subscription is now ``state`` (``none``: gone)."""

    jid: str
    state: str


@dataclass(frozen=True, kw_only=True)
class ApprovalRequested(Notification):
    """``jid`` asks to subscribe to a node of access model ``authorize``;
    the recipients are its owners."""

    jid: str


@dataclass(frozen=True, kw_only=True)
class Message(Notification):
    """An application's own message about the node (not an XEP-0060
    event): ``body`` from ``sender``, with the id ``id`` (its outbox key if
    None). It is kept and sent as the service's notifications are."""

    sender: str | None = None
    body: str
    id: str | None = None


@dataclass(frozen=True)
class Outcome(Generic[T]):
    value: T
    notifications: list[Notification] = field(default_factory=list)


# -- the state ------------------------------------------------------------------


class Store(Protocol):
    """The service's state, read and written in one transaction.

    Items are ordered by publication, a republished item counting as new.
    """

    def node(self, name: str, *, lock: bool = False) -> Node | None:
        """The node ``name``, if any. ``lock``: keep every other change to
        it waiting until this transaction ends, and read it as the last
        change committed it."""
        ...

    def add_node(self, node: Node) -> bool:
        """Add it; False if a node of that name exists (or is being added
        by a transaction that then commits)."""
        ...

    def update_config(self, name: str, config: NodeConfig) -> None: ...
    def remove_node(self, name: str) -> None:
        """Remove the node with its items, affiliations and subscriptions."""
        ...

    def nodes(self, member: str | None, limit: int) -> list[Node]:
        """Nodes by name: those not of access model whitelist, and those
        where ``member`` (a bare JID; None: every node) is owner,
        publisher or member."""
        ...

    def affiliation(self, name: str, jid: str) -> str: ...
    def affiliations(self, name: str, limit: int) -> dict[str, str]: ...
    def affiliations_of(self, jid: str, name: str | None, limit: int) -> list[tuple[str, str]]: ...
    def set_affiliation(self, name: str, jid: str, affiliation: str) -> None:
        """Set it; ``none`` removes the entry."""
        ...

    def subscription(self, name: str, jid: str) -> Subscription | None: ...
    def subscriptions(self, name: str, limit: int | None) -> list[Subscription]: ...
    def subscriptions_of(self, bare: str, name: str | None, limit: int) -> list[Subscription]:
        """The subscriptions of ``bare`` and of its full JIDs."""
        ...

    def set_subscription(self, name: str, jid: str, state: str | None) -> None:
        """Set it (a new one starts with no bounces); None removes it."""
        ...

    def count_subscribers(self, name: str) -> int: ...
    def add_bounce(self, jid: str, name: str | None) -> list[tuple[str, int]]:
        """Count a bounce on the subscriptions of exactly ``jid`` (to node
        ``name``, or to any); returns (node, bounces) for each."""
        ...

    def items(self, name: str, ids: Sequence[str]) -> list[Item]:
        """Those of ``ids`` the node has, newest first."""
        ...

    def page(
        self,
        name: str,
        limit: int,
        *,
        after: str | None = None,
        before: str | None = None,
        offset: int = 0,
    ) -> list[Item] | None:
        """Up to ``limit`` items, newest first: after item ``after`` (older
        than it), or before item ``before`` (newer than it; ``""``: the
        oldest), else from position ``offset``. None if ``after`` or
        ``before`` is not an item of the node."""
        ...

    def position(self, name: str, item_id: str) -> int:
        """How many items of the node are newer than ``item_id``."""
        ...

    def count_items(self, name: str) -> int: ...
    def put_item(self, name: str, item: Item) -> None:
        """Store it as the newest item, replacing one with its id."""
        ...

    def remove_items(self, name: str, ids: Sequence[str]) -> list[str]:
        """Remove them; returns the ids removed."""
        ...

    def trim(self, name: str, keep: int) -> None:
        """Keep the ``keep`` newest items only."""
        ...


# -- the rules ---------------------------------------------------------------------


class PubSubModel:
    """Who may do what, and what each operation changes and causes.

    :param limits: the service-wide bounds.
    :param default_config: the configuration of a node created without one.
    :param may_create: whether an entity may create nodes.
    :param new_id: makes node names for instant nodes and ids for items
        published without one.
    :raises PubSubError: (``not-acceptable``) for a default configuration
        the limits refuse.
    """

    def __init__(
        self,
        limits: Limits = Limits(),
        default_config: NodeConfig = NodeConfig(),
        may_create: Callable[[JID], bool] = lambda jid: True,
        new_id: Callable[[], str] = lambda: secrets.token_hex(12),
    ) -> None:
        self.limits = limits
        self.may_create = may_create
        self.new_id = new_id
        self.default_config = self.check_config(default_config)

    # -- checks --

    def check_config(self, config: NodeConfig) -> NodeConfig:
        """``config``, if this service can apply it.

        :raises PubSubError: ``not-acceptable`` naming the option.
        """
        for name, allowed in (
            ("access_model", ACCESS_MODELS),
            ("publish_model", PUBLISH_MODELS),
            ("notification_type", NOTIFICATION_TYPES),
            ("send_last_published_item", SEND_LAST_PUBLISHED_ITEM),
        ):
            if getattr(config, name) not in allowed:
                raise PubSubError(
                    "not-acceptable",
                    text=f"pubsub#{name} is one of {', '.join(allowed)}",
                )
        if not 1 <= config.max_items <= self.limits.max_items:
            raise PubSubError(
                "not-acceptable",
                text=f"pubsub#max_items is between 1 and {self.limits.max_items}",
            )
        if len(config.title) > _MAX_TITLE or not _printable(config.title):
            raise PubSubError(
                "not-acceptable",
                text=f"pubsub#title is one line of at most {_MAX_TITLE} characters",
            )
        return config

    def check_node_name(self, name: str) -> str:
        """``name``, if it can name a node.

        :raises PubSubError: ``bad-request`` with ``nodeid-required`` if
            empty; ``not-acceptable`` if too long or holding a control
            character.
        """
        if not name:
            raise PubSubError("bad-request", "nodeid-required", "name the node")
        _check_name("node name", name, self.limits.max_node_length)
        return name

    def check_item_id(self, item_id: str) -> str:
        """``item_id``, if it can name an item.

        :raises PubSubError: as :meth:`check_node_name`, with
            ``item-required`` if empty.
        """
        if not item_id:
            raise PubSubError("bad-request", "item-required", "name the item")
        _check_name("item id", item_id, self.limits.max_item_id_length)
        return item_id

    def _node(self, store: Store, name: str, *, lock: bool = False) -> Node:
        """The node ``name``; ``item-not-found`` if there is none (or the
        name could name none). ``lock``: for a change, which must read it
        first (see the module's docstring)."""
        self.check_node_name(name)
        node = store.node(name, lock=lock)
        if node is None:
            raise PubSubError("item-not-found", text=f"no node {name!r}")
        return node

    def _affiliation(self, store: Store, node: Node, actor: JID | None) -> str:
        return OWNER if actor is None else store.affiliation(node.name, _bare_key(actor))

    def _owned(self, store: Store, name: str, actor: JID | None, *, lock: bool = False) -> Node:
        """The node ``name``, if ``actor`` owns it; else ``item-not-found``
        or ``forbidden``."""
        node = self._node(store, name, lock=lock)
        if self._affiliation(store, node, actor) != OWNER:
            raise PubSubError("forbidden", text="only an owner of the node may do that")
        return node

    def _may_read(self, store: Store, node: Node, actor: JID | None) -> None:
        """Whether ``actor`` may retrieve the node's items (§6.5.9)."""
        affiliation = self._affiliation(store, node, actor)
        if affiliation == OUTCAST:
            raise PubSubError("forbidden", text="you are banned from this node")
        if actor is None or affiliation in (OWNER, PUBLISHER, MEMBER):
            return
        model = node.config.access_model
        if model == "whitelist":
            raise PubSubError("not-allowed", "closed-node", "the node is on a whitelist")
        if model == "authorize":
            states = {s.state for s in store.subscriptions_of(_bare_key(actor), node.name, 100)}
            if SUBSCRIBED in states:
                return
            if PENDING in states:
                raise PubSubError("not-authorized", "pending-subscription", type="auth")
            raise PubSubError("not-authorized", "not-subscribed", "subscribe first", type="auth")

    def _may_publish(self, store: Store, node: Node, actor: JID | None) -> str:
        """The affiliation of ``actor``, if it may publish (§7.1.3.1)."""
        affiliation = self._affiliation(store, node, actor)
        if affiliation in (OWNER, PUBLISHER):
            return affiliation
        model = node.config.publish_model
        if affiliation != OUTCAST and actor is not None:
            if model == "open":
                return affiliation
            if model == "subscribers" and any(
                s.state == SUBSCRIBED
                for s in store.subscriptions_of(_bare_key(actor), node.name, 100)
            ):
                return affiliation
        raise PubSubError("forbidden", text="you may not publish to this node")

    def _subscribers(self, store: Store, node: Node) -> tuple[str, ...]:
        return tuple(s.jid for s in store.subscriptions(node.name, None) if s.state == SUBSCRIBED)

    # -- owner: nodes --

    def create(
        self,
        store: Store,
        name: str | None,
        actor: JID | None,
        config: NodeConfig | None = None,
        *,
        owner: JID | None = None,
        now: float = 0.0,
    ) -> Outcome[str]:
        """Create a node (an instant node, named by the service, if
        ``name`` is None) owned by ``actor``, or by ``owner`` when the
        application (``actor`` None) creates it for someone; its value is
        the name.

        :raises PubSubError: ``forbidden`` if ``actor`` may not create
            nodes; ``conflict`` if the node exists; ``not-acceptable`` for a
            configuration the service cannot apply; as
            :meth:`check_node_name` for a bad name.
        """
        if actor is not None and not self.may_create(actor):
            raise PubSubError("forbidden", text="you may not create nodes here")
        name = self.new_id() if name is None else self.check_node_name(name)
        config = self.check_config(config or self.default_config)
        owner = actor if actor is not None else owner
        creator = None if owner is None else _bare_key(owner)
        if not store.add_node(Node(name, config, creator, now)):
            raise PubSubError("conflict", text=f"node {name!r} exists")
        if creator is not None:
            store.set_affiliation(name, creator, OWNER)
        return Outcome(name)

    def config(self, store: Store, name: str, actor: JID | None) -> NodeConfig:
        """The node's configuration, for an owner.

        :raises PubSubError: ``item-not-found`` for no such node;
            ``forbidden`` unless ``actor`` owns it.
        """
        node = self._owned(store, name, actor)
        return node.config

    def configure(
        self, store: Store, name: str, actor: JID | None, config: NodeConfig
    ) -> Outcome[None]:
        """Apply ``config``: items beyond the new ``max_items`` (beyond the
        last one if items are no longer kept) are dropped; moving to the
        whitelist model ends the subscriptions of those not on it;
        subscribers hear of it if ``notify_config``.

        :raises PubSubError: as :meth:`config`, and ``not-acceptable`` for
            a configuration the service cannot apply.
        """
        node = self._owned(store, name, actor, lock=True)
        config = self.check_config(config)
        store.update_config(name, config)
        store.trim(name, config.max_items if config.persist_items else 1)
        notifications: list[Notification] = []
        if config.access_model == "whitelist" and node.config.access_model != "whitelist":
            allowed = {
                jid
                for jid, affiliation in store.affiliations(name, 2**31).items()
                if affiliation in (OWNER, PUBLISHER, MEMBER)
            }
            for subscription in store.subscriptions(name, None):
                if _bare_of(subscription.jid) not in allowed:
                    store.set_subscription(name, subscription.jid, None)
                    notifications.append(_state_change(node, subscription.jid, NONE))
        if config.notify_config:
            notifications.append(
                Configured(
                    node=name,
                    recipients=self._subscribers(store, node),
                    type=config.notification_type,
                    config=config if config.deliver_payloads else None,
                )
            )
        return Outcome(None, notifications)

    def delete(
        self, store: Store, name: str, actor: JID | None, redirect: str | None = None
    ) -> Outcome[None]:
        """Delete the node, its items, affiliations and subscriptions;
        subscribers hear of it if ``notify_delete``.

        :raises PubSubError: as :meth:`config`.
        """
        node = self._owned(store, name, actor, lock=True)
        recipients = self._subscribers(store, node)
        store.remove_node(name)
        if not node.config.notify_delete:
            return Outcome(None)
        deleted = Deleted(
            node=name, recipients=recipients, type=node.config.notification_type, redirect=redirect
        )
        return Outcome(None, [deleted])

    def purge(self, store: Store, name: str, actor: JID | None) -> Outcome[None]:
        """Remove every item; subscribers hear of it.

        :raises PubSubError: as :meth:`config`; ``feature-not-implemented``
            (``persistent-items``) if the node keeps no items.
        """
        node = self._owned(store, name, actor, lock=True)
        if not node.config.persist_items:
            raise unsupported("persistent-items", "the node keeps no items")
        store.trim(name, 0)
        purged = Purged(
            node=name, recipients=self._subscribers(store, node), type=node.config.notification_type
        )
        return Outcome(None, [purged])

    # -- publisher --

    def publish(
        self,
        store: Store,
        name: str,
        actor: JID | None,
        item: Item | None,
        *,
        preconditions: Mapping[str, object] | None = None,
        now: float = 0.0,
    ) -> Outcome[str | None]:
        """Publish ``item`` (its id empty: the service names it; None: no
        item, for a node that keeps no items and delivers no payloads);
        an item with a known id replaces that item and becomes the newest.
        Subscribers are notified. The value is the item's id.

        :param preconditions: publish-options (§7.1.5): option names of
            :class:`NodeConfig` with the value the node must have.
        :raises PubSubError: ``item-not-found`` for no such node;
            ``forbidden`` if ``actor`` may not publish; ``conflict`` with
            ``precondition-not-met`` if a precondition does not hold;
            ``bad-request`` with ``item-required``, ``payload-required`` or
            ``item-forbidden`` when the item does not fit the node's kind;
            ``not-acceptable`` with ``payload-too-big`` for a payload over
            the service's limit; as :meth:`check_item_id` for a bad id.
        """
        node = self._node(store, name, lock=True)
        affiliation = self._may_publish(store, node, actor)
        config = node.config
        for option, value in (preconditions or {}).items():
            if getattr(config, option, object()) != value:
                raise PubSubError(
                    "conflict", "precondition-not-met", f"pubsub#{option} is not {value!r}"
                )
        if item is None:
            if config.persist_items or config.deliver_payloads:
                raise PubSubError("bad-request", "item-required", "publish an item")
            published = Published(
                node=name,
                recipients=self._subscribers(store, node),
                type=config.notification_type,
                items=(),
                payloads=False,
            )
            return Outcome(None, [published])
        if not config.persist_items and not config.deliver_payloads:
            raise PubSubError("bad-request", "item-forbidden", "the node takes no items")
        if item.payload is None and config.deliver_payloads:
            raise PubSubError("bad-request", "payload-required", "the item needs a payload")
        if item.payload is not None and len(item.payload.encode()) > self.limits.max_item_size:
            raise PubSubError(
                "not-acceptable",
                "payload-too-big",
                f"an item is at most {self.limits.max_item_size} bytes",
            )
        item_id = self.check_item_id(item.id) if item.id else self.new_id()
        publisher = None if actor is None else _bare_key(actor)
        if item.id and affiliation not in (OWNER, PUBLISHER):
            # Another's item may not be overwritten by one who may not retract it.
            known = store.items(name, [item_id])
            if known and known[0].publisher != publisher:
                raise PubSubError("forbidden", text="the item is someone else's")
        stored = replace(item, id=item_id, publisher=publisher, published=now)
        store.put_item(name, stored)
        store.trim(name, config.max_items if config.persist_items else 1)
        published = Published(
            node=name,
            recipients=self._subscribers(store, node),
            type=config.notification_type,
            items=(stored,),
            payloads=config.deliver_payloads,
        )
        return Outcome(item_id, [published])

    def retract(
        self, store: Store, name: str, actor: JID | None, ids: Sequence[str], notify: bool = False
    ) -> Outcome[None]:
        """Remove the items ``ids``; subscribers hear of it if ``notify``
        or the node's ``notify_retract`` says so.

        :raises PubSubError: ``item-not-found`` for no such node or item;
            ``bad-request`` with ``item-required`` for no ids;
            ``forbidden`` if ``actor`` may neither publish nor remove
            these items (owners and publishers remove any item, others
            their own); ``feature-not-implemented`` (``persistent-items``)
            if the node keeps no items.
        """
        node = self._node(store, name, lock=True)
        if not ids:
            raise PubSubError("bad-request", "item-required", "name the items to retract")
        if len(ids) > self.limits.max_page:
            raise PubSubError(
                "not-acceptable", text=f"retract at most {self.limits.max_page} items at once"
            )
        affiliation = self._may_publish(store, node, actor)
        if not node.config.persist_items:
            raise unsupported("persistent-items", "the node keeps no items")
        wanted = list(dict.fromkeys(self.check_item_id(item_id) for item_id in ids))
        found = store.items(name, wanted)
        if len(found) < len(wanted):
            missing = sorted(set(wanted) - {item.id for item in found})
            raise PubSubError("item-not-found", text=f"no item {missing[0]!r}")
        if affiliation not in (OWNER, PUBLISHER) and any(
            actor is None or item.publisher != _bare_key(actor) for item in found
        ):
            raise PubSubError("forbidden", text="you may only retract your own items")
        store.remove_items(name, wanted)
        if not (notify or node.config.notify_retract):
            return Outcome(None)
        retracted = Retracted(
            node=name,
            recipients=self._subscribers(store, node),
            type=node.config.notification_type,
            ids=tuple(wanted),
        )
        return Outcome(None, [retracted])

    # -- subscriber --

    def items(
        self,
        store: Store,
        name: str,
        actor: JID | None,
        *,
        ids: Sequence[str] = (),
        max_items: int | None = None,
        after: str | None = None,
        before: str | None = None,
        index: int | None = None,
    ) -> Page:
        """Items of the node, newest first: those of ``ids`` it has (all
        of them), else a page of at most ``max_items`` (and of at most the
        service's ``max_page``), after or before an item (RSM, XEP-0059)
        or from a position.

        :raises PubSubError: ``item-not-found`` for no such node, or an
            ``after``/``before`` that is not one of its items; ``forbidden``
            for an outcast; ``not-allowed`` with ``closed-node`` for one not
            on a whitelist; ``not-authorized`` with ``not-subscribed`` or
            ``pending-subscription`` on a node of access model authorize;
            ``not-acceptable`` for more ids than a page holds.
        """
        node = self._node(store, name)
        self._may_read(store, node, actor)
        count = store.count_items(name)
        if ids:
            if len(ids) > self.limits.max_page:
                raise PubSubError(
                    "not-acceptable", text=f"ask for at most {self.limits.max_page} items"
                )
            wanted = [item_id for item_id in ids if _fits(item_id, self.limits.max_item_id_length)]
            found = store.items(name, list(dict.fromkeys(wanted)))
            return Page(found, count, store.position(name, found[0].id) if found else None)
        limit = min(self.limits.max_page, self.limits.max_page if max_items is None else max_items)
        for anchor in (after, before):
            if anchor and not _fits(anchor, self.limits.max_item_id_length):
                raise PubSubError("item-not-found", text="no such item")
        page = store.page(name, limit, after=after, before=before, offset=index or 0)
        if page is None:
            raise PubSubError("item-not-found", text="no such item")
        return Page(page, count, store.position(name, page[0].id) if page else None)

    def subscribe(
        self, store: Store, name: str, actor: JID | None, jid: JID, *, now: float = 0.0
    ) -> Outcome[Subscription]:
        """Subscribe ``jid`` (bare or full; only the actor's own address,
        unless the application asks). On a node of access model authorize,
        one who is not affiliated waits for an owner's approval
        (``pending``; the owners are asked). Subscribing again gives the
        subscription as it is. A new subscriber gets the last item if the
        node's ``send_last_published_item`` says ``on_sub``.

        :raises PubSubError: ``bad-request`` with ``invalid-jid`` for
            another's address; ``item-not-found`` for no such node;
            ``forbidden`` for an outcast; ``not-allowed`` with
            ``closed-node`` for one not on a whitelist; ``not-authorized``
            with ``pending-subscription`` if one already waits.
        """
        if actor is not None and jid.bare.casefold() != actor.bare.casefold():
            raise PubSubError("bad-request", "invalid-jid", "subscribe your own address only")
        node = self._node(store, name, lock=True)
        key = _jid_key(jid)
        known = store.subscription(name, key)
        affiliation = store.affiliation(name, _bare_key(jid))
        if affiliation == OUTCAST:
            raise PubSubError("forbidden", text="you are banned from this node", type="auth")
        if known is not None and known.state == PENDING and actor is not None:
            raise PubSubError("not-authorized", "pending-subscription", type="auth")
        if known is not None and known.state == SUBSCRIBED:
            return Outcome(known)
        privileged = actor is None or affiliation in (OWNER, PUBLISHER, MEMBER)
        model = node.config.access_model
        if model == "whitelist" and not privileged:
            raise PubSubError("not-allowed", "closed-node", "the node is on a whitelist")
        if model == "authorize" and not privileged:
            store.set_subscription(name, key, PENDING)
            owners = store.affiliations(name, self.limits.max_list)
            asked = ApprovalRequested(
                node=name,
                recipients=tuple(j for j, a in owners.items() if a == OWNER),
                type="normal",
                jid=key,
            )
            return Outcome(Subscription(name, key, PENDING), [asked])
        store.set_subscription(name, key, SUBSCRIBED)
        return Outcome(Subscription(name, key, SUBSCRIBED), self._last_item(store, node, key))

    def _last_item(self, store: Store, node: Node, jid: str) -> list[Notification]:
        """The last item for a new subscriber, if the node sends it."""
        if node.config.send_last_published_item != "on_sub":
            return []
        last = store.page(node.name, 1)
        if not last:
            return []
        return [
            Published(
                node=node.name,
                recipients=(jid,),
                type=node.config.notification_type,
                items=(last[0],),
                payloads=node.config.deliver_payloads,
            )
        ]

    def unsubscribe(self, store: Store, name: str, actor: JID | None, jid: JID) -> Outcome[None]:
        """End ``jid``'s subscription (or withdraw its pending request).

        :raises PubSubError: ``forbidden`` for another's address (an
            owner may unsubscribe anyone); ``item-not-found`` for no such
            node; ``unexpected-request``
            with ``not-subscribed`` if ``jid`` has no subscription.
        """
        node = self._node(store, name, lock=True)
        if (
            actor is not None
            and jid.bare.casefold() != actor.bare.casefold()
            and self._affiliation(store, node, actor) != OWNER
        ):
            raise PubSubError("forbidden", text="unsubscribe your own address only")
        key = _jid_key(jid)
        if store.subscription(name, key) is None:
            raise PubSubError(
                "unexpected-request", "not-subscribed", f"{key} is not subscribed", type="cancel"
            )
        store.set_subscription(name, key, None)
        return Outcome(None)

    def subscriptions_of(
        self, store: Store, actor: JID, name: str | None = None
    ) -> list[Subscription]:
        """``actor``'s own subscriptions (of its bare and full JIDs), to
        node ``name`` or to any.

        :raises PubSubError: ``item-not-found`` for no such node, or one
            ``actor`` may not know of and has no subscription to.
        """
        found = store.subscriptions_of(_bare_key(actor), name, self.limits.max_list)
        return self._own(store, name, actor, found)

    def affiliations_of(
        self, store: Store, actor: JID, name: str | None = None
    ) -> list[tuple[str, str]]:
        """``actor``'s own affiliations as (node, affiliation).

        :raises PubSubError: ``item-not-found`` for no such node, or one
            ``actor`` may not know of and has no affiliation with.
        """
        found = store.affiliations_of(_bare_key(actor), name, self.limits.max_list)
        return self._own(store, name, actor, found)

    # -- owner: subscriptions and affiliations --

    def subscriptions(self, store: Store, name: str, actor: JID | None) -> list[Subscription]:
        """Every subscription to the node (the first ``max_list``), for an owner.

        :raises PubSubError: as :meth:`config`.
        """
        self._owned(store, name, actor)
        return store.subscriptions(name, self.limits.max_list)

    def set_subscriptions(
        self, store: Store, name: str, actor: JID | None, changes: Iterable[tuple[JID, str]]
    ) -> Outcome[None]:
        """Set subscription states (``subscribed``, ``pending`` or ``none``
        to remove one), approving pending ones; each subscriber whose state
        changed is told.

        :raises PubSubError: as :meth:`config`; ``not-acceptable`` for an
            unknown state, or to subscribe an outcast.
        """
        node = self._owned(store, name, actor, lock=True)
        notifications: list[Notification] = []
        for jid, state in changes:
            if state not in (SUBSCRIBED, PENDING, NONE):
                raise PubSubError("not-acceptable", text=f"no subscription state {state!r}")
            key = _jid_key(jid)
            if state != NONE and store.affiliation(name, _bare_key(jid)) == OUTCAST:
                raise PubSubError("not-acceptable", text=f"{key} is an outcast")
            known = store.subscription(name, key)
            if (known.state if known else NONE) == state:
                continue
            store.set_subscription(name, key, None if state == NONE else state)
            notifications.append(_state_change(node, key, state))
            if state == SUBSCRIBED:
                notifications += self._last_item(store, node, key)
        return Outcome(None, notifications)

    def authorize(
        self, store: Store, name: str, actor: JID | None, jid: JID, allow: bool
    ) -> Outcome[None]:
        """An owner's answer to a pending subscription (§8.6): ``allow``
        makes it subscribed (the subscriber gets the last item if the node
        sends it), else it is removed; the subscriber is told either way.

        :raises PubSubError: as :meth:`config`; ``unexpected-request`` with
            ``not-subscribed`` if ``jid`` has no pending subscription.
        """
        self._owned(store, name, actor, lock=True)
        key = _jid_key(jid)
        known = store.subscription(name, key)
        if known is None or known.state != PENDING:
            raise PubSubError(
                "unexpected-request", "not-subscribed", f"{key} is not waiting", type="cancel"
            )
        return self.set_subscriptions(store, name, actor, [(jid, SUBSCRIBED if allow else NONE)])

    def affiliations(self, store: Store, name: str, actor: JID | None) -> dict[str, str]:
        """Every affiliation with the node (the first ``max_list``), for an owner.

        :raises PubSubError: as :meth:`config`.
        """
        self._owned(store, name, actor)
        return store.affiliations(name, self.limits.max_list)

    def set_affiliations(
        self, store: Store, name: str, actor: JID | None, changes: Iterable[tuple[JID, str]]
    ) -> Outcome[None]:
        """Set affiliations (of bare JIDs; ``none`` removes one). An outcast
        loses its subscriptions, and is told; so does one dropped from a
        whitelist node's list.

        :raises PubSubError: as :meth:`config`; ``not-acceptable`` for an
            unknown affiliation, or if the node would be left without an
            owner.
        """
        node = self._owned(store, name, actor, lock=True)
        had_owner = OWNER in store.affiliations(name, 2**31).values()
        notifications: list[Notification] = []
        for jid, affiliation in changes:
            if affiliation not in AFFILIATIONS:
                raise PubSubError("not-acceptable", text=f"no affiliation {affiliation!r}")
            key = _bare_key(jid)
            store.set_affiliation(name, key, affiliation)
            ends = affiliation == OUTCAST or (
                node.config.access_model == "whitelist" and affiliation == NONE
            )
            if ends:
                for subscription in store.subscriptions_of(key, name, 2**31):
                    store.set_subscription(name, subscription.jid, None)
                    notifications.append(_state_change(node, subscription.jid, NONE))
        if had_owner and OWNER not in store.affiliations(name, 2**31).values():
            raise PubSubError("not-acceptable", text="a node keeps at least one owner")
        return Outcome(None, notifications)

    # -- bounces --

    def bounce(self, store: Store, jid: JID, name: str | None = None) -> list[Subscription]:
        """A notification to ``jid`` bounced: count it on that address's
        subscriptions (to node ``name``, or to every node); those that
        reach the service's ``bounce_limit`` are removed and returned."""
        key = _jid_key(jid)
        dropped = []
        for node, bounces in store.add_bounce(key, name):
            if bounces >= self.limits.bounce_limit:
                store.set_subscription(node, key, None)
                dropped.append(Subscription(node, key, NONE))
        return dropped

    # -- discovery --

    def visible(self, store: Store, name: str, requester: JID | None) -> Node | None:
        """The node, if it exists and ``requester`` may know of it (a
        whitelist node is shown only to those on its list)."""
        try:
            node = self._node(store, name)
        except PubSubError:
            return None
        if node.config.access_model != "whitelist" or requester is None:
            return node
        affiliation = store.affiliation(name, _bare_key(requester))
        return node if affiliation in (OWNER, PUBLISHER, MEMBER) else None

    def _own(self, store: Store, name: str | None, actor: JID, found: list[T]) -> list[T]:
        """``found``, ``actor``'s own entries with node ``name`` (None: with
        any); if none, ``item-not-found`` unless ``actor`` may know of the
        node (as :meth:`visible`): the answer reveals no whitelist node."""
        if name is not None and not found and self.visible(store, name, actor) is None:
            raise PubSubError("item-not-found", text=f"no node {name!r}")
        return found

    def metadata(self, store: Store, name: str) -> NodeMetadata | None:
        """What the node's meta-data form tells, if the node exists."""
        node = store.node(name) if _fits(name, self.limits.max_node_length) else None
        if node is None:
            return None
        affiliations = store.affiliations(name, self.limits.max_list)
        return NodeMetadata(
            node,
            sorted(jid for jid, a in affiliations.items() if a == OWNER),
            sorted(jid for jid, a in affiliations.items() if a == PUBLISHER),
            store.count_subscribers(name),
        )

    def nodes(self, store: Store, requester: JID | None) -> list[Node]:
        """The nodes ``requester`` may know of, by name (the first ``max_list``)."""
        member = None if requester is None else _bare_key(requester)
        return store.nodes(member, self.limits.max_list)

    def item_ids(self, store: Store, name: str, requester: JID | None) -> list[str]:
        """The ids of the node's items, newest first (a page's worth), for
        one who may retrieve them; none for others."""
        try:
            node = self._node(store, name)
            self._may_read(store, node, requester)
        except PubSubError:
            return []
        return [item.id for item in store.page(name, self.limits.max_page) or []]


CONFIG_OPTIONS = tuple(option.name for option in fields(NodeConfig))
"""The names of the options of :class:`NodeConfig`."""


def _state_change(node: Node, jid: str, state: str) -> SubscriptionChanged:
    return SubscriptionChanged(
        node=node.name, recipients=(jid,), type=node.config.notification_type, jid=jid, state=state
    )


def _jid_key(jid: JID) -> str:
    return _bounded(str(jid.casefold()))


def _bare_key(jid: JID) -> str:
    return _bounded(str(jid.bare.casefold()))


def _bounded(key: str) -> str:
    """``key``, if it fits in the store's indexes (PostgreSQL's b-tree
    entries hold about 2,700 bytes; a JID may have 3,071).

    :raises PubSubError: ``not-acceptable``.
    """
    if not _fits(key, _MAX_JID_KEY):
        raise PubSubError("not-acceptable", text=f"a JID of at most {_MAX_JID_KEY} bytes only")
    return key


def _bare_of(key: str) -> str:
    return key.partition("/")[0]


def _printable(text: str) -> bool:
    """Whether ``text`` has no control character (C0, DEL, C1)."""
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


def _fits(name: str, limit: int) -> bool:
    return len(name) <= limit and len(name.encode("utf-8", "surrogatepass")) <= limit


def _check_name(what: str, name: str, limit: int) -> None:
    if not _fits(name, limit):
        raise PubSubError("not-acceptable", text=f"a {what} is at most {limit} bytes")
    if not _printable(name) or any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        raise PubSubError("not-acceptable", text=f"a {what} may hold no control character")
