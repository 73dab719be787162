"""The default store: an SQLite file, used without blocking the reactor.

Every call runs in the one thread of a Twisted ``adbapi`` connection pool
(one connection: SQLite serializes writers anyway) and returns a Deferred
that fires in the reactor thread once the transaction is committed. The
schema is created when the file is first opened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, succeed

from tweeter.store import Post, Profile, Statistic

T = TypeVar("T")

SCHEMA_VERSION = 3  # 2: profiles; 3: follow requests
SCHEMA = """
CREATE TABLE IF NOT EXISTS posts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after a delete
    author TEXT NOT NULL,                  -- bare JID
    text TEXT NOT NULL,
    published REAL NOT NULL                -- seconds since the epoch, UTC
);
CREATE INDEX IF NOT EXISTS posts_by_author ON posts (author, id);
CREATE TABLE IF NOT EXISTS follows (
    follower TEXT NOT NULL,
    followee TEXT NOT NULL,
    PRIMARY KEY (follower, followee)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS follows_by_followee ON follows (followee, follower);
CREATE TABLE IF NOT EXISTS subscriptions (
    owner TEXT NOT NULL,                   -- the feed node's owner, a bare JID
    subscriber TEXT NOT NULL,              -- a bare or full JID
    PRIMARY KEY (owner, subscriber)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS follow_requests (
    follower TEXT NOT NULL,
    followee TEXT NOT NULL,                -- who has to accept or refuse
    PRIMARY KEY (followee, follower)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profiles (
    user TEXT PRIMARY KEY,                 -- bare JID
    name TEXT NOT NULL,
    auto_accept INTEGER NOT NULL
) WITHOUT ROWID;
"""

_POST_COLUMNS = "posts.id, posts.author, posts.text, posts.published"
_STATISTICS = """
WITH users(user) AS (
    SELECT author FROM posts UNION SELECT follower FROM follows UNION SELECT followee FROM follows
)
SELECT user,
    (SELECT COUNT(*) FROM posts WHERE author = user),
    (SELECT COUNT(*) FROM follows WHERE followee = user),
    (SELECT COUNT(*) FROM follows WHERE follower = user)
FROM users ORDER BY user
"""


class Cursor(Protocol):
    """What an ``adbapi`` transaction offers (it wraps a DB-API cursor)."""

    rowcount: int
    lastrowid: int | None

    def execute(self, sql: str, parameters: Sequence[object] = ...) -> object: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...


class SQLiteStore:
    """A :class:`~tweeter.store.Store` in the SQLite file at ``path``.

    :param path: the database file (created with its directory if missing),
        or ``:memory:``.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._pool: adbapi.ConnectionPool | None = None

    def open(self) -> Deferred[None]:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._pool = adbapi.ConnectionPool(
            "sqlite3",
            self.path,
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=_configure,
        )
        opened = self._run(_create_schema)

        def failed(reason: Any) -> Any:
            self.close()
            return reason

        return opened.addErrback(failed)

    def close(self) -> Deferred[None]:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.close()
        return succeed(None)

    def add_post(self, author: str, text: str, published: float) -> Deferred[Post]:
        def insert(cursor: Cursor) -> Post:
            cursor.execute(
                "INSERT INTO posts (author, text, published) VALUES (?, ?, ?)",
                (author, text, published),
            )
            assert cursor.lastrowid is not None
            return Post(cursor.lastrowid, author, text, published)

        return self._run(insert)

    def post(self, post_id: int) -> Deferred[Post | None]:
        def select(cursor: Cursor) -> Post | None:
            cursor.execute(f"SELECT {_POST_COLUMNS} FROM posts WHERE id = ?", (post_id,))
            row = cursor.fetchone()
            return None if row is None else Post(*row)

        return self._run(select)

    def posts_by(self, author: str, limit: int) -> Deferred[list[Post]]:
        return self._posts(
            f"SELECT {_POST_COLUMNS} FROM posts WHERE author = ? ORDER BY id DESC LIMIT ?",
            (author, limit),
        )

    def timeline(self, user: str, limit: int) -> Deferred[list[Post]]:
        return self._posts(
            f"SELECT {_POST_COLUMNS} FROM posts"
            " JOIN follows ON follows.followee = posts.author"
            " WHERE follows.follower = ? ORDER BY posts.id DESC LIMIT ?",
            (user, limit),
        )

    def follow(self, follower: str, followee: str) -> Deferred[bool]:
        return self._change(
            "INSERT OR IGNORE INTO follows (follower, followee) VALUES (?, ?)", (follower, followee)
        )

    def unfollow(self, follower: str, followee: str) -> Deferred[bool]:
        return self._change(
            "DELETE FROM follows WHERE follower = ? AND followee = ?", (follower, followee)
        )

    def following(self, user: str) -> Deferred[list[str]]:
        return self._column(
            "SELECT followee FROM follows WHERE follower = ? ORDER BY followee", (user,)
        )

    def followers(self, user: str) -> Deferred[list[str]]:
        return self._column(
            "SELECT follower FROM follows WHERE followee = ? ORDER BY follower", (user,)
        )

    def subscribe(self, owner: str, subscriber: str) -> Deferred[bool]:
        return self._change(
            "INSERT OR IGNORE INTO subscriptions (owner, subscriber) VALUES (?, ?)",
            (owner, subscriber),
        )

    def unsubscribe(self, owner: str, subscriber: str) -> Deferred[bool]:
        return self._change(
            "DELETE FROM subscriptions WHERE owner = ? AND subscriber = ?", (owner, subscriber)
        )

    def subscribers(self, owner: str) -> Deferred[list[str]]:
        return self._column(
            "SELECT subscriber FROM subscriptions WHERE owner = ? ORDER BY subscriber", (owner,)
        )

    def nodes(self) -> Deferred[list[str]]:
        return self._column("SELECT DISTINCT author FROM posts ORDER BY author", ())

    def statistics(self) -> Deferred[list[Statistic]]:
        def select(cursor: Cursor) -> list[Statistic]:
            cursor.execute(_STATISTICS)
            return [Statistic(*row) for row in cursor.fetchall()]

        return self._run(select)

    def profile(self, user: str) -> Deferred[Profile | None]:
        def select(cursor: Cursor) -> Profile | None:
            cursor.execute("SELECT user, name, auto_accept FROM profiles WHERE user = ?", (user,))
            row = cursor.fetchone()
            return None if row is None else Profile(row[0], row[1], bool(row[2]))

        return self._run(select)

    def set_profile(self, profile: Profile) -> Deferred[bool]:
        def upsert(cursor: Cursor) -> bool:
            cursor.execute("SELECT 1 FROM profiles WHERE user = ?", (profile.user,))
            new = cursor.fetchone() is None
            cursor.execute(
                "INSERT OR REPLACE INTO profiles (user, name, auto_accept) VALUES (?, ?, ?)",
                (profile.user, profile.name, int(profile.auto_accept)),
            )
            return new

        return self._run(upsert)

    def remove_profile(self, user: str) -> Deferred[bool]:
        return self._change("DELETE FROM profiles WHERE user = ?", (user,))

    def request_follow(self, follower: str, followee: str) -> Deferred[bool]:
        return self._change(
            "INSERT OR IGNORE INTO follow_requests (follower, followee) VALUES (?, ?)",
            (follower, followee),
        )

    def follow_requests(self, followee: str) -> Deferred[list[str]]:
        return self._column(
            "SELECT follower FROM follow_requests WHERE followee = ? ORDER BY follower",
            (followee,),
        )

    def drop_request(self, follower: str, followee: str) -> Deferred[bool]:
        return self._change(
            "DELETE FROM follow_requests WHERE follower = ? AND followee = ?",
            (follower, followee),
        )

    # -- helpers ------------------------------------------------------------

    def _run(self, interaction: Callable[[Cursor], T]) -> Deferred[T]:
        """Run ``interaction`` in the pool's thread, in a transaction that is
        committed before the Deferred fires (rolled back if it raises)."""
        if self._pool is None:
            raise RuntimeError(f"the store {self.path} is not open")
        result: Deferred[T] = self._pool.runInteraction(interaction)
        return result

    def _posts(self, sql: str, parameters: Sequence[object]) -> Deferred[list[Post]]:
        def select(cursor: Cursor) -> list[Post]:
            cursor.execute(sql, parameters)
            return [Post(*row) for row in cursor.fetchall()]

        return self._run(select)

    def _column(self, sql: str, parameters: Sequence[object]) -> Deferred[list[str]]:
        def select(cursor: Cursor) -> list[str]:
            cursor.execute(sql, parameters)
            return [row[0] for row in cursor.fetchall()]

        return self._run(select)

    def _change(self, sql: str, parameters: Sequence[object]) -> Deferred[bool]:
        def change(cursor: Cursor) -> bool:
            cursor.execute(sql, parameters)
            return cursor.rowcount == 1

        return self._run(change)


def _configure(connection: sqlite3.Connection) -> None:
    # Wait for a lock rather than fail at once if another process (a second
    # instance, an admin's sqlite3 shell) holds the file.
    connection.execute("PRAGMA busy_timeout = 5000")


def _create_schema(cursor: Cursor) -> None:
    cursor.execute("PRAGMA user_version")
    row = cursor.fetchone()
    version = 0 if row is None else int(row[0])
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"the database has schema version {version}; this tweeter knows {SCHEMA_VERSION}"
        )
    for statement in SCHEMA.split(";"):
        if statement.strip():
            cursor.execute(statement)
    cursor.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
