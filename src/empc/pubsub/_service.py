"""The PubSub service handler: XEP-0060's XML mapped onto the model.

Each request is read into the model's terms, run as one database
transaction (:meth:`PubSub.transaction`), and its outcome written back as
XML; the notifications the change caused go out once it committed, in
bounded batches (:class:`~empc.pubsub._notifier.Notifier`). The Python API
(:meth:`PubSub.create_node`, :meth:`PubSub.publish`...) is the same path
without the XML: applications call it directly.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, TypeVar, overload

from lxml import etree
from sqlalchemy import Connection
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from empc.forms import NS_DATA
from empc.protocol import JID, NS_COMPONENT, InvalidJID, new_element
from empc.pubsub import _outbox as outbox
from empc.pubsub._errors import PubSubError, unsupported
from empc.pubsub._forms import (
    FORM_SUBSCRIBE_AUTHORIZATION,
    NS_PUBSUB,
    SubscribeAuthorization,
    config_form,
    metadata_form,
    parse_config,
    parse_preconditions,
)
from empc.pubsub._model import (
    CONFIG_OPTIONS,
    ApprovalRequested,
    Configured,
    Deleted,
    Item,
    Limits,
    Message,
    Node,
    NodeConfig,
    Notification,
    Outcome,
    Page,
    Published,
    PubSubModel,
    Purged,
    Retracted,
    Store,
    Subscription,
    SubscriptionChanged,
)
from empc.pubsub._notifier import Notifier
from empc.pubsub._outbox import Pending
from empc.pubsub._store import SCHEMA, SqlStore
from empc.pubsub._store import outbox as outbox_table
from empc.routing import (
    AccessRule,
    DiscoInfo,
    DiscoItem,
    Handler,
    StanzaError,
    iq,
    make_error_reply,
    message,
    parse_stanza_error,
    sender_of,
)
from empc.storage import Database, Schema

T = TypeVar("T")
U = TypeVar("U")

NS_PUBSUB_OWNER = f"{NS_PUBSUB}#owner"
NS_PUBSUB_EVENT = f"{NS_PUBSUB}#event"
NS_RSM = "http://jabber.org/protocol/rsm"
FEATURES = tuple(
    f"{NS_PUBSUB}#{feature}"
    for feature in (
        "access-authorize",
        "access-open",
        "access-whitelist",
        "config-node",
        "create-and-configure",
        "create-nodes",
        "delete-items",
        "delete-nodes",
        "instant-nodes",
        "item-ids",
        "last-published",
        "manage-subscriptions",
        "member-affiliation",
        "metadata",
        "modify-affiliations",
        "outcast-affiliation",
        "persistent-items",
        "publish",
        "publish-options",
        "publisher-affiliation",
        "purge-nodes",
        "retract-items",
        "retrieve-affiliations",
        "retrieve-default",
        "retrieve-items",
        "retrieve-subscriptions",
        "rsm",
        "subscribe",
        "subscription-notifications",
    )
)
"""The ``pubsub#...`` features this service has, as disco#info lists them."""

# Requests this service does not serve, by element, with XEP-0060's feature.
_UNSUPPORTED = {
    (NS_PUBSUB, "options"): "subscription-options",
    (NS_PUBSUB, "default"): "retrieve-default-sub",
    (NS_PUBSUB_OWNER, "collections"): "collections",
}
# The requests served, by namespace (with one IQ type or the other).
_SERVED = {
    NS_PUBSUB: frozenset(
        [
            *("items", "subscriptions", "affiliations", "create"),
            *("publish", "retract", "subscribe", "unsubscribe"),
        ]
    ),
    NS_PUBSUB_OWNER: frozenset(
        ("configure", "default", "subscriptions", "affiliations", "delete", "purge")
    ),
}
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)
_DIGITS = re.compile(r"[0-9]+")
_P = {"p": NS_PUBSUB}
_X = {"x": NS_DATA, "e": NS_PUBSUB_EVENT}


