"""The SQLite store, on a real reactor (trial runs it): durability across
re-opens, and the handler on top of it."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

from lxml import etree
from tweeter import Post, Tweeter
from tweeter.sqlite import SQLiteStore
from tweeter.store import Profile, Statistic
from tweeter_kit import ALICE, ALICE_NODE, BOB, CAROL, DOMAIN, async_test
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from empc.testing import FakeServer

DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


class TemporaryDatabase(unittest.TestCase):
    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="tweeter-")
        self.addCleanup(shutil.rmtree, directory)
        self.path = str(Path(directory) / "data" / "tweeter.sqlite3")


class SQLiteStoreTests(TemporaryDatabase):
    async def opened(self) -> SQLiteStore:
        store = SQLiteStore(self.path)
        await store.open()
        self.addCleanup(store.close)
        return store

    @async_test
    async def test_creates_the_file_and_its_directory(self) -> None:
        await self.opened()
        tables = sqlite3.connect(self.path).execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )
        names = [row[0] for row in tables]
        self.assertEqual(
            [n for n in names if not n.startswith("sqlite_")],
            [
                "follow_requests",
                "follows",
                "posts",
                "profiles",
                "subscriptions",
            ],
        )

    @async_test
    async def test_everything_survives_a_reopen(self) -> None:
        store = await self.opened()
        first = await store.add_post(ALICE, "one", 10.0)
        second = await store.add_post(ALICE, "two", 20.5)
        await store.add_post(CAROL, "three", 30.0)
        self.assertEqual((first.id, second.id), (1, 2))
        self.assertTrue(await store.follow(BOB, ALICE))
        self.assertTrue(await store.follow(BOB, CAROL))
        self.assertTrue(await store.subscribe(ALICE, "bob@localhost/phone"))
        await store.close()

        store = await self.opened()
        self.assertEqual(
            await store.timeline(BOB, 10),
            [
                Post(3, CAROL, "three", 30.0),
                Post(2, ALICE, "two", 20.5),
                Post(1, ALICE, "one", 10.0),
            ],
        )
        self.assertEqual(await store.following(BOB), [ALICE, CAROL])
        self.assertEqual(await store.followers(ALICE), [BOB])
        self.assertEqual(await store.subscribers(ALICE), ["bob@localhost/phone"])
        self.assertEqual(await store.nodes(), [ALICE, CAROL])
        self.assertEqual((await store.add_post(BOB, "four", 40.0)).id, 4)

    @async_test
    async def test_queries(self) -> None:
        store = await self.opened()
        for number in range(5):
            await store.add_post(ALICE, str(number), float(number))
        await store.add_post(BOB, "bob", 9.0)
        self.assertEqual([p.text for p in await store.posts_by(ALICE, 2)], ["4", "3"])
        self.assertEqual(await store.post(6), Post(6, BOB, "bob", 9.0))
        self.assertIsNone(await store.post(7))
        self.assertEqual(await store.timeline(CAROL, 10), [])
        await store.follow(CAROL, ALICE)
        self.assertEqual([p.id for p in await store.timeline(CAROL, 3)], [5, 4, 3])

    @async_test
    async def test_follow_and_subscribe_say_whether_they_changed_something(self) -> None:
        store = await self.opened()
        self.assertTrue(await store.follow(BOB, ALICE))
        self.assertFalse(await store.follow(BOB, ALICE))
        self.assertTrue(await store.unfollow(BOB, ALICE))
        self.assertFalse(await store.unfollow(BOB, ALICE))
        self.assertTrue(await store.subscribe(ALICE, BOB))
        self.assertFalse(await store.subscribe(ALICE, BOB))
        self.assertTrue(await store.unsubscribe(ALICE, BOB))
        self.assertFalse(await store.unsubscribe(ALICE, BOB))
        self.assertEqual(await store.subscribers(ALICE), [])

    @async_test
    async def test_statistics_count_per_user(self) -> None:
        store = await self.opened()
        await store.add_post(ALICE, "one", 1.0)
        await store.add_post(ALICE, "two", 2.0)
        await store.follow(BOB, ALICE)
        await store.follow(CAROL, ALICE)
        await store.follow(CAROL, BOB)
        self.assertEqual(
            await store.statistics(),
            [
                Statistic(ALICE, 2, 2, 0),
                Statistic(BOB, 0, 1, 1),
                Statistic(CAROL, 0, 0, 2),
            ],
        )

    @async_test
    async def test_profiles_are_kept_replaced_and_removed(self) -> None:
        store = await self.opened()
        self.assertIsNone(await store.profile(ALICE))
        self.assertTrue(await store.set_profile(Profile(ALICE, "Alice", False)))
        self.assertFalse(await store.set_profile(Profile(ALICE, "Alice L.", True)))
        self.assertEqual(await store.profile(ALICE), Profile(ALICE, "Alice L.", True))
        self.assertTrue(await store.remove_profile(ALICE))
        self.assertFalse(await store.remove_profile(ALICE))

    @async_test
    async def test_follow_requests_are_kept_until_dropped(self) -> None:
        store = await self.opened()
        self.assertTrue(await store.request_follow(BOB, ALICE))
        self.assertFalse(await store.request_follow(BOB, ALICE))
        await store.request_follow(CAROL, ALICE)
        self.assertEqual(await store.follow_requests(ALICE), [BOB, CAROL])
        self.assertTrue(await store.drop_request(BOB, ALICE))
        self.assertFalse(await store.drop_request(BOB, ALICE))
        self.assertEqual(await store.follow_requests(ALICE), [CAROL])

    @async_test
    async def test_a_version_1_database_gets_the_new_tables(self) -> None:
        Path(self.path).parent.mkdir(parents=True)
        connection = sqlite3.connect(self.path)
        connection.execute("CREATE TABLE posts (id INTEGER PRIMARY KEY, author, text, published)")
        connection.execute("INSERT INTO posts VALUES (1, 'alice@localhost', 'old', 1.0)")
        connection.execute("PRAGMA user_version = 1")
        connection.commit()
        connection.close()
        store = await self.opened()
        self.assertEqual([post.text for post in await store.posts_by(ALICE, 5)], ["old"])
        self.assertTrue(await store.set_profile(Profile(ALICE, "Alice", True)))

    @async_test
    async def test_in_memory(self) -> None:
        store = SQLiteStore(":memory:")
        await store.open()
        self.addCleanup(store.close)
        await store.add_post(ALICE, "hi", 1.0)
        self.assertEqual(await store.nodes(), [ALICE])

    @async_test
    async def test_a_newer_schema_is_refused(self) -> None:
        Path(self.path).parent.mkdir(parents=True)
        connection = sqlite3.connect(self.path)
        connection.execute("PRAGMA user_version = 99")
        connection.close()
        store = SQLiteStore(self.path)
        try:
            await store.open()
        except RuntimeError as e:
            self.assertIn("schema version 99", str(e))
        else:
            self.fail("opened a database of a newer schema")

    def test_a_closed_store_refuses_calls(self) -> None:
        self.assertRaises(RuntimeError, SQLiteStore(self.path).nodes)


class HandlerOnSQLiteTests(TemporaryDatabase):
    """The component with its default store: what it acknowledges is stored."""

    async def start(self) -> FakeServer:
        server = FakeServer(
            [Tweeter({"database": self.path})], domain=DOMAIN, access_lists={"admins": []}
        )
        await server.started
        return server

    async def say(self, server: FakeServer, user: str, text: str) -> list[etree._Element]:
        """Send a chat command; wait for the answer to it (and what came before)."""
        before = len(server.sent)
        server.deliver(
            f"<message type='chat' from='{user}/phone' id='m1'><body>{text}</body></message>"
        )
        for _ in range(500):
            sent = server.sent[before:]
            if any(s.get("to") == f"{user}/phone" for s in sent):
                return sent
            await deferLater(reactor, 0.01)
        raise AssertionError(f"no answer to {text!r}")

    async def ask(self, server: FakeServer, query: str) -> etree._Element:
        """Send an IQ get from Bob; wait for the answer to it."""
        before = len(server.sent)
        server.deliver(f"<iq type='get' from='{BOB}/phone' id='q1'>{query}</iq>")
        for _ in range(500):
            for stanza in server.sent[before:]:
                if stanza.get("id") == "q1":
                    return stanza
            await deferLater(reactor, 0.01)
        raise AssertionError(f"no answer to {query!r}")

    async def body(self, server: FakeServer, user: str, text: str) -> str:
        answers = [s for s in await self.say(server, user, text) if s.get("to") == f"{user}/phone"]
        return answers[-1].findtext("{jabber:component:accept}body") or ""

    @async_test
    async def test_posts_and_follows_survive_a_restart(self) -> None:
        server = await self.start()
        self.assertEqual(
            await self.body(server, BOB, "follow alice@localhost"),
            "You now follow alice@localhost.",
        )
        sent = await self.say(server, ALICE, "post persisted")
        self.assertEqual(
            [(s.get("to"), s.findtext("{jabber:component:accept}body")) for s in sent],
            [(BOB, "persisted"), ("alice@localhost/phone", "Posted #1 to 1 follower(s).")],
        )
        await server.stop()

        server = await self.start()
        self.addCleanup(server.stop)
        timeline = await self.body(server, BOB, "timeline")
        self.assertEqual(timeline.splitlines()[0], "Timeline (1 posts):")
        self.assertTrue(timeline.splitlines()[1].startswith("alice@localhost: persisted (#1, "))
        # Service discovery asks the store: the feed nodes, a node's items.
        reply = await self.ask(server, f"<query xmlns='{DISCO_ITEMS}'/>")
        nodes = [item.get("node") for item in reply.iter(f"{{{DISCO_ITEMS}}}item")]
        self.assertEqual(nodes, [ALICE_NODE])
        reply = await self.ask(server, f"<query xmlns='{DISCO_ITEMS}' node='{ALICE_NODE}'/>")
        items = [item.get("name") for item in reply.iter(f"{{{DISCO_ITEMS}}}item")]
        self.assertEqual(items, ["1"])
        self.assertEqual((await self.say(server, ALICE, "post again"))[0].get("to"), BOB)
