"""Storage: what the microblog keeps, behind a small interface.

:class:`Store` is the interface the handler uses; every method returns a
Deferred, so an implementation may do its I/O in threads without ever
blocking the reactor. :class:`tweeter.sqlite.SQLiteStore` is the default
(the handler's ``database`` config names its file); :class:`MemoryStore`
keeps everything in dicts and answers with already-fired Deferreds, for
tests.

Users are bare JID strings (see :mod:`tweeter.addresses`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from twisted.internet.defer import Deferred, succeed


@dataclass(frozen=True)
class Post:
    """A status: its number, its author's bare JID, its text and when it was
    published (seconds since the epoch, UTC)."""

    id: int
    author: str
    text: str
    published: float


class Statistic(NamedTuple):
    """What the service knows of one user, in numbers."""

    user: str
    posts: int
    followers: int
    following: int


class Profile(NamedTuple):
    """What a user registered (XEP-0077): a display name, and whether new
    followers are accepted without asking."""

    user: str
    name: str
    auto_accept: bool = True


class Store(Protocol):
    """Posts, who follows whom, and pubsub subscriptions to users' feeds.

    A Deferred fires once the change is durable: a post is acknowledged
    only after it is committed.
    """

    def open(self) -> Deferred[None]:
        """Get ready (create the schema on first use)."""

    def close(self) -> Deferred[None]:
        """Release what :meth:`open` took."""

    def add_post(self, author: str, text: str, published: float) -> Deferred[Post]:
        """Store a new post; fires with it, numbered."""

    def post(self, post_id: int) -> Deferred[Post | None]:
        """The post numbered ``post_id``, or None."""

    def posts_by(self, author: str, limit: int) -> Deferred[list[Post]]:
        """The author's latest ``limit`` posts, newest first."""

    def timeline(self, user: str, limit: int) -> Deferred[list[Post]]:
        """The latest ``limit`` posts of the people ``user`` follows, newest first."""

    def follow(self, follower: str, followee: str) -> Deferred[bool]:
        """``follower`` follows ``followee``; False if that was already so."""

    def unfollow(self, follower: str, followee: str) -> Deferred[bool]:
        """``follower`` no longer follows ``followee``; False if it did not."""

    def following(self, user: str) -> Deferred[list[str]]:
        """Whom ``user`` follows, sorted."""

    def followers(self, user: str) -> Deferred[list[str]]:
        """Who follows ``user``, sorted."""

    def subscribe(self, owner: str, subscriber: str) -> Deferred[bool]:
        """``subscriber`` (a bare or full JID) subscribes to ``owner``'s feed
        node; False if it already was."""

    def unsubscribe(self, owner: str, subscriber: str) -> Deferred[bool]:
        """Cancel that subscription; False if there was none."""

    def subscribers(self, owner: str) -> Deferred[list[str]]:
        """The JIDs subscribed to ``owner``'s feed node, sorted."""

    def nodes(self) -> Deferred[list[str]]:
        """The users who have posted (whose feed nodes have items), sorted."""

    def statistics(self) -> Deferred[list[Statistic]]:
        """One row per user who posts, follows or is followed, sorted."""

    def profile(self, user: str) -> Deferred[Profile | None]:
        """The profile ``user`` registered, if any."""

    def set_profile(self, profile: Profile) -> Deferred[bool]:
        """Keep ``profile``; whether the user had none before."""

    def remove_profile(self, user: str) -> Deferred[bool]:
        """Forget ``user``'s profile; whether there was one."""

    def request_follow(self, follower: str, followee: str) -> Deferred[bool]:
        """Keep ``follower``'s request to follow ``followee``; whether it is new."""

    def follow_requests(self, followee: str) -> Deferred[list[str]]:
        """Who asks to follow ``followee``, sorted."""

    def drop_request(self, follower: str, followee: str) -> Deferred[bool]:
        """Forget a request to follow; whether there was one."""


