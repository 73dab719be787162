"""The tweeter's own state on empc.storage: who follows whom, requests to
follow, profiles, and the counter that numbers posts.

Posts themselves are items of the authors' microblog nodes, kept by
empc.pubsub (see :mod:`tweeter.microblog`). Every method of :class:`Store`
is one transaction of the component's database: its Deferred fires once
the transaction has committed, or fails with the database's error
(:class:`empc.storage.StorageUnavailable` when it cannot serve).

Users are bare JID strings (see :mod:`tweeter.addresses`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite
from twisted.internet.defer import Deferred

from empc.storage import Database, Schema

T = TypeVar("T")

metadata = sa.MetaData()


def _pair(name: str, first: str, second: str) -> sa.Table:
    """A table of (user, user) pairs, both columns the key."""
    return sa.Table(
        name,
        metadata,
        sa.Column(first, sa.Text, primary_key=True),
        sa.Column(second, sa.Text, primary_key=True),
    )


follows = _pair("tweeter_follows", "follower", "followee")
sa.Index("tweeter_follows_followee", follows.c.followee)
requests = _pair("tweeter_follow_requests", "followee", "follower")  # followee answers
profiles = sa.Table(
    "tweeter_profiles",
    metadata,
    sa.Column("jid", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("auto_accept", sa.Boolean, nullable=False),
)
counters = sa.Table(
    "tweeter_counters",
    metadata,
    sa.Column("name", sa.String(16), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

SCHEMA = Schema("tweeter", metadata, Path(__file__).with_name("migrations"))
"""The tweeter's tables, for :attr:`tweeter.handlers.Tweeter.schemas`."""


class Profile(NamedTuple):
    """What a user registered (XEP-0077): a display name, and whether new
    followers are accepted without asking."""

    user: str
    name: str
    auto_accept: bool = True


class Store:
    """The tweeter's tables in ``database`` (opened, with :data:`SCHEMA`)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def follow(self, follower: str, followee: str) -> Deferred[bool]:
        """``follower`` follows ``followee`` (a request for it is dropped);
        False if that was already so."""

        def follow(connection: Connection) -> bool:
            _delete(connection, requests, followee=followee, follower=follower)
            return _insert(connection, follows, follower=follower, followee=followee)

        return self._run("follow", follow)

    def unfollow(self, follower: str, followee: str) -> Deferred[bool]:
        """``follower`` no longer follows ``followee``; False if it did not."""
        return self._run(
            "unfollow", lambda c: _delete(c, follows, follower=follower, followee=followee)
        )

    def following(self, user: str) -> Deferred[list[str]]:
        """Whom ``user`` follows, sorted."""
        return self._column("following", follows.c.followee, follows.c.follower == user)

    def followers(self, user: str) -> Deferred[list[str]]:
        """Who follows ``user``, sorted."""
        return self._run("followers", lambda c: followers_of(c, user))

    def follow_counts(self) -> Deferred[dict[str, tuple[int, int]]]:
        """(followers, following) of every user who follows or is followed."""
        return self._run("follow-counts", follow_counts)

    def profile(self, user: str) -> Deferred[Profile | None]:
        """The profile ``user`` registered, if any."""

        def select(connection: Connection) -> Profile | None:
            row = connection.execute(
                sa.select(profiles.c.name, profiles.c.auto_accept).where(profiles.c.jid == user)
            ).first()
            return None if row is None else Profile(user, row.name, bool(row.auto_accept))

        return self._run("profile", select)

    def set_profile(self, profile: Profile) -> Deferred[bool]:
        """Keep ``profile``; whether the user had none before."""

        def upsert(connection: Connection) -> bool:
            values = {"name": profile.name, "auto_accept": profile.auto_accept}
            if _insert(connection, profiles, jid=profile.user, **values):
                return True
            connection.execute(
                sa.update(profiles).where(profiles.c.jid == profile.user).values(**values)
            )
            return False

        return self._run("set-profile", upsert)

    def remove_profile(self, user: str) -> Deferred[bool]:
        """Forget ``user``'s profile; whether there was one."""
        return self._run("remove-profile", lambda c: _delete(c, profiles, jid=user))

    def request_follow(self, follower: str, followee: str) -> Deferred[bool]:
        """Keep ``follower``'s request to follow ``followee``; whether it is new."""
        return self._run(
            "request-follow",
            lambda c: _insert(c, requests, followee=followee, follower=follower),
        )

    def follow_requests(self, followee: str) -> Deferred[list[str]]:
        """Who asks to follow ``followee``, sorted."""
        return self._column("follow-requests", requests.c.follower, requests.c.followee == followee)

    def drop_request(self, follower: str, followee: str) -> Deferred[bool]:
        """Forget a request to follow; whether there was one."""
        return self._run(
            "drop-request", lambda c: _delete(c, requests, followee=followee, follower=follower)
        )

    def _run(self, name: str, work: Callable[[Connection], T]) -> Deferred[T]:
        return self.database.transaction(work, name=f"tweeter.{name}")

    def _column(
        self, name: str, column: sa.Column[str], where: sa.ColumnElement[bool]
    ) -> Deferred[list[str]]:
        def select(connection: Connection) -> list[str]:
            statement = sa.select(column).where(where).order_by(column)
            return list(connection.execute(statement).scalars())

        return self._run(name, select)


# -- parts of a transaction: each runs in one that another opened (a post
# takes its number and reads its followers in the publish's own) --


def take_post_number(connection: Connection) -> int:
    """A new post number: 1, 2, 3... for the whole service, never given
    twice (a number whose post was refused or deleted is lost)."""
    # The update locks the row until the transaction ends (PostgreSQL) or
    # holds the whole database (SQLite's BEGIN IMMEDIATE): two posts never
    # share one, and numbers follow the order of the commits.
    post = counters.c.name == "post"
    connection.execute(sa.update(counters).where(post).values(value=counters.c.value + 1))
    value: int = connection.execute(sa.select(counters.c.value).where(post)).scalar_one()
    return value


def followers_of(connection: Connection, user: str) -> list[str]:
    """Who follows ``user``, sorted."""
    statement = sa.select(follows.c.follower).where(follows.c.followee == user)
    return list(connection.execute(statement.order_by(follows.c.follower)).scalars())


def follow_counts(connection: Connection) -> dict[str, tuple[int, int]]:
    """(followers, following) of every user who follows or is followed."""
    counts: dict[str, tuple[int, int]] = {}
    for column, index in ((follows.c.followee, 0), (follows.c.follower, 1)):
        rows = connection.execute(sa.select(column, sa.func.count()).group_by(column))
        for user, number in rows:
            pair = list(counts.get(user, (0, 0)))
            pair[index] = number
            counts[user] = (pair[0], pair[1])
    return counts


def _insert(connection: Connection, table: sa.Table, **values: object) -> bool:
    """Insert the row unless one with its key exists; whether it was new.
    (ON CONFLICT: two transactions inserting the same row at once on
    PostgreSQL do not fail.)"""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing()
    return connection.execute(statement).rowcount == 1


def _delete(connection: Connection, table: sa.Table, **key: object) -> bool:
    """Delete the row of ``key``; whether there was one."""
    where = [table.c[name] == value for name, value in key.items()]
    return connection.execute(sa.delete(table).where(*where)).rowcount == 1