class PubSub(Handler):
    """A PubSub service (XEP-0060) at the component's domain.

    Mount it as a handler; its state lives in the component's database
    (``self.component.storage``, to which it adds its :data:`SCHEMA`).
    Config keys:

    - ``max_item_size`` (65536): bytes of an item's payload;
    - ``max_items`` (1000): the most items a node keeps;
    - ``max_page`` (100): items per answer (RSM pages beyond);
    - ``max_node_length`` (1024), ``max_item_id_length`` (256): bytes;
    - ``max_list`` (1000): entries per list of subscriptions, affiliations
      or nodes;
    - ``creators`` (None: anyone): who may create nodes, as a route's
      ``allow`` (bare JIDs, domains, ``list:NAME``); ``[]``: only the
      application, through :meth:`create_node`;
    - ``bounce_limit`` (3): notifications a subscriber's address may bounce
      (an error of type other than ``wait``) before its subscription is
      dropped;
    - ``batch_size`` (100): notifications sent per reactor turn;
    - ``send_retry`` (1.0): seconds to wait when the server stops reading;
    - ``max_queued_bytes`` (33554432, 32 MiB): bytes of notifications that
      may wait to be sent (each one's payload, serialized, and its
      recipients' addresses); a notification past it is dropped, with a
      log line;
    - ``outbox_lease`` (30.0): seconds a process has to send the
      notifications of a change it committed before any process may send
      them again (it stopped, say; see :mod:`empc.pubsub._outbox`);
    - ``outbox_interval`` (5.0): how often a process looks for such
      notifications;
    - ``outbox_settle`` (2.0): seconds the link must stay up after a
      notification's last message was written before it leaves the outbox
      (less than ``outbox_lease``);
    - ``node_defaults`` ({}): the default node configuration, by option
      name (``access_model``, ``max_items``...).

    :raises ValueError: for a config it cannot use.
    """

    defaults: ClassVar[Mapping[str, Any]] = {
        "max_item_size": 65536,
        "max_items": 1000,
        "max_page": 100,
        "max_node_length": 1024,
        "max_item_id_length": 256,
        "max_list": 1000,
        "creators": None,
        "bounce_limit": 3,
        "batch_size": 100,
        "send_retry": 1.0,
        "max_queued_bytes": 32 * 2**20,
        "outbox_lease": 30.0,
        "outbox_interval": 5.0,
        "outbox_settle": 2.0,
        "node_defaults": {},
    }
    schemas: ClassVar[Sequence[Schema]] = (SCHEMA,)
    features: ClassVar[Sequence[str]] = FEATURES
    log = Logger()

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        counts = [key for key, value in self.defaults.items() if isinstance(value, int)]
        for key in counts:
            if self.config[key] < 1:
                raise ValueError(f"{key} must be at least 1")
        creators = self.config["creators"]
        if creators is not None and not (
            isinstance(creators, list) and all(isinstance(entry, str) for entry in creators)
        ):
            raise ValueError("creators: a list of JIDs, domains and list:NAME entries")
        options = dict(self.config["node_defaults"])
        unknown = sorted(set(options) - set(CONFIG_OPTIONS))
        if unknown:
            raise ValueError(f"node_defaults: unknown option {unknown[0]!r}")
        # A service that keeps fewer items than a node does by default lowers the default.
        options.setdefault("max_items", min(NodeConfig.max_items, self.config["max_items"]))
        try:
            default_config = NodeConfig(**options)
            self.model = PubSubModel(self._limits(), default_config, self._may_create)
        except PubSubError as error:
            raise ValueError(f"node_defaults: {error.text}") from None
        for option, value in options.items():
            if type(value) is not type(getattr(NodeConfig(), option)):
                raise ValueError(f"node_defaults: {option} has the wrong type")
        self._database: Database | None = None
        self._creators: AccessRule | None = None
        self._notifier: Notifier | None = None
        self._drainer: LoopingCall | None = None
        self.resent = 0  # notifications sent again from the outbox: a repeat for some
        # Keys of the outbox this process sends; added in storage threads.
        self._unsent: set[str] = set()
        self._written: list[str] = []  # written, settling

    def _limits(self) -> Limits:
        names = (
            "max_item_size",
            "max_items",
            "max_page",
            "max_node_length",
            "max_item_id_length",
            "max_list",
            "bounce_limit",
        )
        return Limits(**{name: self.config[name] for name in names})

    def _may_create(self, actor: JID) -> bool:
        return self._creators is None or self._creators.permits(actor)

    # -- life cycle --

    def start(self) -> None:
        """Take the component's database and access lists.

        :raises RuntimeError: if there is no database.
        :raises ValueError: if ``creators`` names an unknown list.
        """
        self._database = self.component.storage
        if self._database is None:
            raise RuntimeError("PubSub needs storage: configure the component's database")
        creators = self.config["creators"]
        if creators is not None:
            self._creators = self.component.access_rule(creators, None)
        self._notifier = Notifier(
            self.component.clock,
            self.component.send,
            self.config["batch_size"],
            self.config["send_retry"],
            self.config["max_queued_bytes"],
        )
        self._drainer = LoopingCall(self._drain)
        self._drainer.clock = self.component.clock
        self._drainer.start(self.config["outbox_interval"], now=False)

    def stop(self) -> None:
        if self._drainer is not None and self._drainer.running:
            self._drainer.stop()
        if self._notifier is not None:
            self._notifier.stop()

    @property
    def notifier(self) -> Notifier:
        if self._notifier is None:
            raise RuntimeError("the PubSub handler has not started")
        return self._notifier

    # -- running the model --

    def transaction(self, name: str, work: Callable[[SqlStore], T]) -> Deferred[T]:
        """Run ``work`` on the service's state in one transaction; fires
        with its value once committed, or fails with its error (the
        transaction then rolled back). ``work`` gets the store, whose
        ``connection`` an application may use for its own tables in the
        same transaction (it runs in a storage thread)."""
        database = self._started_database()
        return database.transaction(lambda c: work(SqlStore(c)), name=f"pubsub.{name}")

    def _started_database(self) -> Database:
        if self._database is None:
            raise RuntimeError("the PubSub handler has not started")
        return self._database

    @overload
    def change(self, name: str, work: Callable[[SqlStore], Outcome[T]]) -> Deferred[T]: ...
    @overload
    def change(
        self, name: str, work: Callable[[SqlStore], Outcome[T]], *, committed: Callable[[T], U]
    ) -> Deferred[U]: ...
    def change(
        self,
        name: str,
        work: Callable[[SqlStore], Outcome[Any]],
        *,
        committed: Callable[[Any], Any] | None = None,
    ) -> Deferred[Any]:
        """Like :meth:`transaction`, then send the notifications the change
        caused, and fire with its value. A change that commits is notified
        even if the Deferred was canceled (a request past its deadline);
        one whose caller stopped waiting before it ran never runs.

        :param committed: the application's own part of what the commit
            causes (its messages...): called in the reactor thread with the
            value once the notifications are queued, even if the caller
            stopped waiting; the Deferred fires with what it returns.
        """

        def record(connection: Connection) -> tuple[Any, list[Pending]]:
            outcome = work(SqlStore(connection))
            # With the change, in its transaction: kept if the process stops.
            # Leased from now, when it runs, however long it waited.
            lease = self._now() + self.config["outbox_lease"]
            pending = outbox.put(connection, outbox_table, outcome.notifications, lease)
            # This process sends them: the outbox's look-out leaves them be,
            # even if their lease runs out before the commit is heard of.
            self._unsent.update(each.key for each in pending)
            return outcome.value, pending

        def notify(recorded: tuple[Any, list[Pending]]) -> Any:
            value, pending = recorded
            self._send_all(pending, name)
            return value if committed is None else committed(value)

        database = self._started_database()
        return database.transaction(record, name=f"pubsub.{name}", committed=notify)

    def _send_all(self, pending: Sequence[Pending], name: str) -> None:
        # The change is kept whatever happens here: a notification that
        # cannot be built or queued is logged, and the others still go.
        for each in pending:
            try:
                self._notify(each)
            except Exception:
                self.log.failure("PubSub: a notification of {name} failed", name=name)

    def _drain(self) -> None:
        """Send what a process committed but did not send in time (it
        stopped, say): claimed for a lease of this process's own."""
        if not self.component.connected:
            return
        now = self._now()
        lease = now + self.config["outbox_lease"]
        claimed = self._started_database().transaction(
            lambda c: outbox.claim(c, outbox_table, now, lease, self.config["batch_size"]),
            name="pubsub.outbox-claim",
        )
        claimed.addCallback(self._resend)
        claimed.addErrback(
            lambda failure: self.log.warn(
                "PubSub: could not look in the outbox: {why}", why=str(failure.value)
            )
        )

    def _resend(self, claimed: list[Pending]) -> None:
        pending = [each for each in claimed if each.key not in self._unsent]
        self._unsent.update(each.key for each in pending)
        if pending:
            recipients = sum(len(p.notification.recipients) for p in pending)
            self.log.info(
                "PubSub: sending again {count} notifications ({recipients} messages, some of "
                "them perhaps received already) that were not all sent in time",
                count=len(pending),
                recipients=recipients,
            )
            self.resent += len(pending)
            self._send_all(pending, "outbox")

    def _finished(self, key: str, sent: bool) -> None:
        """All the messages of ``key`` are written (``sent``): once they
        settled, it leaves the outbox; or they were dropped: it stays
        there, for this process or another to send again once its lease
        runs out."""
        if not sent:
            self._unsent.discard(key)
            return
        self._written.append(key)
        if len(self._written) == 1:  # one receipt for all written in this turn
            self.component.clock.callLater(0, self._confirm)

    def _confirm(self) -> None:
        """Let what was written settle (``outbox_settle`` seconds on the
        same link); a process killed before then leaves its notifications
        in the outbox (written, perhaps, but in buffers that died with
        it), to be sent again by another: a repeat at worst."""
        keys, self._written = self._written, []
        self.component.settled(self.config["outbox_settle"]).addBoth(self._confirmed, keys)

    def _confirmed(self, outcome: object, keys: list[str]) -> None:
        self._unsent.difference_update(keys)
        if isinstance(outcome, Failure):
            self.log.info(
                "PubSub: {count} notifications may not have reached the server ({why}); they "
                "will be sent again once their lease runs out",
                count=len(keys),
                why=str(outcome.value),
            )
            return
        forgotten = self._started_database().transaction(
            lambda c: outbox.done(c, outbox_table, keys), name="pubsub.outbox-done"
        )
        # Not forgotten: sent again after its lease, a repeat at worst.
        forgotten.addErrback(
            lambda failure: self.log.warn(
                "PubSub: could not clear a sent notification: {why}", why=str(failure.value)
            )
        )

    def _now(self) -> float:
        return self.component.clock.seconds()

    # -- the Python API --

    def create_node(
        self, node: str | None = None, *, owner: JID | None = None, config: NodeConfig | None = None
    ) -> Deferred[str]:
        """Create a node (named by the service if ``node`` is None), owned
        by ``owner`` if given (None: by the application alone), whoever the
        config's ``creators`` name: the application decides; fires with its
        name. Fails with :class:`PubSubError` as the model's ``create``."""
        now = self._now()
        return self.change(
            "create", lambda s: self.model.create(s, node, None, config, owner=owner, now=now)
        )

    def node_config(self, node: str) -> Deferred[NodeConfig]:
        """The node's configuration; fails ``item-not-found`` if none."""
        return self.transaction("config", lambda s: self.model.config(s, node, None))

    def configure_node(self, node: str, config: NodeConfig) -> Deferred[None]:
        """Apply ``config`` (subscribers hear of it if ``notify_config``)."""
        return self.change("configure", lambda s: self.model.configure(s, node, None, config))

    def delete_node(self, node: str, *, redirect: str | None = None) -> Deferred[None]:
        """Delete the node; subscribers hear of it (with ``redirect``)."""
        return self.change("delete", lambda s: self.model.delete(s, node, None, redirect))

    def purge_node(self, node: str) -> Deferred[None]:
        """Remove every item of the node; subscribers hear of it."""
        return self.change("purge", lambda s: self.model.purge(s, node, None))

    def publish(
        self,
        node: str,
        payload: etree._Element | None,
        *,
        item_id: str | None = None,
        publisher: JID | None = None,
    ) -> Deferred[str | None]:
        """Publish ``payload`` as item ``item_id`` (None: a new id; a known
        id replaces that item), as ``publisher`` (None: the application,
        which may publish anywhere); fires with the item's id once stored,
        the subscribers then notified. Fails with :class:`PubSubError` as
        the model's ``publish`` (``payload-too-big``...)."""
        item = Item(item_id or "", None if payload is None else _serialize(payload))
        return self._publish(node, publisher, item, None)

    def _publish(
        self,
        node: str,
        actor: JID | None,
        item: Item | None,
        preconditions: Mapping[str, object] | None,
    ) -> Deferred[str | None]:
        now = self._now()
        return self.change(
            "publish",
            lambda s: self.model.publish(
                s, node, actor, item, preconditions=preconditions, now=now
            ),
        )

    def retract(self, node: str, item_ids: Sequence[str], *, notify: bool = True) -> Deferred[None]:
        """Remove items; subscribers hear of it if ``notify`` (or the
        node's ``notify_retract``)."""
        return self.change(
            "retract", lambda s: self.model.retract(s, node, None, list(item_ids), notify)
        )

    def items(
        self,
        node: str,
        *,
        ids: Sequence[str] = (),
        max_items: int | None = None,
        after: str | None = None,
        requester: JID | None = None,
    ) -> Deferred[Page]:
        """A page of the node's items, newest first (see the model's
        ``items``); :func:`parse_payload` reads an item's payload."""
        return self.transaction(
            "items",
            lambda s: self.model.items(
                s, node, requester, ids=ids, max_items=max_items, after=after
            ),
        )

    def subscribe(self, node: str, jid: JID) -> Deferred[Subscription]:
        """Subscribe ``jid`` (the application may subscribe anyone; the
        access model still applies to whether it waits for approval: not
        for the application)."""
        return self.change("subscribe", lambda s: self.model.subscribe(s, node, None, jid))

    def unsubscribe(self, node: str, jid: JID) -> Deferred[None]:
        """End ``jid``'s subscription; fails ``not-subscribed`` if none."""
        return self.change("unsubscribe", lambda s: self.model.unsubscribe(s, node, None, jid))

    def subscribers(self, node: str) -> Deferred[list[Subscription]]:
        """The node's subscriptions (the first ``max_list``), pending ones too."""
        return self.transaction("subscribers", lambda s: self.model.subscriptions(s, node, None))

    def set_affiliation(self, node: str, jid: JID, affiliation: str) -> Deferred[None]:
        """Set ``jid``'s affiliation (``none`` removes it)."""
        return self.change(
            "affiliate",
            lambda s: self.model.set_affiliations(s, node, None, [(jid, affiliation)]),
        )

    def affiliations(self, node: str) -> Deferred[dict[str, str]]:
        """The node's affiliations by bare JID (the first ``max_list``)."""
        return self.transaction("affiliations", lambda s: self.model.affiliations(s, node, None))

    def nodes(self, requester: JID | None = None) -> Deferred[list[Node]]:
        """The nodes (the first ``max_list``) ``requester`` may know of."""
        return self.transaction("nodes", lambda s: self.model.nodes(s, requester))

    # -- notifications --

    def _notify(self, pending: Pending) -> None:
        notification = pending.notification
        sender = None
        if isinstance(notification, ApprovalRequested):
            payload = SubscribeAuthorization.form(
                {
                    "node": notification.node,
                    "subscriber_jid": JID.parse(notification.jid),
                    "allow": False,
                }
            )
        elif isinstance(notification, Message):
            payload = new_element(NS_COMPONENT, "body")
            payload.text = notification.body
            sender = notification.sender
        else:
            payload = self._event(notification)
        key = pending.key
        self.notifier.notify(
            payload,
            notification.type,
            notification.recipients,
            id=notification.id if isinstance(notification, Message) and notification.id else key,
            sender=sender,
            done=lambda sent: self._finished(key, sent),
        )

    def _event(self, notification: Notification) -> etree._Element:
        """The ``<event/>`` of a notification (XEP-0060 §7, §8)."""
        event = new_element(NS_PUBSUB_EVENT, "event")
        node = {"node": notification.node}
        if isinstance(notification, Published):
            items = new_element(NS_PUBSUB_EVENT, "items", node, event)
            for item in notification.items:
                element = new_element(NS_PUBSUB_EVENT, "item", {"id": item.id}, items)
                if notification.payloads and item.payload is not None:
                    element.append(parse_payload(item.payload))
        elif isinstance(notification, Retracted):
            items = new_element(NS_PUBSUB_EVENT, "items", node, event)
            for item_id in notification.ids:
                new_element(NS_PUBSUB_EVENT, "retract", {"id": item_id}, items)
        elif isinstance(notification, Purged):
            new_element(NS_PUBSUB_EVENT, "purge", node, event)
        elif isinstance(notification, Deleted):
            deleted = new_element(NS_PUBSUB_EVENT, "delete", node, event)
            if notification.redirect:
                new_element(NS_PUBSUB_EVENT, "redirect", {"uri": notification.redirect}, deleted)
        elif isinstance(notification, Configured):
            configuration = new_element(NS_PUBSUB_EVENT, "configuration", node, event)
            if notification.config is not None:
                configuration.append(config_form(notification.config, "result"))
        elif isinstance(notification, SubscriptionChanged):
            attributes = {**node, "jid": notification.jid, "subscription": notification.state}
            new_element(NS_PUBSUB_EVENT, "subscription", attributes, event)
        return event

    # -- XML: the requests --

    @iq("get", f"{{{NS_PUBSUB}}}pubsub", feature=NS_PUBSUB)
    async def pubsub_get(self, stanza: etree._Element) -> etree._Element:
        """Items, and the requester's own subscriptions and affiliations."""
        request, actor = _request(stanza, NS_PUBSUB)
        verb = etree.QName(request).localname
        if verb == "items":
            return await self._items(request, actor)
        if verb == "subscriptions":
            found = await self.transaction(
                "own-subscriptions",
                lambda s: self.model.subscriptions_of(s, actor, request.get("node")),
            )
            return _subscriptions(NS_PUBSUB, request.get("node"), found, with_node=True)
        if verb == "affiliations":
            affiliated = await self.transaction(
                "own-affiliations",
                lambda s: self.model.affiliations_of(s, actor, request.get("node")),
            )
            answer = new_element(NS_PUBSUB, "pubsub")
            listed = new_element(NS_PUBSUB, "affiliations", _node_only(request), answer)
            for node, affiliation in affiliated:
                attributes = {"node": node, "affiliation": affiliation}
                new_element(NS_PUBSUB, "affiliation", attributes, listed)
            return answer
        raise _not_served(request)

    @iq("set", f"{{{NS_PUBSUB}}}pubsub", feature=NS_PUBSUB)
    async def pubsub_set(self, stanza: etree._Element) -> etree._Element | None:
        """Create, publish, retract, subscribe and unsubscribe."""
        request, actor = _request(stanza, NS_PUBSUB)
        verb = etree.QName(request).localname
        if verb == "create":
            return await self._create(stanza[0], request, actor)
        if verb == "publish":
            return await self._publish_request(stanza[0], request, actor)
        if verb == "retract":
            node = _node(request)
            ids = [item.get("id") or "" for item in request.iterchildren(f"{{{NS_PUBSUB}}}item")]
            if not all(ids):
                raise PubSubError("bad-request", "item-required", "each item needs an id")
            notify = request.get("notify") in ("1", "true")
            await self.change("retract", lambda s: self.model.retract(s, node, actor, ids, notify))
            return None
        if verb == "subscribe":
            if stanza[0].find(f"{{{NS_PUBSUB}}}options") is not None:
                raise unsupported("subscription-options", "subscription options are not served")
            node, jid = _node(request), _jid(request)
            now = self._now()
            subscription = await self.change(
                "subscribe", lambda s: self.model.subscribe(s, node, actor, jid, now=now)
            )
            return _subscriptions(NS_PUBSUB, None, [subscription], with_node=True, one=True)
        if verb == "unsubscribe":
            node, jid = _node(request), _jid(request)
            if request.get("subid"):
                raise PubSubError("not-acceptable", "invalid-subid", "this service has no subids")
            await self.change("unsubscribe", lambda s: self.model.unsubscribe(s, node, actor, jid))
            return None
        raise _not_served(request)

    @iq("get", f"{{{NS_PUBSUB_OWNER}}}pubsub", feature=NS_PUBSUB)
    async def owner_get(self, stanza: etree._Element) -> etree._Element:
        """A node's configuration form, the default one, its subscriptions
        and affiliations."""
        request, actor = _request(stanza, NS_PUBSUB_OWNER)
        verb = etree.QName(request).localname
        answer = new_element(NS_PUBSUB_OWNER, "pubsub")
        if verb == "default":
            new_element(NS_PUBSUB_OWNER, "default", parent=answer).append(
                config_form(self.model.default_config)
            )
            return answer
        if verb not in ("configure", "subscriptions", "affiliations"):
            raise _not_served(request)
        node = _node(request)
        if verb == "configure":
            config = await self.transaction("config", lambda s: self.model.config(s, node, actor))
            configure = new_element(NS_PUBSUB_OWNER, "configure", {"node": node}, answer)
            configure.append(config_form(config))
            return answer
        if verb == "subscriptions":
            found = await self.transaction(
                "subscriptions", lambda s: self.model.subscriptions(s, node, actor)
            )
            return _subscriptions(NS_PUBSUB_OWNER, node, found, with_node=False)
        affiliated = await self.transaction(
            "affiliations", lambda s: self.model.affiliations(s, node, actor)
        )
        listed = new_element(NS_PUBSUB_OWNER, "affiliations", {"node": node}, answer)
        for jid, affiliation in affiliated.items():
            attributes = {"jid": jid, "affiliation": affiliation}
            new_element(NS_PUBSUB_OWNER, "affiliation", attributes, listed)
        return answer

    @iq("set", f"{{{NS_PUBSUB_OWNER}}}pubsub", feature=NS_PUBSUB)
    async def owner_set(self, stanza: etree._Element) -> None:
        """Configure, delete and purge a node; set subscriptions and affiliations."""
        request, actor = _request(stanza, NS_PUBSUB_OWNER)
        verb = etree.QName(request).localname
        if verb not in ("configure", "delete", "purge", "subscriptions", "affiliations"):
            raise _not_served(request)
        node = _node(request)
        if verb == "configure":
            x = request.find(f"{{{NS_DATA}}}x")
            if x is not None and x.get("type") == "cancel":  # an owner's, like the form
                await self.transaction("config", lambda s: self.model.config(s, node, actor))
                return
            if x is None:
                raise PubSubError("bad-request", text="submit the configuration form")
            # The form read here, in the reactor thread; the storage thread
            # sees plain values only.
            changes = parse_config(x, self.model.limits.max_items)

            def configure(store: Store) -> Outcome[None]:
                current = self.model.config(store, node, actor)
                return self.model.configure(store, node, actor, replace(current, **changes))

            await self.change("configure", configure)
        elif verb == "delete":
            redirect = request.find(f"{{{NS_PUBSUB_OWNER}}}redirect")
            uri = None if redirect is None else redirect.get("uri")
            await self.change("delete", lambda s: self.model.delete(s, node, actor, uri))
        elif verb == "purge":
            await self.change("purge", lambda s: self.model.purge(s, node, actor))
        elif verb == "subscriptions":
            states = _entries(request, "subscription", "subscription")
            await self.change(
                "set-subscriptions", lambda s: self.model.set_subscriptions(s, node, actor, states)
            )
        else:
            affiliations = _entries(request, "affiliation", "affiliation")
            await self.change(
                "set-affiliations",
                lambda s: self.model.set_affiliations(s, node, actor, affiliations),
            )

    async def _items(self, request: etree._Element, actor: JID) -> etree._Element:
        node = _node(request)
        ids = [item.get("id") or "" for item in request.iterchildren(f"{{{NS_PUBSUB}}}item")]
        max_items = _count(request.get("max_items"), "max_items")
        rsm = request.getparent().find(f"{{{NS_RSM}}}set")  # type: ignore[union-attr]
        after = before = None
        index = None
        if rsm is not None:
            page_max = _count(rsm.findtext(f"{{{NS_RSM}}}max"), "max")
            if page_max is not None:
                max_items = page_max if max_items is None else min(max_items, page_max)
            after = rsm.findtext(f"{{{NS_RSM}}}after")
            before = rsm.findtext(f"{{{NS_RSM}}}before")
            if rsm.find(f"{{{NS_RSM}}}before") is not None and before is None:
                before = ""
            index = _count(rsm.findtext(f"{{{NS_RSM}}}index"), "index")
        page = await self.transaction(
            "items",
            lambda s: self.model.items(
                s,
                node,
                actor,
                ids=[i for i in ids if i],
                max_items=max_items,
                after=after,
                before=before,
                index=index,
            ),
        )
        answer = new_element(NS_PUBSUB, "pubsub")
        listed = new_element(NS_PUBSUB, "items", {"node": node}, answer)
        for item in page.items:
            element = new_element(NS_PUBSUB, "item", {"id": item.id}, listed)
            if item.payload is not None:
                element.append(parse_payload(item.payload))
        if rsm is not None or (not ids and len(page.items) < page.count):
            answer.append(_rsm(page))
        return answer

    async def _create(
        self, pubsub: etree._Element, request: etree._Element, actor: JID
    ) -> etree._Element:
        name = request.get("node") or None
        form = pubsub.find(f"{{{NS_PUBSUB}}}configure/{{{NS_DATA}}}x")
        config = None
        if form is not None:
            changes = parse_config(form, self.model.limits.max_items)
            config = replace(self.model.default_config, **changes)
        now = self._now()
        created = await self.change(
            "create", lambda s: self.model.create(s, name, actor, config, now=now)
        )
        answer = new_element(NS_PUBSUB, "pubsub")
        new_element(NS_PUBSUB, "create", {"node": created}, answer)
        return answer

    async def _publish_request(
        self, pubsub: etree._Element, request: etree._Element, actor: JID
    ) -> etree._Element:
        node = _node(request)
        found = list(request.iterchildren(f"{{{NS_PUBSUB}}}item"))
        if len(found) > 1:
            raise PubSubError("bad-request", "invalid-payload", "publish one item at a time")
        item = None
        if found:
            payload = [child for child in found[0] if isinstance(child.tag, str)]
            if len(payload) > 1:
                raise PubSubError("bad-request", "invalid-payload", "an item holds one payload")
            text = _serialize(payload[0]) if payload else None
            item = Item(found[0].get("id") or "", text)
        options = pubsub.find(f"{{{NS_PUBSUB}}}publish-options/{{{NS_DATA}}}x")
        preconditions = None
        if options is not None:
            preconditions = parse_preconditions(options, self.model.limits.max_items)
        item_id = await self._publish(node, actor, item, preconditions)
        answer = new_element(NS_PUBSUB, "pubsub")
        published = new_element(NS_PUBSUB, "publish", {"node": node}, answer)
        if item_id is not None:
            new_element(NS_PUBSUB, "item", {"id": item_id}, published)
        return answer

    # -- XML: messages --

    @message(
        xpath=(
            f"x:x[@type='submit']/x:field[@var='FORM_TYPE']/x:value"
            f" = '{FORM_SUBSCRIBE_AUTHORIZATION}'"
        ),
        namespaces=_X,
    )
    async def authorization(self, stanza: etree._Element) -> etree._Element | None:
        """An owner's answer to a subscription approval request (§8.6);
        a refused answer is answered with a message error."""
        try:
            actor = sender_of(stanza)
            answer = SubscribeAuthorization.parse(stanza.find(f"{{{NS_DATA}}}x"))
            node, jid = answer.node or "", answer.subscriber_jid
            assert jid is not None  # a required field
            await self.change(
                "authorize", lambda s: self.model.authorize(s, node, actor, jid, answer.allow)
            )
        except StanzaError as error:
            return make_error_reply(stanza, error)
        return None

    @message("error", xpath="not(contains(@to, '@')) or e:event", namespaces=_X)
    async def bounce(self, stanza: etree._Element) -> None:
        """A notification bounced: count it against the subscription."""
        if parse_stanza_error(stanza).type == "wait":
            return  # the address may come back
        try:
            jid = JID.parse(stanza.get("from") or "")
        except InvalidJID:
            return
        node = stanza.xpath("string(e:event/*/@node)", namespaces=_X)
        dropped = await self.transaction(
            "bounce", lambda s: self.model.bounce(s, jid, str(node) or None)
        )
        for subscription in dropped:
            self.log.info(
                "PubSub: dropped the subscription of {jid} to {node}: its notifications bounce",
                jid=subscription.jid,
                node=subscription.node,
            )

    # -- disco --

    async def disco_info(self, node: str, requester: JID) -> DiscoInfo | None:
        found = await self.transaction(
            "disco-info", lambda s: self.model.visible(s, node, requester)
        )
        if found is None:
            return None
        return [("pubsub", "leaf", found.config.title)], [NS_PUBSUB]

    async def disco_items(self, node: str | None, requester: JID) -> list[DiscoItem]:
        domain = self.component.domain
        if node is None:
            nodes = await self.transaction("disco-nodes", lambda s: self.model.nodes(s, requester))
            return [(domain, found.name, found.config.title or None) for found in nodes]
        ids = await self.transaction(
            "disco-items", lambda s: self.model.item_ids(s, node, requester)
        )
        return [(domain, None, item_id) for item_id in ids]

    async def disco_forms(self, node: str | None) -> list[etree._Element]:
        if node is None:
            return []
        found = await self.transaction("metadata", lambda s: self.model.metadata(s, node))
        return [] if found is None else [metadata_form(found)]