@dataclass
class MemoryStore:
    """A :class:`Store` in memory: every Deferred has already fired.

    Nothing survives the process; meant for tests and experiments.
    """

    posts: list[Post] = field(default_factory=list)
    follows: set[tuple[str, str]] = field(default_factory=set)
    subscriptions: set[tuple[str, str]] = field(default_factory=set)
    profiles: dict[str, Profile] = field(default_factory=dict)
    requests: set[tuple[str, str]] = field(default_factory=set)
    opened: bool = False

    def open(self) -> Deferred[None]:
        self.opened = True
        return succeed(None)

    def close(self) -> Deferred[None]:
        self.opened = False
        return succeed(None)

    def add_post(self, author: str, text: str, published: float) -> Deferred[Post]:
        post = Post(len(self.posts) + 1, author, text, published)
        self.posts.append(post)
        return succeed(post)

    def post(self, post_id: int) -> Deferred[Post | None]:
        found = [post for post in self.posts if post.id == post_id]
        return succeed(found[0] if found else None)

    def posts_by(self, author: str, limit: int) -> Deferred[list[Post]]:
        return succeed(self._latest({author}, limit))

    def timeline(self, user: str, limit: int) -> Deferred[list[Post]]:
        followed = {followee for follower, followee in self.follows if follower == user}
        return succeed(self._latest(followed, limit))

    def follow(self, follower: str, followee: str) -> Deferred[bool]:
        return succeed(_add(self.follows, (follower, followee)))

    def unfollow(self, follower: str, followee: str) -> Deferred[bool]:
        return succeed(_discard(self.follows, (follower, followee)))

    def following(self, user: str) -> Deferred[list[str]]:
        return succeed(sorted(followee for follower, followee in self.follows if follower == user))

    def followers(self, user: str) -> Deferred[list[str]]:
        return succeed(sorted(follower for follower, followee in self.follows if followee == user))

    def subscribe(self, owner: str, subscriber: str) -> Deferred[bool]:
        return succeed(_add(self.subscriptions, (owner, subscriber)))

    def unsubscribe(self, owner: str, subscriber: str) -> Deferred[bool]:
        return succeed(_discard(self.subscriptions, (owner, subscriber)))

    def subscribers(self, owner: str) -> Deferred[list[str]]:
        return succeed(sorted(jid for node, jid in self.subscriptions if node == owner))

    def nodes(self) -> Deferred[list[str]]:
        return succeed(sorted({post.author for post in self.posts}))

    def statistics(self) -> Deferred[list[Statistic]]:
        users = {post.author for post in self.posts} | {
            user for pair in self.follows for user in pair
        }
        return succeed(
            [
                Statistic(
                    user,
                    sum(post.author == user for post in self.posts),
                    sum(followee == user for _, followee in self.follows),
                    sum(follower == user for follower, _ in self.follows),
                )
                for user in sorted(users)
            ]
        )

    def profile(self, user: str) -> Deferred[Profile | None]:
        return succeed(self.profiles.get(user))

    def set_profile(self, profile: Profile) -> Deferred[bool]:
        new = profile.user not in self.profiles
        self.profiles[profile.user] = profile
        return succeed(new)

    def remove_profile(self, user: str) -> Deferred[bool]:
        return succeed(self.profiles.pop(user, None) is not None)

    def request_follow(self, follower: str, followee: str) -> Deferred[bool]:
        return succeed(_add(self.requests, (follower, followee)))

    def follow_requests(self, followee: str) -> Deferred[list[str]]:
        return succeed(sorted(follower for follower, user in self.requests if user == followee))

    def drop_request(self, follower: str, followee: str) -> Deferred[bool]:
        return succeed(_discard(self.requests, (follower, followee)))

    def _latest(self, authors: set[str], limit: int) -> list[Post]:
        chosen = [post for post in self.posts if post.author in authors]
        return sorted(chosen, key=lambda post: post.id, reverse=True)[:limit]


def open_store(database: str) -> Store:
    """The store the handler's ``database`` config names: an SQLite file.

    The path is relative to the working directory; its directory is created
    if missing. ``:memory:`` gives an SQLite database in memory.
    """
    from tweeter.sqlite import SQLiteStore

    return SQLiteStore(database)


def _add(pairs: set[tuple[str, str]], pair: tuple[str, str]) -> bool:
    if pair in pairs:
        return False
    pairs.add(pair)
    return True


def _discard(pairs: set[tuple[str, str]], pair: tuple[str, str]) -> bool:
    if pair not in pairs:
        return False
    pairs.discard(pair)
    return True
