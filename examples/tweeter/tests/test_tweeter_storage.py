"""The tweeter's state on each database empc.storage runs on (SQLite and
PostgreSQL): what the commands keep, and what survives a restart."""

from __future__ import annotations

import secrets

import psycopg
import pytest
import sqlalchemy as sa
from tweeter import SCHEMA, Profile
from tweeter.store import counters
from tweeter_kit import ADMIN, ALICE, ALICE_NODE, BOB, CAROL, Tweets, done
from twisted.internet.defer import Deferred

from empc.storage import Database, InlineRunner


@pytest.fixture
def tweets(database_url: str) -> Tweets:
    return Tweets(database_url)


def restarted(tweets: Tweets, database_url: str) -> Tweets:
    done(tweets.server.stop())
    return Tweets(database_url)


def test_the_schema_is_migrated_to_its_head(tweets: Tweets) -> None:
    assert tweets.server.storage is not None
    assert tweets.server.storage.revisions[SCHEMA.name] == ("tweeter_0002",)


def test_posts_follows_and_profiles_survive_a_restart(tweets: Tweets, database_url: str) -> None:
    tweets.say(BOB, "follow alice@localhost")
    tweets.say(ALICE, "post one")
    tweets.say(CAROL, "post two")
    tweets.iq(BOB, "set", "<query xmlns='jabber:iq:register'><nick>Bob</nick></query>")
    tweets = restarted(tweets, database_url)
    assert tweets.say(BOB, "timeline").splitlines()[1:] == [
        "alice@localhost: one (#1, 1970-01-01T00:00:00Z)"
    ]
    assert tweets.say(BOB, "following").splitlines()[1:] == [ALICE]
    assert tweets.profile(BOB) == Profile(BOB, "Bob", True)
    assert tweets.say(ALICE, "post three") == "Posted #3 to 1 follower(s)."


def test_a_pubsub_subscription_survives_a_restart(tweets: Tweets, database_url: str) -> None:
    tweets.say(ALICE, "post one")
    subscribe = f"<subscribe node='{ALICE_NODE}' jid='{BOB}'/>"
    tweets.iq(BOB, "set", f"<pubsub xmlns='http://jabber.org/protocol/pubsub'>{subscribe}</pubsub>")
    tweets = restarted(tweets, database_url)
    sent = tweets.chat(ALICE, "post two")
    assert [s.get("to") for s in sent if s.get("type") == "headline"] == [BOB]


def test_timeline_merges_authors_newest_first(tweets: Tweets) -> None:
    tweets.say(BOB, "follow alice@localhost")
    tweets.say(BOB, "follow carol@localhost")
    for author in (ALICE, CAROL, ALICE):
        tweets.say(author, f"post by {author}")
    lines = tweets.say(BOB, "timeline 2").splitlines()
    assert [line.split(" (#")[1][0] for line in lines[1:]] == ["3", "2"]


def test_delete_and_statistics(tweets: Tweets) -> None:
    tweets.say(BOB, "follow alice@localhost")
    tweets.say(ALICE, "post one")
    tweets.say(ALICE, "post two")
    assert tweets.say(ALICE, "delete 1") == "Deleted #1."
    assert [post.id for post in tweets.posts(ALICE)] == [2]
    statistics = done(Deferred.fromCoroutine(tweets.handler.blog.statistics()))
    assert [tuple(row) for row in statistics] == [(ALICE, 1, 1, 0), (BOB, 0, 0, 1)]
    assert "stats" in tweets.say(ADMIN, "help")


def test_follow_requests_are_kept_until_answered(tweets: Tweets) -> None:
    tweets.iq(ALICE, "set", "<query xmlns='jabber:iq:register'><nick>Al</nick></query>")
    done(tweets.handler.store.set_profile(Profile(ALICE, "Al", auto_accept=False)))
    tweets.say(BOB, "follow alice@localhost")
    tweets.say(BOB, "follow alice@localhost")
    assert tweets.say(ALICE, "requests").splitlines()[1:] == [BOB]
    assert tweets.say(ALICE, "accept bob@localhost") == "bob@localhost now follows you."
    assert tweets.say(ALICE, "requests") == "Nobody asks to follow you."
    assert tweets.say(ALICE, "followers").splitlines()[1:] == [BOB]


def test_the_longest_jids_follow_each_other(tweets: Tweets) -> None:
    # Two users of 1,000 bytes make one key of the follows (PostgreSQL's
    # index entries hold about 2,700 bytes); a longer one is refused first.
    follower, followee = longest_jid("b"), longest_jid("c")
    assert tweets.say(follower, f"follow {followee}") == f"You now follow {followee}."
    assert done(tweets.handler.store.followers(followee)) == [follower]
    for longer in (f"x{followee}", "d" * 1023 + "@" + "e" * 1000 + ".example"):
        answer = tweets.say(follower, f"follow {longer}")
        assert answer.endswith("is too long: the tweeter serves JIDs of at most 1000 bytes.")


def longest_jid(seed: str) -> str:
    """A user of 1,000 bytes whose text compresses badly (an index could
    otherwise keep it small)."""
    local = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(989))
    return f"{seed}{local}@localhost"


def test_post_numbers_go_past_32_bits(tweets: Tweets) -> None:
    assert tweets.server.storage is not None
    done(
        tweets.server.storage.transaction(
            lambda c: c.execute(sa.update(counters).values(value=2**31 - 1)), name="test"
        )
    )
    assert tweets.say(ALICE, "post big") == f"Posted #{2**31} to 0 follower(s)."
    assert [post.id for post in tweets.posts(ALICE)] == [2**31]


@pytest.mark.integration
def test_a_post_takes_its_number_once_its_node_is_locked(postgresql_url: str) -> None:
    # A post that waits for its node (another post holds it) has taken no
    # number yet: the numbers follow the node's order of items.
    tweets = Tweets(Database(postgresql_url, runner=InlineRunner(), timeout=0.5))
    assert tweets.say(ALICE, "post one") == "Posted #1 to 0 follower(s)."
    with psycopg.connect(postgresql_url) as other:
        other.execute("SELECT 1 FROM pubsub_nodes WHERE name = %s FOR UPDATE", [ALICE_NODE])
        answer = tweets.say(ALICE, "post two")
        assert answer == "Error: the service's storage is unavailable; try again later"
    assert tweets.say(ALICE, "post three") == "Posted #2 to 0 follower(s)."
    assert [post.id for post in tweets.posts(ALICE)] == [2, 1]
