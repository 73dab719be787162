"""The empc handler: chat commands, presence subscriptions and pubsub.

List it in the component's config::

    handlers:
      - class: tweeter.handlers:Tweeter
        config: {database: /var/lib/tweeter/tweeter.sqlite3}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from empc import (
    JID,
    NS_COMPONENT,
    DiscoInfo,
    DiscoItem,
    InvalidJID,
    StanzaError,
    iq,
    make_error_reply,
    make_reply,
    make_stanza,
    new_element,
)
from empc import message as message_route
from empc import presence as presence_route
from empc.registration import Registration
from tweeter.addresses import InvalidUser, node_of, user_key, user_of_address, user_of_node
from tweeter.commands import ProfileForm, TweeterCommands
from tweeter.microblog import Follow, Microblog, PostRejected
from tweeter.payloads import (
    NS_MICROBLOG,
    NS_PUBSUB,
    entry_text,
    items_payload,
    node_info,
    node_items,
    publish_payload,
    pubsub_error,
    subscription_payload,
)
from tweeter.store import Post, Profile, Store, open_store

MAX_ITEMS = 100
"""The most items one pubsub items request returns."""

_PUBSUB = f"{{{NS_PUBSUB}}}pubsub"
_P = {"p": NS_PUBSUB}
# What XEP-0060 calls the features this service lacks, by request element.
_UNSUPPORTED = {
    "affiliations": "retrieve-affiliations",
    "configure": "config-node",
    "create": "create-nodes",
    "default": "retrieve-default",
    "delete": "delete-nodes",
    "options": "subscription-options",
    "purge": "purge-nodes",
    "retract": "retract-items",
    "subscriptions": "retrieve-subscriptions",
}


class Tweeter(TweeterCommands, Registration[ProfileForm]):
    """A microblog for the users of the XMPP server.

    Config: ``database``, the SQLite file (relative to the working
    directory; created on first start). Tests pass a ``store`` instead.
    """

    defaults: ClassVar[Mapping[str, Any]] = {"database": "tweeter.sqlite3"}
    # Registration (XEP-0077) keeps a profile: the display name followers
    # see, and whether new followers are accepted without asking.
    form = ProfileForm
    legacy: ClassVar[Mapping[str, str]] = {"nick": "name"}
    # disco#info of the service: beyond the routes' features, items are kept
    # (in the store) and the nodes are microblogs.
    features: ClassVar[Sequence[str]] = (f"{NS_PUBSUB}#persistent-items", NS_MICROBLOG)
    log = Logger()

    def __init__(self, config: Mapping[str, Any] | None = None, *, store: Store | None = None):
        super().__init__(config)
        if not self.config["database"]:
            raise ValueError("database: give the path of the SQLite file")
        self._store = store
        self._opened = False
        self._blog: Microblog | None = None

    # -- life cycle -----------------------------------------------------------

    def start(self) -> Deferred[None]:
        store = self._store or open_store(self.config["database"])
        self._store = store
        self._opened = True
        return Deferred.fromCoroutine(self._start(store))

    async def _start(self, store: Store) -> None:
        await store.open()
        authors = await store.nodes()
        self._blog = Microblog(
            store, self.component.domain, self.component.clock, self.component.send
        )
        self.log.info("Tweeter: {count} users have posted so far", count=len(authors))

    def stop(self) -> Deferred[None] | None:
        if not self._opened or self._store is None:
            return None
        self._opened = False
        self._blog = None
        return self._store.close()

    @property
    def blog(self) -> Microblog:
        if self._blog is None:
            raise RuntimeError("the Tweeter handler has not started")
        return self._blog

    @property
    def store(self) -> Store:
        return self.blog.store

    # -- chat -----------------------------------------------------------------
    # Commands sent to the component itself are served by empc's Commands
    # handler (see tweeter.commands); a user's address only relays posts.

    @message_route("chat", xpath="c:body and contains(@to, '@')")
    def chat_to_address(self, stanza: etree._Element) -> etree._Element | None:
        """A chat message to a user's address: say where commands go."""
        if self._sender(stanza) is None:
            return None
        to = JID.parse(stanza.get("to") or self.component.domain)
        reply = make_reply(stanza, "chat")
        new_element(NS_COMPONENT, "body", parent=reply).text = self._not_a_command_address(
            str(to.bare)
        )
        return reply

    def _not_a_command_address(self, address: str) -> str:
        domain = self.component.domain
        try:
            user = user_of_address(address, domain)
        except InvalidUser:
            return f"Error: {address} is nobody's address. Send commands to {domain}."
        return (
            f"Error: this address only relays the posts of {user}; your message was not "
            f"delivered. Send commands to {domain}."
        )

    # -- presence: following the XMPP way ---------------------------------------

    @presence_route("subscribe")
    async def presence_subscribe(self, stanza: etree._Element) -> list[etree._Element] | None:
        """Subscribing to a user's address follows the user."""
        return await self._presence(stanza, follow=True)

    @presence_route("unsubscribe")
    async def presence_unsubscribe(self, stanza: etree._Element) -> list[etree._Element] | None:
        """Unsubscribing from it unfollows."""
        return await self._presence(stanza, follow=False)

    @presence_route("probe")
    async def presence_probe(self, stanza: etree._Element) -> list[etree._Element] | None:
        """Every address is available; its status is the user's latest post."""
        return await self._presence(stanza, follow=None)

    async def _presence(
        self, stanza: etree._Element, follow: bool | None
    ) -> list[etree._Element] | None:
        user = self._sender(stanza)
        if user is None:
            return None
        address = JID.parse(stanza.get("to") or self.component.domain).bare
        author = None
        if address.local is not None:
            try:
                author = user_of_address(str(address), self.component.domain)
            except InvalidUser as e:
                return [make_error_reply(stanza, StanzaError("jid-malformed", str(e)))]
        if follow is True and author == user:
            error = StanzaError("not-allowed", "you cannot follow yourself")
            return [make_error_reply(stanza, error)]
        if follow is None:
            return [await self.blog.presence(author, stanza.get("from") or user)]
        if author is not None:
            if not follow:
                await self.blog.unfollow(user, author)
            elif await self.blog.follow(user, author) is Follow.REQUESTED:
                return None  # answered when the author accepts or refuses
        attributes = {"from": str(address), "to": user}
        if follow:
            answers = [
                make_stanza("presence", {**attributes, "type": "subscribed"}),
                await self.blog.presence(author, user),
            ]
        else:
            answers = [
                make_stanza("presence", {**attributes, "type": "unsubscribed"}),
                make_stanza("presence", {**attributes, "type": "unavailable"}),
            ]
        return answers

    # -- registration (XEP-0077): the user's profile -------------------------------

    async def registered(self, user: JID) -> ProfileForm | None:
        profile = await self.store.profile(user_key(user))
        if profile is None:
            return None
        return ProfileForm(name=profile.name, auto_accept=profile.auto_accept)

    async def register(self, user: JID, form: ProfileForm) -> None:
        if user.local is None or user.domain == self.component.domain:
            raise StanzaError("forbidden", "only the users of a server may register")
        key = user_key(user)
        await self.store.set_profile(Profile(key, form.name or "", form.auto_accept))
        if form.auto_accept:
            await self.blog.accept_all(key)

    async def unregister(self, user: JID) -> None:
        key = user_key(user)
        await self.store.remove_profile(key)
        await self.blog.accept_all(key)  # no profile: followers are accepted

    # -- pubsub (XEP-0060) ------------------------------------------------------

    @iq(
        "set",
        _PUBSUB,
        xpath="p:pubsub/p:subscribe",
        namespaces=_P,
        feature=f"{NS_PUBSUB}#subscribe",
    )
    async def pubsub_subscribe(self, stanza: etree._Element) -> etree._Element:
        request = stanza[0].find(f"{{{NS_PUBSUB}}}subscribe")
        assert request is not None  # the route's XPath
        owner = self._node_owner(request)
        jid = self._subscriber(stanza, request)
        await self.store.subscribe(owner, jid)
        return subscription_payload(node_of(owner), jid, "subscribed")

    @iq("set", _PUBSUB, xpath="p:pubsub/p:unsubscribe", namespaces=_P)
    async def pubsub_unsubscribe(self, stanza: etree._Element) -> None:
        request = stanza[0].find(f"{{{NS_PUBSUB}}}unsubscribe")
        assert request is not None
        owner = self._node_owner(request)
        jid = self._subscriber(stanza, request)
        if not await self.store.unsubscribe(owner, jid):
            raise pubsub_error("unexpected-request", "not-subscribed", f"{jid} is not subscribed")

    @iq(
        "get",
        _PUBSUB,
        xpath="p:pubsub/p:items",
        namespaces=_P,
        feature=f"{NS_PUBSUB}#retrieve-items",
    )
    async def pubsub_items(self, stanza: etree._Element) -> etree._Element:
        request = stanza[0].find(f"{{{NS_PUBSUB}}}items")
        assert request is not None
        owner = self._node_owner(request)
        wanted = [item.get("id") for item in request.iterfind(f"{{{NS_PUBSUB}}}item")]
        if wanted:
            posts = [post for post in await self._posts(wanted) if post.author == owner]
            if not posts:
                raise StanzaError("item-not-found", "no such item on this node")
        else:
            posts = await self.store.posts_by(owner, _max_items(request.get("max_items")))
        return items_payload(owner, posts, self.component.domain)

    @iq(
        "set",
        _PUBSUB,
        xpath="p:pubsub/p:publish",
        namespaces=_P,
        feature=f"{NS_PUBSUB}#publish",
    )
    async def pubsub_publish(self, stanza: etree._Element) -> etree._Element:
        request = stanza[0].find(f"{{{NS_PUBSUB}}}publish")
        assert request is not None
        owner = self._node_owner(request)
        if self._sender(stanza) != owner:
            raise StanzaError("forbidden", "only the owner publishes to a user's feed")
        items = request.findall(f"{{{NS_PUBSUB}}}item")
        if not items:
            raise pubsub_error("bad-request", "item-required", "publish one item")
        if len(items) > 1:
            raise pubsub_error("bad-request", "invalid-payload", "publish one item at a time")
        payload = [child for child in items[0] if isinstance(child.tag, str)]
        if not payload:
            raise pubsub_error("bad-request", "payload-required", "the item needs an Atom entry")
        if len(payload) > 1:
            raise pubsub_error("bad-request", "invalid-payload", "one Atom entry per item")
        try:
            post, _ = await self.blog.post(owner, entry_text(payload[0]))
        except PostRejected as e:
            if e.too_long:
                raise pubsub_error("not-acceptable", "payload-too-big", str(e)) from None
            raise pubsub_error("bad-request", "invalid-payload", str(e)) from None
        return publish_payload(node_of(owner), str(post.id))

    @iq(("get", "set"), _PUBSUB, priority=-1)
    def pubsub_unsupported(self, stanza: etree._Element) -> None:
        """Any other pubsub request: feature-not-implemented, naming it."""
        children = [child for child in stanza[0] if isinstance(child.tag, str)]
        name = etree.QName(children[0]).localname if children else ""
        if name not in _UNSUPPORTED:
            raise pubsub_error("bad-request", None, "no pubsub request found")
        raise pubsub_error("feature-not-implemented", "unsupported", feature=_UNSUPPORTED[name])

    # -- service discovery --------------------------------------------------------
    # The built-in Disco answers the service's disco#info (identity from the
    # config, features from the routes and ``features``) and asks these two
    # methods for the rest.

    def disco_info(self, node: str, requester: JID) -> DiscoInfo | None:
        """disco#info of a feed node; None for a node that is no user's feed."""
        owner = self._owner_of(node)
        return None if owner is None else node_info(owner)

    def disco_items(self, node: str | None, requester: JID) -> Deferred[Sequence[DiscoItem]]:
        """At the top: the feed node of every user who has posted; at a feed
        node: its items, newest first."""
        return Deferred.fromCoroutine(self._disco_items(node))

    async def _disco_items(self, node: str | None) -> Sequence[DiscoItem]:
        domain = self.component.domain
        if node is None:
            authors = await self.store.nodes()
            return [(domain, node_of(author), f"{author}'s microblog") for author in authors]
        owner = self._owner_of(node)
        if owner is None:  # another handler's node (Disco checked it is one)
            return []
        return node_items(await self.store.posts_by(owner, MAX_ITEMS), domain)

    # -- helpers --------------------------------------------------------------------

    def _sender(self, stanza: etree._Element) -> str | None:
        """The sender's bare JID, local part in lower case; None for a sender
        without a local part or at the component itself (never answered)."""
        try:
            sender = JID.parse(stanza.get("from") or "")
        except InvalidJID:
            return None
        if sender.local is None or sender.domain == self.component.domain:
            return None
        return user_key(sender)

    def _node_owner(self, request: etree._Element) -> str:
        """The owner of the feed node a pubsub request names.

        :raises StanzaError: bad-request with ``<nodeid-required/>`` if it
            names none; item-not-found if it is no user's feed.
        """
        node = request.get("node")
        if not node:
            raise pubsub_error("bad-request", "nodeid-required", "name a node")
        owner = self._owner_of(node)
        if owner is None:
            raise StanzaError("item-not-found", f"no node {node!r} here")
        return owner

    def _owner_of(self, node: str) -> str | None:
        """The owner of a feed node, or None if ``node`` is no user's feed."""
        owner = user_of_node(node)
        if owner is None or owner.partition("@")[2] == self.component.domain:
            return None
        return owner

    def _subscriber(self, stanza: etree._Element, request: etree._Element) -> str:
        """The ``jid`` of a subscribe or unsubscribe: the sender's own.

        :raises StanzaError: bad-request with ``<invalid-jid/>`` otherwise.
        """
        sender = self._sender(stanza)
        text = request.get("jid") or ""
        try:
            jid = JID.parse(text)
        except InvalidJID:
            raise pubsub_error("bad-request", "invalid-jid", f"{text!r} is not a JID") from None
        if jid.local is None or sender != f"{jid.local.lower()}@{jid.domain}":
            raise pubsub_error(
                "bad-request", "invalid-jid", "the jid must be your own bare or full JID"
            )
        return sender if jid.resource is None else f"{sender}/{jid.resource}"

    async def _posts(self, ids: Sequence[str | None]) -> list[Post]:
        found = []
        for text in ids:
            if text is not None and text.isascii() and text.isdigit():
                post = await self.store.post(int(text))
                if post is not None:
                    found.append(post)
        return found


def _max_items(text: str | None) -> int:
    if text is None:
        return MAX_ITEMS
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise pubsub_error("bad-request", None, "max_items must be a positive whole number")
    return min(int(text), MAX_ITEMS)
