"""Followers get the posts; presence subscriptions follow and unfollow."""

from __future__ import annotations

import pytest
from lxml import etree
from tweeter_kit import ALICE, ALICE_ADDRESS, BOB, CAROL, DOMAIN, Tweets, error_of, text_of
from twisted.logger import capturedLogs

from empc import NotConnected


@pytest.fixture
def tweets() -> Tweets:
    return Tweets()


def notifications(sent: list[etree._Element]) -> list[tuple[str | None, str | None, str]]:
    """(to, from, body) of the chat messages not answering a command."""
    return [
        (s.get("to"), s.get("from"), text_of(s, "c:body"))
        for s in sent
        if s.get("type") == "chat" and s.get("from") != DOMAIN
    ]


def test_each_follower_gets_each_post_from_the_authors_address(tweets: Tweets) -> None:
    tweets.say(BOB, "follow alice@localhost")
    tweets.say(CAROL, "follow alice@localhost")
    sent = tweets.chat(ALICE, "post Hello, followers!")
    assert notifications(sent) == [
        ("bob@localhost", ALICE_ADDRESS, "Hello, followers!"),
        ("carol@localhost", ALICE_ADDRESS, "Hello, followers!"),
    ]
    for message in sent:
        assert message.get("type") == "chat"
        assert etree.QName(message).namespace == "jabber:component:accept"
    # The author's answer comes too, and only to her.
    assert [s.get("to") for s in sent if s.get("from") == DOMAIN] == ["alice@localhost/phone"]


def test_notifications_carry_an_id(tweets: Tweets) -> None:
    tweets.say(BOB, "follow alice@localhost")
    sent = tweets.chat(ALICE, "post hi")
    assert [s.get("id") for s in sent if s.get("to") == BOB] == ["tweeter-1"]


def test_no_notification_after_unfollowing(tweets: Tweets) -> None:
    tweets.say(BOB, "follow alice@localhost")
    tweets.say(BOB, "unfollow alice@localhost")
    assert notifications(tweets.chat(ALICE, "post anyone?")) == []


def test_followers_of_others_get_nothing(tweets: Tweets) -> None:
    tweets.say(BOB, "follow carol@localhost")
    assert notifications(tweets.chat(ALICE, "post hi")) == []


def test_a_rejected_post_notifies_nobody(tweets: Tweets) -> None:
    tweets.say(BOB, "follow alice@localhost")
    assert notifications(tweets.chat(ALICE, "post " + "x" * 300)) == []


class DroppedLink:
    """A link that dropped after the stanza came in: nothing more goes out."""

    def send(self, stanza: etree._Element) -> None:
        raise NotConnected("the link dropped")

    def send_result(self, iq_id: str | None, to: str | None, sender: str | None) -> None:
        raise NotConnected("the link dropped")


def test_a_lost_link_loses_notifications_not_the_post(tweets: Tweets) -> None:
    tweets.say(BOB, "follow alice@localhost")
    tweets.server.component.link(DroppedLink())
    with capturedLogs():
        tweets.chat(ALICE, "post while offline")
    assert [post.text for post in tweets.posts(ALICE)] == ["while offline"]


# -- presence ------------------------------------------------------------------


def presence(kind: str, sender: str = BOB, to: str = ALICE_ADDRESS) -> str:
    return f"<presence type='{kind}' from='{sender}' to='{to}'/>"


def described(sent: list[etree._Element]) -> list[tuple[str | None, ...]]:
    return [(s.get("type"), s.get("from"), s.get("to")) for s in sent]


def test_subscribing_to_a_users_address_follows_the_user(tweets: Tweets) -> None:
    sent = tweets.deliver(presence("subscribe"))
    assert described(sent) == [
        ("subscribed", ALICE_ADDRESS, BOB),
        (None, ALICE_ADDRESS, BOB),
    ]
    assert tweets.say(BOB, "following").splitlines() == ["You follow 1 user(s):", ALICE]
    assert notifications(tweets.chat(ALICE, "post hi")) == [(BOB, ALICE_ADDRESS, "hi")]


