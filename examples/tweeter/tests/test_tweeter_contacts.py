"""With the server's roster permission, followed users appear in their
followers' rosters, in the "Tweeter" group; without it, nothing changes
but one line in the log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lxml import etree
from tweeter_kit import ALICE, ALICE_ADDRESS, BOB, Tweets
from twisted.logger import LogEvent, capturedLogs, formatEvent

ROSTER = "{jabber:iq:roster}"


@pytest.fixture
def tweets() -> Tweets:
    return Tweets()


@pytest.fixture
def logs() -> Iterator[list[LogEvent]]:
    with capturedLogs() as events:
        yield events  # type: ignore[misc]


def roster_sets(sent: list[etree._Element]) -> list[tuple[str | None, dict[str, str], list[str]]]:
    """(to, item attributes, groups) of each roster change sent."""
    return [
        (stanza.get("to"), {str(k): str(v) for k, v in item.items()}, [g.text or "" for g in item])
        for stanza in sent
        if stanza.get("type") == "set"
        for item in stanza.iter(f"{ROSTER}item")
    ]


def test_following_puts_the_followees_address_in_the_followers_roster(tweets: Tweets) -> None:
    tweets.server.grant(roster="both")
    sent = tweets.chat(BOB, "follow alice@localhost")
    assert roster_sets(sent) == [(BOB, {"jid": ALICE_ADDRESS, "name": ALICE}, ["Tweeter"])]


def test_unfollowing_takes_it_out(tweets: Tweets) -> None:
    tweets.server.grant(version=1, roster="set")
    tweets.say(BOB, "follow alice@localhost")
    sent = tweets.chat(BOB, "unfollow alice@localhost")
    assert roster_sets(sent) == [(BOB, {"jid": ALICE_ADDRESS, "subscription": "remove"}, [])]


def test_without_the_permission_the_log_says_so_once_and_following_works(
    tweets: Tweets, logs: list[LogEvent]
) -> None:
    sent = tweets.chat(BOB, "follow alice@localhost") + tweets.chat(BOB, "follow carol@localhost")
    assert roster_sets(sent) == []
    assert tweets.say(BOB, "following").splitlines()[0] == "You follow 2 user(s):"
    told = [formatEvent(e) for e in logs if "not put in rosters" in formatEvent(e)]
    assert len(told) == 1
    assert "roster set" in told[0]


def test_a_follower_of_another_server_keeps_their_roster(
    tweets: Tweets, logs: list[LogEvent]
) -> None:
    tweets.server.grant(roster="both")
    sent = tweets.chat("dave@elsewhere.example", "follow alice@localhost")
    assert roster_sets(sent) == []
    assert not [e for e in logs if e["log_level"].name in ("warn", "error")]


def test_a_server_that_refuses_roster_changes_is_warned_about_once(
    tweets: Tweets, logs: list[LogEvent]
) -> None:
    tweets.server.grant(roster="both")
    for followee in ("alice@localhost", "carol@localhost"):
        [request] = [s for s in tweets.chat(BOB, f"follow {followee}") if roster_sets([s])]
        tweets.deliver(
            f"<iq type='error' id='{request.get('id')}' from='{BOB}'><error type='cancel'>"
            "<internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
    warnings = [formatEvent(e) for e in logs if e["log_level"].name == "warn"]
    assert len(warnings) == 1
    assert "refused to change a roster" in warnings[0]
    assert tweets.say(BOB, "following").splitlines()[0] == "You follow 2 user(s):"
