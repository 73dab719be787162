"""The empc handler: chat commands, presence subscriptions and microblog nodes.

List it in the component's config with the PubSub service that keeps the
posts, and a storage section for both::

    storage: {url: "sqlite:////var/lib/tweeter/tweeter.sqlite3"}
    components:
      - domain: tweeter.example.org
        handlers:
          - class: tweeter.handlers:Tweeter
          - class: empc.pubsub:PubSub
            config: {creators: []}      # nodes are the tweeter's to create
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from lxml import etree
from twisted.logger import Logger

from empc import (
    JID,
    NS_COMPONENT,
    DiscoInfo,
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
from empc.privilege import Privilege
from empc.pubsub import NS_PUBSUB, PubSub, PubSubError
from empc.registration import Registration
from empc.storage import Schema
from tweeter.addresses import NODE_PREFIX, InvalidUser, user_of_address, user_of_node
from tweeter.commands import ProfileForm, TweeterCommands
from tweeter.contacts import Contacts
from tweeter.microblog import Follow, Microblog, PostRejected
from tweeter.payloads import NS_MICROBLOG, entry_text, publish_payload
from tweeter.store import SCHEMA, Profile, Store

_P = {"p": NS_PUBSUB}


class Tweeter(TweeterCommands, Registration[ProfileForm]):
    """A microblog for the users of the XMPP server.

    It needs an :class:`empc.pubsub.PubSub` among the component's handlers
    (after this one, so that this one describes the microblog nodes in
    disco#info), and keeps its own tables in the component's storage.
    """

    schemas: ClassVar[Sequence[Schema]] = (SCHEMA,)
    # Registration (XEP-0077) keeps a profile: the display name followers
    # see, and whether new followers are accepted without asking.
    form = ProfileForm
    legacy: ClassVar[Mapping[str, str]] = {"nick": "name"}
    # disco#info of the service: beyond the PubSub's features, the nodes
    # are microblogs.
    features: ClassVar[Sequence[str]] = (NS_MICROBLOG,)
    log = Logger()

    def __init__(self, config: Mapping[str, Any] | None = None):
        super().__init__(config)
        self._blog: Microblog | None = None

    # -- life cycle -----------------------------------------------------------

    def start(self) -> None:
        """Find the component's PubSub service and database.

        :raises RuntimeError: if the component has no PubSub handler or no
            storage.
        """
        services = [h for h in self.component.handlers if isinstance(h, PubSub)]
        if not services:
            raise RuntimeError(
                "the tweeter keeps its posts in a PubSub service: add the handler "
                "empc.pubsub:PubSub to the component"
            )
        database = self.component.storage
        if database is None:
            raise RuntimeError("the tweeter needs the component's storage")
        try:
            contacts = Contacts(Privilege.of(self.component), self.component.domain)
        except LookupError:  # builtins: {privilege: false}
            contacts = None
        self._blog = Microblog(
            Store(database),
            services[0],
            self.component.domain,
            self.component.clock,
            self.component.send,
            contacts,
        )

    def stop(self) -> None:
        self._blog = None

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
        try:
            if self._sender(stanza) is None:
                return None
        except StanzaError as e:
            return make_error_reply(stanza, e)
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
        try:
            user = self._sender(stanza)
        except StanzaError as e:
            return [make_error_reply(stanza, e)]
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
        profile = await self.store.profile(self.key_of(user))
        if profile is None:
            return None
        return ProfileForm(name=profile.name, auto_accept=profile.auto_accept)

    async def register(self, user: JID, form: ProfileForm) -> None:
        if not self.is_user(user):
            raise StanzaError("forbidden", "only the users of a server may register")
        key = self.key_of(user)
        await self.store.set_profile(Profile(key, form.name or "", form.auto_accept))
        if form.auto_accept:
            await self.blog.accept_all(key)

    async def unregister(self, user: JID) -> None:
        key = self.key_of(user)
        await self.store.remove_profile(key)
        await self.blog.accept_all(key)  # no profile: followers are accepted

    # -- pubsub (XEP-0060) ------------------------------------------------------
    # The PubSub handler serves the nodes; only a publish to a microblog node
    # comes here first (a higher priority), so that it is a post like any
    # other: checked, numbered, sent to the followers.

    @iq(
        "set",
        f"{{{NS_PUBSUB}}}pubsub",
        xpath=f"p:pubsub/p:publish[starts-with(@node, '{NODE_PREFIX}')]",
        namespaces=_P,
        priority=1,
    )
    async def pubsub_publish(self, stanza: etree._Element) -> etree._Element:
        """A post published as an Atom entry by the node's owner; the item's
        id is the post's number (the publisher's own id is ignored).

        :raises StanzaError: item-not-found for a node that is no user's;
            forbidden for anyone but its owner; bad-request with
            item-required, payload-required or invalid-payload for anything
            but one item holding one Atom entry with text; not-acceptable
            with payload-too-big for a text over 280 characters.
        """
        request = stanza[0].find(f"{{{NS_PUBSUB}}}publish")
        assert request is not None  # the route's XPath
        node = request.get("node") or ""
        owner = self._owner_of(node)
        if owner is None:
            raise StanzaError("item-not-found", f"no node {node!r} here")
        if self._sender(stanza) != owner:
            raise StanzaError("forbidden", "only the owner publishes to a user's feed")
        items = request.findall(f"{{{NS_PUBSUB}}}item")
        if not items:
            raise PubSubError("bad-request", "item-required", "publish one item")
        if len(items) > 1:
            raise PubSubError("bad-request", "invalid-payload", "publish one item at a time")
        payload = [child for child in items[0] if isinstance(child.tag, str)]
        if not payload:
            raise PubSubError("bad-request", "payload-required", "the item needs an Atom entry")
        if len(payload) > 1:
            raise PubSubError("bad-request", "invalid-payload", "one Atom entry per item")
        try:
            post, _ = await self.blog.post(owner, entry_text(payload[0]))
        except PostRejected as e:
            if e.too_long:
                raise PubSubError("not-acceptable", "payload-too-big", str(e)) from None
            raise PubSubError("bad-request", "invalid-payload", str(e)) from None
        return publish_payload(node, str(post.id))

    @iq(
        "set",
        f"{{{NS_PUBSUB}}}pubsub",
        xpath=f"p:pubsub/p:create[starts-with(@node, '{NODE_PREFIX}')]",
        namespaces=_P,
        priority=1,
    )
    def pubsub_create(self, stanza: etree._Element) -> None:
        """Microblog nodes are made by the tweeter, each on its owner's
        first post, whatever the PubSub's ``creators`` let users make.

        :raises StanzaError: forbidden, always.
        """
        raise StanzaError("forbidden", "a microblog node is made by the tweeter on your first post")

    # -- service discovery --------------------------------------------------------
    # The PubSub handler lists the nodes and their items; this one answers
    # disco#info of a microblog node first, to add XEP-0277's feature.

    async def disco_info(self, node: str, requester: JID) -> DiscoInfo | None:
        """The PubSub's disco#info of a microblog node, with the feature
        ``urn:xmpp:microblog:0``; None for any other node, or one that
        does not exist (yet)."""
        if self._owner_of(node) is None:
            return None
        found = await self.blog.pubsub.disco_info(node, requester)
        if found is None:
            return None
        identities, features = found
        return identities, [*features, NS_MICROBLOG]

    async def disco_forms(self, node: str | None) -> Sequence[etree._Element]:
        """At a microblog node, the PubSub's meta-data form (this handler
        answers its disco#info)."""
        if node is None or self._owner_of(node) is None:
            return []
        return await self.blog.pubsub.disco_forms(node)

    # -- helpers --------------------------------------------------------------------

    def _sender(self, stanza: etree._Element) -> str | None:
        """The sender's bare JID, local part in lower case; None for a sender
        without a local part or at the component itself (never answered).

        :raises StanzaError: ``not-acceptable`` for a JID too long to serve.
        """
        try:
            sender = JID.parse(stanza.get("from") or "")
        except InvalidJID:
            return None
        return self.key_of(sender) if self.is_user(sender) else None

    def _owner_of(self, node: str) -> str | None:
        """The owner of a feed node, or None if ``node`` is no user's feed."""
        owner = user_of_node(node)
        if owner is None or owner.partition("@")[2] == self.component.domain:
            return None
        return owner