def parse_payload(text: str) -> etree._Element:
    """An item's payload, as stored, parsed back into an element."""
    return etree.fromstring(text, _SAFE_PARSER)


def _serialize(payload: etree._Element) -> str:
    """A payload as stored: its XML alone, with the namespaces it uses."""
    alone = copy.deepcopy(payload)
    alone.tail = None
    etree.cleanup_namespaces(alone)
    return etree.tostring(alone, encoding="unicode")


def _request(stanza: etree._Element, namespace: str) -> tuple[etree._Element, JID]:
    """The request element of a ``<pubsub/>`` and who sends it.

    :raises PubSubError: ``bad-request`` if it holds no element.
    """
    actor = sender_of(stanza)
    children = [child for child in stanza[0] if isinstance(child.tag, str)]
    if not children:
        raise PubSubError("bad-request", text="the pubsub element is empty")
    return children[0], actor


def _not_served(request: etree._Element) -> StanzaError:
    """The error for a request this service does not serve with this IQ
    type: ``bad-request`` for one it serves with the other type,
    ``feature-not-implemented`` with ``<unsupported/>`` for the others."""
    name = etree.QName(request)
    if name.localname in _SERVED.get(name.namespace or "", ()):
        return PubSubError("bad-request", text=f"<{name.localname}/> is not asked that way")
    feature = _UNSUPPORTED.get((name.namespace or "", name.localname), name.localname)
    return unsupported(feature, f"<{name.localname}/> is not served")


