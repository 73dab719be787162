"""What a post does whatever becomes of its request, who may make a
microblog node, and what the tweeter shows to whom."""

from __future__ import annotations

import pytest
from tweeter_kit import (
    ALICE,
    ALICE_ADDRESS,
    ALICE_NODE,
    BOB,
    CAROL,
    NS,
    HeldRunner,
    Tweets,
    done,
    error_of,
    text_of,
)
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from empc import JID
from empc.storage import Database

MALLORY = "mallory@evil.example"
BOB_NODE = "urn:xmpp:microblog:0:bob@localhost"
PUBSUB = "<pubsub xmlns='http://jabber.org/protocol/pubsub'>{}</pubsub>"
PUBLISH = PUBSUB.format(
    f"<publish node='{ALICE_NODE}'><item><entry xmlns='http://www.w3.org/2005/Atom'>"
    "<title>second</title></entry></item></publish>"
)


def held() -> tuple[Tweets, HeldRunner]:
    """Alice posted once; Bob follows her; transactions are held from now on."""
    runner = HeldRunner()
    tweets = Tweets(Database("sqlite://", runner=runner, clock=Clock()))
    tweets.say(BOB, f"follow {ALICE}")
    tweets.say(ALICE, "post first")
    tweets.server.clear()
    runner.holding = True
    return tweets, runner


def chats_to(tweets: Tweets, user: str) -> list[tuple[str | None, str]]:
    return [
        (s.get("from"), text_of(s, "c:body")) for s in tweets.server.find(f"self::*[@to='{user}']")
    ]


def test_a_post_committed_past_its_deadline_still_reaches_the_followers() -> None:
    tweets, runner = held()
    tweets.deliver(f"<iq type='set' from='{ALICE}/phone' id='q1'>{PUBLISH}</iq>")
    (timeout,) = tweets.server.advance(31)
    assert error_of(timeout)[:2] == ("wait", "remote-server-timeout")
    runner.holding = False
    runner.release()
    tweets.server.advance(0)  # the notifications go out in the next turn
    assert chats_to(tweets, BOB) == [(ALICE_ADDRESS, "second")]
    assert [post.text for post in tweets.posts(ALICE)] == ["second", "first"]


def test_a_chat_post_committed_past_its_deadline_still_reaches_the_followers() -> None:
    tweets, runner = held()
    tweets.chat(ALICE, "post second")
    tweets.server.advance(31)
    runner.holding = False
    runner.release()
    tweets.server.advance(0)  # the notifications go out in the next turn
    assert chats_to(tweets, BOB) == [(ALICE_ADDRESS, "second")]


def test_a_post_abandoned_while_it_waits_for_the_database_is_not_stored() -> None:
    tweets, runner = held()
    tweets.chat(CAROL, "post busy")  # holds SQLite's one connection
    tweets.deliver(f"<iq type='set' from='{ALICE}/phone' id='q1'>{PUBLISH}</iq>")  # waits
    tweets.server.advance(31)
    runner.holding = False
    runner.release()
    assert chats_to(tweets, BOB) == []
    assert [post.text for post in tweets.posts(ALICE)] == ["first"]
    assert tweets.say(ALICE, "post third") == "Posted #3 to 1 follower(s)."


@pytest.mark.parametrize("creators", [None, [MALLORY]])
def test_nobody_creates_a_microblog_node_whatever_the_creators(creators: list[str] | None) -> None:
    tweets = Tweets(pubsub={"creators": creators})
    reply = tweets.iq(MALLORY, "set", PUBSUB.format(f"<create node='{BOB_NODE}'/>"))
    assert error_of(reply)[:2] == ("auth", "forbidden")
    assert tweets.say(BOB, "post mine") == "Posted #1 to 0 follower(s)."
    affiliations = done(tweets.pubsub.affiliations(BOB_NODE))
    assert affiliations == {BOB: "owner"}
    other = tweets.iq(MALLORY, "set", PUBSUB.format("<create node='mallory-news'/>"))
    assert other.get("type") == "result"