def test_the_available_presence_shows_the_latest_post(tweets: Tweets) -> None:
    tweets.say(ALICE, "post first")
    tweets.say(ALICE, "post latest")
    available = tweets.deliver(presence("subscribe"))[1]
    assert text_of(available, "c:status") == "latest"


def test_subscribing_again_is_harmless(tweets: Tweets) -> None:
    tweets.deliver(presence("subscribe"))
    sent = tweets.deliver(presence("subscribe", sender="bob@localhost/phone"))
    assert described(sent)[0] == ("subscribed", ALICE_ADDRESS, BOB)
    assert tweets.say(ALICE, "followers").splitlines() == ["1 user(s) follow you:", BOB]


def test_unsubscribing_unfollows(tweets: Tweets) -> None:
    tweets.deliver(presence("subscribe"))
    sent = tweets.deliver(presence("unsubscribe"))
    assert described(sent) == [
        ("unsubscribed", ALICE_ADDRESS, BOB),
        ("unavailable", ALICE_ADDRESS, BOB),
    ]
    assert tweets.say(BOB, "following").startswith("You follow nobody")


def test_unsubscribing_when_not_following(tweets: Tweets) -> None:
    assert described(tweets.deliver(presence("unsubscribe")))[0] == (
        "unsubscribed",
        ALICE_ADDRESS,
        BOB,
    )


def test_a_probe_gets_presence_available(tweets: Tweets) -> None:
    tweets.say(ALICE, "post status")
    (available,) = tweets.deliver(presence("probe"))
    assert described([available]) == [(None, ALICE_ADDRESS, BOB)]
    assert text_of(available, "c:status") == "status"
    (available,) = tweets.deliver(presence("probe", to="carol\\40localhost@tweeter.localhost"))
    assert available.find("{jabber:component:accept}status") is None


def test_the_service_itself_can_be_in_a_roster(tweets: Tweets) -> None:
    sent = tweets.deliver(presence("subscribe", to=DOMAIN))
    assert described(sent) == [("subscribed", DOMAIN, BOB), (None, DOMAIN, BOB)]
    assert described(tweets.deliver(presence("probe", to=DOMAIN))) == [(None, DOMAIN, BOB)]
    assert tweets.say(BOB, "following").startswith("You follow nobody")
    sent = tweets.deliver(presence("unsubscribe", to=DOMAIN))
    assert described(sent) == [("unsubscribed", DOMAIN, BOB), ("unavailable", DOMAIN, BOB)]


def test_subscribing_to_an_unknown_user_follows_them(tweets: Tweets) -> None:
    unknown = "zed\\40elsewhere.example@tweeter.localhost"
    assert described(tweets.deliver(presence("subscribe", to=unknown)))[0] == (
        "subscribed",
        unknown,
        BOB,
    )
    assert tweets.say(BOB, "following").splitlines()[1] == "zed@elsewhere.example"


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe", "probe"])
@pytest.mark.parametrize(
    "address", ["nobody@tweeter.localhost", "a\\20b\\40localhost@tweeter.localhost"]
)
def test_an_invalid_address_gets_an_error(tweets: Tweets, kind: str, address: str) -> None:
    (error,) = tweets.deliver(presence(kind, to=address))
    assert etree.QName(error).localname == "presence"
    assert (error.get("from"), error.get("to")) == (address, BOB)
    assert error_of(error)[:2] == ("modify", "jid-malformed")
    assert tweets.say(BOB, "following").startswith("You follow nobody")


def test_following_yourself_by_presence_is_refused(tweets: Tweets) -> None:
    (error,) = tweets.deliver(presence("subscribe", sender=ALICE))
    assert error_of(error)[:2] == ("cancel", "not-allowed")


@pytest.mark.parametrize("kind", ["subscribed", "unsubscribed", "unavailable", "error"])
def test_other_presences_are_ignored(tweets: Tweets, kind: str) -> None:
    assert tweets.deliver(presence(kind)) == []
    assert tweets.deliver(f"<presence from='{BOB}/phone' to='{ALICE_ADDRESS}'/>") == []