def _node(request: etree._Element) -> str:
    """The request's ``node``; ``nodeid-required`` if there is none."""
    node = request.get("node")
    if not node:
        raise PubSubError("bad-request", "nodeid-required", "name the node")
    return node


def _node_only(request: etree._Element) -> dict[str, str] | None:
    node = request.get("node")
    return {"node": node} if node else None


def _jid(request: etree._Element) -> JID:
    """The request's ``jid``; ``bad-request`` with ``invalid-jid`` if it is
    missing or malformed."""
    try:
        return JID.parse(request.get("jid") or "")
    except InvalidJID:
        raise PubSubError("bad-request", "invalid-jid", "give a valid jid") from None


def _count(text: str | None, what: str) -> int | None:
    """A count from the request: None if absent; any number of digits (a
    huge one reads as huge, bounded by the service's page size).

    :raises PubSubError: ``bad-request`` if it is not a whole number.
    """
    if text is None:
        return None
    text = text.strip()
    if not _DIGITS.fullmatch(text):
        raise PubSubError("bad-request", text=f"{what} is a whole number")
    if len(text) > 9:
        return 10**9
    return int(text)


def _entries(request: etree._Element, tag: str, attribute: str) -> list[tuple[JID, str]]:
    """The (jid, value) pairs an owner's list sets.

    :raises PubSubError: ``bad-request`` with ``invalid-jid`` for a
        malformed jid; ``bad-request`` for an entry without the attribute.
    """
    entries = []
    for entry in request.iterchildren(f"{{{NS_PUBSUB_OWNER}}}{tag}"):
        value = entry.get(attribute)
        if not value:
            raise PubSubError("bad-request", text=f"each {tag} needs a {attribute}")
        entries.append((_jid(entry), value))
    return entries


