"""The tweeter's state on each database empc.storage runs on (SQLite and
PostgreSQL): what the commands keep, and what survives a restart."""

from __future__ import annotations

import pytest
from tweeter import SCHEMA, Profile
from tweeter_kit import ADMIN, ALICE, ALICE_NODE, BOB, CAROL, Tweets, done
from twisted.internet.defer import Deferred


@pytest.fixture
def tweets(database_url: str) -> Tweets:
    return Tweets(database_url)


def restarted(tweets: Tweets, database_url: str) -> Tweets:
    done(tweets.server.stop())
    return Tweets(database_url)


def test_the_schema_is_migrated_to_its_head(tweets: Tweets) -> None:
    assert tweets.server.storage is not None
    assert tweets.server.storage.revisions[SCHEMA.name] == ("tweeter_0001",)


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
