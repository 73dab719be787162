"""The microblog itself: posting and following, whatever the interface.

The chat commands, the presence subscriptions and the pubsub requests all
come here, so a post made one way reaches everyone the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from lxml import etree
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from empc import NS_COMPONENT, make_message, make_stanza, new_element
from tweeter.addresses import address_of
from tweeter.payloads import event_message
from tweeter.store import Post, Store

NS_NICK = "http://jabber.org/protocol/nick"

MAX_POST_LENGTH = 280
"""The most characters a post may have, once stripped."""


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
    """Posts and follows, on a :class:`~tweeter.store.Store`.

    :param store: where everything is kept (already open).
    :param domain: the component's domain.
    :param clock: gives the time of new posts.
    :param send: sends a notification; may raise (the link may be down),
        which is logged and does not undo the post.
    """

    log = Logger()

    def __init__(
        self,
        store: Store,
        domain: str,
        clock: IReactorTime,
        send: Callable[[etree._Element], None],
    ) -> None:
        self.store = store
        self.domain = domain
        self.clock = clock
        self._send = send

    async def post(self, author: str, text: str) -> tuple[Post, int]:
        """Store a post, then notify the author's followers (a chat message
        from the author's address) and the subscribers of the author's feed
        node (a pubsub event).

        :returns: the post and how many followers it was sent to.
        :raises PostRejected: if the text cannot be posted.
        """
        post = await self.store.add_post(author, check_text(text), self.clock.seconds())
        followers = await self.store.followers(author)
        subscribers = await self.store.subscribers(author)
        sender = address_of(author, self.domain)
        for follower in followers:
            self._notify(make_message(follower, post.text, from_=sender, id=f"tweeter-{post.id}"))
        for subscriber in subscribers:
            self._notify(event_message(post, self.domain, subscriber))
        return post, len(followers)

    async def follow(self, follower: str, followee: str) -> Follow:
        """Follow ``followee``, or ask to when the followee's profile says
        new followers are accepted by hand (the followee is told by chat)."""
        if followee in await self.store.following(follower):
            await self.store.drop_request(follower, followee)  # one left from before
            return Follow.ALREADY
        profile = await self.store.profile(followee)
        if profile is None or profile.auto_accept:
            await self.store.drop_request(follower, followee)
            await self.store.follow(follower, followee)
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
        latest = await self.store.posts_by(author, 1)
        if latest:
            new_element(NS_COMPONENT, "status", parent=presence).text = latest[0].text
        profile = await self.store.profile(author)
        if profile is not None:
            new_element(NS_NICK, "nick", parent=presence).text = profile.name
        return presence

    def _notify(self, stanza: etree._Element) -> None:
        try:
            self._send(stanza)
        except Exception as e:
            # The post is stored; only this notification is lost.
            self.log.warn("Could not notify {to}: {why}", to=stanza.get("to"), why=str(e))
