"""The microblog itself: posting and following, whatever the interface.

The chat and ad-hoc commands, the presence subscriptions and the pubsub
requests all come here, so a post made one way reaches everyone the same
way. Posts are items of their authors' microblog nodes (XEP-0277), kept
by the component's :class:`empc.pubsub.PubSub` service, through its Python
API; who follows whom and the profiles are the tweeter's own
(:class:`tweeter.store.Store`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import NamedTuple

from lxml import etree
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from empc import JID, NS_COMPONENT, StanzaError, make_message, make_stanza, new_element
from empc.pubsub import Item, Message, NodeConfig, Outcome, PubSub, PubSubError, SqlStore
from tweeter.addresses import address_of, node_of, user_of_node
from tweeter.contacts import Contacts
from tweeter.payloads import Post, atom_entry, post_of
from tweeter.store import Store, follow_counts, followers_of, take_post_number

NS_NICK = "http://jabber.org/protocol/nick"

MAX_POST_LENGTH = 280
"""The most characters a post may have, once stripped."""


class Statistic(NamedTuple):
    """What the service knows of one user, in numbers."""

    user: str
    posts: int
    followers: int
    following: int


class Follow(Enum):
    """What asking to follow someone did."""

    FOLLOWING = "following"  # done
    ALREADY = "already"  # nothing to do
    REQUESTED = "requested"  # the followee accepts followers by hand: asked


class Unfollow(Enum):
    """What asking to stop following someone did."""

    UNFOLLOWED = "unfollowed"
    WITHDRAWN = "withdrawn"  # a request to follow, not yet answered
    NOT_FOLLOWING = "not following"


class PostRejected(ValueError):
    """The text cannot be posted; the message says why, to the user."""

    def __init__(self, message: str, too_long: bool = False) -> None:
        super().__init__(message)
        self.too_long = too_long


def check_text(text: str) -> str:
    """The text to post, stripped.

    :raises PostRejected: if it is empty or longer than 280 characters.
    """
    text = text.strip()
    if not text:
        raise PostRejected("a post needs some text")
    if len(text) > MAX_POST_LENGTH:
        raise PostRejected(
            f"a post has at most {MAX_POST_LENGTH} characters; this one has {len(text)}",
            too_long=True,
        )
    return text


class Microblog:
    """Posts and follows.

    :param store: the tweeter's own state.
    :param pubsub: the service that keeps the posts, started.
    :param domain: the component's domain.
    :param clock: gives the time of new posts.
    :param send: sends a notification; may raise (the link may be down),
        which is logged and does not undo the post.
    :param contacts: puts followed users in their followers' rosters, when
        the server allows it.
    """

    log = Logger()

    def __init__(
        self,
        store: Store,
        pubsub: PubSub,
        domain: str,
        clock: IReactorTime,
        send: Callable[[etree._Element], None],
        contacts: Contacts | None = None,
    ) -> None:
        self.store = store
        self._contacts = contacts
        self.pubsub = pubsub
        self.domain = domain
        self.clock = clock
        self._send = send

    async def post(self, author: str, text: str) -> tuple[Post, int]:
        """Publish a post to the author's node (created, owned by the
        author, on the first post), then send it by chat from the author's
        address to each follower. The subscribers of the node get the
        pubsub event from the service.

        One transaction creates the node if need be, takes the post's
        number once the node is locked (so that numbers and the node's
        order agree), publishes, and reads the followers; the chat messages
        go out once it committed, even if the caller stopped waiting (a
        request past its deadline). A caller that stops waiting before the
        transaction ran gets nothing stored.

        :returns: the post and how many followers it was sent to.
        :raises PostRejected: if the text cannot be posted.
        :raises StanzaError: ``forbidden`` if the author's node is not the
            author's own.
        """
        text = check_text(text)
        when, node, owner = self.clock.seconds(), node_of(author), JID.parse(author)
        model, config = self.pubsub.model, self._node_config(author)

        def publish(state: SqlStore) -> Outcome[tuple[Post, int]]:
            notifications = []
            if state.node(node, lock=True) is None:
                try:
                    created = model.create(state, node, None, config, owner=owner, now=when)
                    notifications += created.notifications
                except PubSubError as e:
                    if e.condition != "conflict":  # else made meanwhile by another post
                        raise
                state.node(node, lock=True)
            if state.affiliation(node, author) != "owner":
                raise StanzaError(
                    "forbidden", f"{node} is someone else's node: an admin must delete it"
                )
            post = Post(take_post_number(state.connection), author, text, when)
            payload = etree.tostring(atom_entry(post, self.domain), encoding="unicode")
            entry = Item(str(post.id), payload)
            published = model.publish(state, node, None, entry, now=when)
            followers = self._readers(state, node, followers_of(state.connection, author))
            # The chat messages to the followers are kept with the post (the
            # service's outbox) and go out once it committed, even if the
            # caller stopped waiting, or the process stops before they are
            # all sent (another then sends them): at least once, with the
            # post's id to tell a repeat.
            chat = Message(
                node=node,
                recipients=tuple(followers),
                type="chat",
                sender=address_of(author, self.domain),
                body=post.text,
                id=f"tweeter-{post.id}",
            )
            return Outcome((post, len(followers)), [*notifications, *published.notifications, chat])

        return await self.pubsub.change("tweeter-post", publish)

    def _readers(self, state: SqlStore, node: str, users: list[str]) -> list[str]:
        """Those of ``users`` the node's access model lets read its items."""
        found = state.node(node)
        if found is None or found.config.access_model == "open":
            return users
        readers = []
        for user in users:
            try:
                self.pubsub.model.items(state, node, JID.parse(user), max_items=0)
            except PubSubError:
                continue
            readers.append(user)
        return readers

    def _node_config(self, author: str) -> NodeConfig:
        """The author's microblog node, as XEP-0277 has it: open to all,
        owned by the author, keeping as many items as the service allows;
        events are headlines, with no last item on subscribing."""
        return NodeConfig(
            title=f"{author}'s microblog",
            access_model="open",
            publish_model="publishers",
            max_items=self.pubsub.model.limits.max_items,
            notification_type="headline",
            send_last_published_item="never",
            notify_retract=True,
        )

    async def delete(self, author: str, post_id: int) -> bool:
        """Retract post ``post_id`` from its author's node (the subscribers
        hear of it); False if ``author`` has no such post."""
        try:
            await self.pubsub.retract(node_of(author), [str(post_id)])
        except PubSubError as e:
            if e.condition == "item-not-found":
                return False
            raise
        return True

    async def posts_by(self, author: str, limit: int, requester: str) -> list[Post]:
        """The author's latest ``limit`` posts, newest first, as the node's
        access model lets ``requester`` (a JID) read them.

        :raises PubSubError: as the service's ``items`` when ``requester``
            may not read them (``not-allowed`` for a whitelist...).
        """
        try:
            page = await self.pubsub.items(
                node_of(author), max_items=limit, requester=JID.parse(requester)
            )
        except PubSubError as e:
            if e.condition == "item-not-found":  # no node: never posted
                return []
            raise
        return _posts(page.items, author)

    async def timeline(self, user: str, limit: int) -> list[Post]:
        """The latest ``limit`` posts of the people ``user`` follows that
        ``user`` may read, newest first."""
        authors = await self.store.following(user)
        model, reader = self.pubsub.model, JID.parse(user)

        # One transaction of the service's state for all of them.
        def latest(state: SqlStore) -> list[Post]:
            found: list[Post] = []
            for author in authors:
                try:
                    page = model.items(state, node_of(author), reader, max_items=limit)
                except PubSubError:
                    continue  # no node (never posted), or not for ``user`` to read
                found += _posts(page.items, author)
            return sorted(found, key=lambda post: post.id, reverse=True)[:limit]

        return await self.pubsub.transaction("tweeter-timeline", latest)

    async def statistics(self) -> list[Statistic]:
        """One row per user who has a microblog, follows or is followed,
        sorted: all of them, in one transaction."""

        def count(state: SqlStore) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
            posts = {}
            for node in state.nodes(None, _EVERY):
                author = user_of_node(node.name)
                if author is not None:
                    posts[author] = state.count_items(node.name)
            return posts, follow_counts(state.connection)

        posts, follows = await self.pubsub.transaction("tweeter-statistics", count)
        return [
            Statistic(user, posts.get(user, 0), *follows.get(user, (0, 0)))
            for user in sorted(set(posts) | set(follows))
        ]

    async def follow(self, follower: str, followee: str) -> Follow:
        """Follow ``followee``, or ask to when the followee's profile says
        new followers are accepted by hand (the followee is told by chat)."""
        if followee in await self.store.following(follower):
            await self.store.drop_request(follower, followee)  # one left from before
            return Follow.ALREADY
        profile = await self.store.profile(followee)
        if profile is None or profile.auto_accept:
            await self.store.follow(follower, followee)  # drops a stale request too
            self._followed(follower, followee, True)
            return Follow.FOLLOWING
        if await self.store.request_follow(follower, followee):
            self._notify(
                make_message(
                    followee,
                    f"{follower} asks to follow you. "
                    f"Send 'accept {follower}' or 'refuse {follower}'.",
                    from_=self.domain,
                )
            )
        return Follow.REQUESTED

    async def unfollow(self, follower: str, followee: str) -> Unfollow:
        """Stop following ``followee``, or withdraw the request to."""
        if await self.store.unfollow(follower, followee):
            self._followed(follower, followee, False)
            return Unfollow.UNFOLLOWED
        if await self.store.drop_request(follower, followee):
            return Unfollow.WITHDRAWN
        return Unfollow.NOT_FOLLOWING

    async def answer_request(self, followee: str, follower: str, accept: bool) -> bool:
        """Accept or refuse ``follower``'s request to follow ``followee``,
        and tell the follower (by chat, and by answering the presence
        subscription to the followee's address); False if there was none."""
        if not await self.store.drop_request(follower, followee):
            return False
        address = address_of(followee, self.domain)
        if accept:
            await self.store.follow(follower, followee)
            self._followed(follower, followee, True)
            text = f"{followee} accepted your request: you now follow {followee}."
            presences = [
                make_stanza("presence", {"from": address, "to": follower, "type": "subscribed"}),
                await self.presence(followee, follower),
            ]
        else:
            text = f"{followee} declined your request to follow them."
            presences = [
                make_stanza("presence", {"from": address, "to": follower, "type": "unsubscribed"})
            ]
        self._notify(make_message(follower, text, from_=self.domain))
        for presence in presences:
            self._notify(presence)
        return True

    async def accept_all(self, followee: str) -> None:
        """Accept every request to follow ``followee`` (who now accepts
        followers without asking, or has no profile any more)."""
        for follower in await self.store.follow_requests(followee):
            await self.answer_request(followee, follower, accept=True)

    async def presence(self, author: str | None, to: str) -> etree._Element:
        """The presence of ``author``'s address (the component's own if
        None): the latest post as its status, the display name as its
        nickname (XEP-0172)."""
        sender = self.domain if author is None else address_of(author, self.domain)
        presence = make_stanza("presence", {"from": sender, "to": to})
        if author is None:
            return presence
        try:
            latest = await self.posts_by(author, 1, to)
        except PubSubError:  # not for ``to`` to read
            latest = []
        if latest:
            new_element(NS_COMPONENT, "status", parent=presence).text = latest[0].text
        profile = await self.store.profile(author)
        if profile is not None:
            new_element(NS_NICK, "nick", parent=presence).text = profile.name
        return presence

    def _followed(self, follower: str, followee: str, follows: bool) -> None:
        """Tell the contacts that ``follower`` now follows ``followee``, or
        no longer does."""
        if self._contacts is not None:
            if follows:
                self._contacts.followed(follower, followee)
            else:
                self._contacts.unfollowed(follower, followee)

    def _notify(self, stanza: etree._Element) -> None:
        try:
            self._send(stanza)
        except Exception as e:
            # The post is stored; only this notification is lost.
            self.log.warn("Could not notify {to}: {why}", to=stanza.get("to"), why=str(e))


_EVERY = 2**62
"""A bound on a list that must be whole (SQL's LIMIT wants one)."""


def _posts(items: Sequence[Item], author: str) -> list[Post]:
    found = (post_of(item, author) for item in items)
    return [post for post in found if post is not None]