def test_a_post_to_a_node_owned_by_another_is_forbidden() -> None:
    tweets = Tweets()
    done(tweets.pubsub.create_node(BOB_NODE, owner=JID.parse(MALLORY)))
    answer = tweets.say(BOB, "post my plans")
    assert answer.startswith("Error: urn:xmpp:microblog:0:bob@localhost is someone else's node")
    assert done(tweets.pubsub.items(BOB_NODE)).items == []


def test_statistics_count_every_author_past_the_pubsub_list_bound() -> None:
    tweets = Tweets(pubsub={"creators": [], "max_list": 2})
    for author in (ALICE, BOB, CAROL):
        tweets.say(author, "post hi")
    rows = done(Deferred.fromCoroutine(tweets.handler.blog.statistics()))
    assert [(row.user, row.posts) for row in rows] == [(ALICE, 1), (BOB, 1), (CAROL, 1)]


WHITELIST = (
    "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
    "<value>http://jabber.org/protocol/pubsub#node_config</value></field>"
    "<field var='pubsub#access_model'><value>whitelist</value></field></x>"
)


def whitelisted() -> Tweets:
    """Alice posted, then made her node a whitelist (Bob on it, Carol not);
    both follow her."""
    tweets = Tweets()
    tweets.say(ALICE, "post private")
    owner = "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>{}</pubsub>"
    configure = owner.format(f"<configure node='{ALICE_NODE}'>{WHITELIST}</configure>")
    assert tweets.iq(ALICE, "set", configure).get("type") == "result"
    member = f"<affiliations node='{ALICE_NODE}'><affiliation jid='{BOB}' affiliation='member'/>"
    assert tweets.iq(ALICE, "set", owner.format(member + "</affiliations>")).get("type") == "result"
    for follower in (BOB, CAROL):
        tweets.say(follower, f"follow {ALICE}")
    return tweets


def test_a_whitelist_nodes_posts_are_listed_only_to_those_on_it() -> None:
    tweets = whitelisted()
    assert tweets.say(CAROL, f"posts {ALICE}") == "Error: the node is on a whitelist"
    assert tweets.say(CAROL, "timeline") == "Your timeline is empty."
    assert tweets.say(BOB, f"posts {ALICE}").splitlines()[1:] == [
        "alice@localhost: private (#1, 1970-01-01T00:00:00Z)"
    ]
    assert len(tweets.say(BOB, "timeline").splitlines()) == 2


def test_a_whitelist_nodes_posts_reach_only_the_followers_on_it() -> None:
    tweets = whitelisted()
    tweets.server.clear()
    assert tweets.say(ALICE, "post more") == "Posted #2 to 1 follower(s)."
    assert chats_to(tweets, BOB) == [(ALICE_ADDRESS, "more")]
    assert chats_to(tweets, CAROL) == []


def test_a_whitelist_nodes_latest_post_is_no_status_for_others() -> None:
    tweets = whitelisted()
    probe = "<presence type='probe' from='{}/x' to='alice\\40localhost@tweeter.localhost'/>"
    (carol,) = tweets.deliver(probe.format(CAROL))
    assert carol.find("c:status", NS) is None
    (bob,) = tweets.deliver(probe.format(BOB))
    assert text_of(bob, "c:status") == "private"


LONG = "a" * 990 + "@localhost"  # 1,000 bytes: served
TOO_LONG = "a" * 991 + "@localhost"


def test_a_jid_over_a_thousand_bytes_is_not_acceptable() -> None:
    tweets = Tweets()
    assert tweets.say(LONG, f"follow {ALICE}") == f"You now follow {ALICE}."
    refusal = "is too long: the tweeter serves JIDs of at most 1000 bytes."
    assert tweets.say(ALICE, f"follow {TOO_LONG}").endswith(refusal)
    assert tweets.say(TOO_LONG, f"follow {ALICE}").endswith(refusal)
    reply = tweets.iq(TOO_LONG, "get", "<query xmlns='jabber:iq:register'/>")
    assert error_of(reply)[:2] == ("modify", "not-acceptable")
    subscribe = f"<presence type='subscribe' from='{TOO_LONG}' to='{ALICE_ADDRESS}'/>"
    (answer,) = tweets.deliver(subscribe)
    assert error_of(answer)[:2] == ("modify", "not-acceptable")
    assert done(tweets.handler.store.followers(ALICE)) == [LONG]