def _subscriptions(
    namespace: str,
    node: str | None,
    found: Sequence[Subscription],
    *,
    with_node: bool,
    one: bool = False,
) -> etree._Element:
    """``<pubsub><subscriptions><subscription/>...`` (or one
    ``<subscription/>``, the answer to a subscribe)."""
    answer = new_element(namespace, "pubsub")
    parent = answer
    if not one:
        parent = new_element(namespace, "subscriptions", {"node": node} if node else None, answer)
    for subscription in found:
        attributes = {"jid": subscription.jid, "subscription": subscription.state}
        if with_node:
            attributes = {"node": subscription.node, **attributes}
        new_element(namespace, "subscription", attributes, parent)
    return answer


def _rsm(page: Page) -> etree._Element:
    """XEP-0059's ``<set/>`` describing ``page``."""
    result = new_element(NS_RSM, "set")
    if page.items:
        first = new_element(NS_RSM, "first", {"index": str(page.first_index or 0)}, result)
        first.text = page.items[0].id
        new_element(NS_RSM, "last", parent=result).text = page.items[-1].id
    new_element(NS_RSM, "count", parent=result).text = str(page.count)
    return result


__all__ = ["FEATURES", "NS_PUBSUB_EVENT", "NS_PUBSUB_OWNER", "PubSub", "parse_payload"]
