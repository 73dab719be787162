"""The chat interface: every command, every mistake."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree
from tweeter.commands import PostForm, TimelineForm, UserForm
from tweeter_kit import ADMIN, ALICE, ALICE_ADDRESS, BOB, CAROL, DOMAIN, Tweets, text_of
from twisted.internet.defer import Deferred, fail

from empc.commands import CANCEL_HINT
from empc.forms import Field


def question(field: Field[Any]) -> str:
    return f"{field.prompt()}\n{CANCEL_HINT}"


@pytest.fixture
def tweets() -> Tweets:
    return Tweets()


def test_help_lists_one_command_per_line(tweets: Tweets) -> None:
    lines = tweets.say(BOB, "help").splitlines()
    commands = [line.split()[0].rstrip(":") for line in lines[1:]]
    expected = ["post", "delete", "follow", "unfollow", "timeline", "posts", "following"]
    expected += ["followers"]
    answering = ["requests", "accept", "refuse"]
    assert commands == [*expected, *answering, "help", "cancel"]


def test_help_shows_the_admin_command_to_admins_only(tweets: Tweets) -> None:
    assert "stats: Service statistics" in tweets.say(ADMIN, "help").splitlines()
    assert "stats" not in tweets.say(BOB, "help")


def test_commands_are_case_insensitive(tweets: Tweets) -> None:
    assert tweets.say(BOB, "HELP") == tweets.say(BOB, "Help")
    assert tweets.say(BOB, "Follow alice@localhost") == "You now follow alice@localhost."
    assert tweets.say(ALICE, "POST Hi") == "Posted #1 to 1 follower(s)."


def test_the_answer_keeps_the_id_and_the_thread(tweets: Tweets) -> None:
    (answer,) = tweets.deliver(
        "<message type='chat' from='bob@localhost/phone' id='abc'>"
        "<body>help</body><thread parent='p1'>t1</thread></message>"
    )
    assert answer.get("id") == "abc"
    assert answer.get("to") == "bob@localhost/phone"
    assert answer.get("from") == DOMAIN
    assert text_of(answer, "c:thread") == "t1"
    assert text_of(answer, "c:thread[@parent='p1']") == "t1"


def test_post(tweets: Tweets) -> None:
    assert tweets.say(ALICE, "post   Hello, world!  ") == "Posted #1 to 0 follower(s)."
    assert tweets.say(ALICE, "post second") == "Posted #2 to 0 follower(s)."
    assert [(p.author, p.text) for p in tweets.posts(ALICE)] == [
        (ALICE, "second"),
        (ALICE, "Hello, world!"),
    ]


def test_post_counts_followers(tweets: Tweets) -> None:
    tweets.say(BOB, "follow alice@localhost")
    tweets.say(CAROL, "follow alice@localhost")
    assert tweets.say(ALICE, "post hi") == "Posted #1 to 2 follower(s)."


def test_post_of_280_characters_after_stripping(tweets: Tweets) -> None:
    assert tweets.say(ALICE, "post  " + "é" * 280 + "  ") == "Posted #1 to 0 follower(s)."


def test_post_keeps_inner_lines(tweets: Tweets) -> None:
    tweets.say(ALICE, "post first line\nsecond line")
    assert tweets.posts(ALICE)[0].text == "first line\nsecond line"


@pytest.mark.parametrize("text", ["post", "post   ", "POST\n\t"])
def test_post_without_text_asks_for_it(tweets: Tweets, text: str) -> None:
    assert tweets.say(ALICE, text) == question(PostForm.text)
    assert tweets.say(ALICE, "Hello, world!") == "Posted #1 to 0 follower(s)."


def test_a_question_may_be_canceled(tweets: Tweets) -> None:
    tweets.say(ALICE, "post")
    assert tweets.say(ALICE, "cancel") == "Canceled."
    assert tweets.say(ALICE, "posts") == "You have not posted yet."


def test_post_too_long(tweets: Tweets) -> None:
    answer = tweets.say(ALICE, "post " + "x" * 281)
    assert answer == "Error: a post has at most 280 characters; this one has 281."
    assert tweets.posts(ALICE) == []


def test_follow_and_unfollow(tweets: Tweets) -> None:
    assert tweets.say(BOB, "follow alice@localhost") == "You now follow alice@localhost."
    assert tweets.say(BOB, "follow Alice@LOCALHOST/home") == "You already follow alice@localhost."
    assert tweets.say(BOB, "unfollow alice@localhost") == "You no longer follow alice@localhost."
    assert tweets.say(BOB, "unfollow alice@localhost") == "You do not follow alice@localhost."


def test_follow_by_the_address_at_the_component(tweets: Tweets) -> None:
    assert tweets.say(BOB, f"follow {ALICE_ADDRESS}") == "You now follow alice@localhost."


def test_follow_yourself(tweets: Tweets) -> None:
    assert tweets.say(BOB, "follow bob@localhost/other") == "Error: you cannot follow yourself."
    assert tweets.say(BOB, "following").startswith("You follow nobody")


@pytest.mark.parametrize("command", ["follow", "unfollow"])
@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("localhost", "'localhost' is a server, not a user: give a JID like alice@localhost."),
        ("alice@", "'alice@' is not a valid JID."),
        ("@localhost", "'@localhost' is not a valid JID."),
        ("a<b@localhost", "'a<b@localhost' is not a valid JID."),
        ("alice@localhost/", "'alice@localhost/' is not a valid JID."),
        ("alice@localhost bob@localhost", "give one JID: '{c} <jid>', e.g. {c} alice@localhost"),
        ("nobody@tweeter.localhost", "'nobody@tweeter.localhost' is not a user's address at"),
    ],
)
def test_follow_with_a_bad_jid(tweets: Tweets, command: str, argument: str, expected: str) -> None:
    answer = tweets.say(BOB, f"{command} {argument}")
    assert answer.startswith("Error: " + expected.format(c=command))
    assert "\n" not in answer


def test_timeline(tweets: Tweets) -> None:
    tweets.say(BOB, "follow alice@localhost")
    tweets.say(BOB, "follow carol@localhost")
    tweets.say(ALICE, "post one")
    tweets.server.advance(90)
    tweets.say(CAROL, "post two\n  lines")
    tweets.say(BOB, "post mine")  # not in Bob's own timeline
    tweets.say(ALICE, "post three")
    assert tweets.say(BOB, "timeline").splitlines() == [
        "Timeline (3 posts):",
        "alice@localhost: three (#4, 1970-01-01T00:01:30Z)",
        "carol@localhost: two lines (#2, 1970-01-01T00:01:30Z)",
        "alice@localhost: one (#1, 1970-01-01T00:00:00Z)",
    ]
    assert tweets.say(BOB, "timeline 2").splitlines()[0] == "Timeline (2 posts):"
    assert tweets.say(CAROL, "timeline") == "Your timeline is empty."


def test_timeline_default_and_maximum(tweets: Tweets) -> None:
    tweets.say(BOB, "follow alice@localhost")
    for number in range(60):
        tweets.say(ALICE, f"post {number}")
    default = tweets.say(BOB, "timeline").splitlines()
    assert default[0] == "Timeline (10 posts):"
    assert default[1].startswith("alice@localhost: 59 (#60, ")
    assert tweets.say(BOB, "timeline 50").splitlines()[0] == "Timeline (50 posts):"
    assert tweets.say(BOB, "timeline 500").splitlines()[0] == "Timeline (50 posts):"
    assert len(tweets.say(BOB, "timeline 1").splitlines()) == 2


@pytest.mark.parametrize("argument", ["0", "-1", "abc", "2 3", "1.5", "٣"])
def test_timeline_with_a_bad_number_asks_again(tweets: Tweets, argument: str) -> None:
    error, *asked = tweets.say(BOB, f"timeline {argument}").splitlines()
    assert error.startswith("Error: ")
    assert "\n".join(asked) == question(TimelineForm.count)
    assert tweets.say(BOB, "3") == "Your timeline is empty."


@pytest.mark.parametrize("command", ["follow", "unfollow"])
def test_follow_without_a_jid_asks_for_it(tweets: Tweets, command: str) -> None:
    assert tweets.say(BOB, command) == question(UserForm.user)
    assert tweets.say(BOB, "alice@localhost").endswith("alice@localhost.")


def test_posts(tweets: Tweets) -> None:
    assert tweets.say(ALICE, "posts") == "You have not posted yet."
    assert tweets.say(BOB, "posts alice@localhost") == "alice@localhost has not posted yet."
    tweets.say(ALICE, "post hello")
    assert tweets.say(BOB, "posts alice@localhost").splitlines() == [
        "Posts of alice@localhost (1 posts):",
        "alice@localhost: hello (#1, 1970-01-01T00:00:00Z)",
    ]
    assert tweets.say(ALICE, "posts").splitlines()[0] == "Posts of alice@localhost (1 posts):"
    assert tweets.say(BOB, "posts nope").startswith("Error: 'nope' is a server")


def test_following_and_followers(tweets: Tweets) -> None:
    assert tweets.say(BOB, "following") == (
        "You follow nobody yet. Send 'follow <jid>' to follow someone."
    )
    assert tweets.say(ALICE, "followers") == "Nobody follows you yet."
    tweets.say(BOB, "follow carol@localhost")
    tweets.say(BOB, "follow alice@localhost")
    tweets.say(CAROL, "follow alice@localhost")
    assert tweets.say(BOB, "following").splitlines() == [
        "You follow 2 user(s):",
        "alice@localhost",
        "carol@localhost",
    ]
    assert tweets.say(ALICE, "followers").splitlines() == [
        "2 user(s) follow you:",
        "bob@localhost",
        "carol@localhost",
    ]


@pytest.mark.parametrize("command", ["following", "followers"])
def test_following_and_followers_take_no_argument(tweets: Tweets, command: str) -> None:
    answer = tweets.say(BOB, f"{command} alice@localhost")
    assert answer == f"Error: '{command}' takes no argument; send just '{command}'."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tweet hello", "Error: unknown command 'tweet'. Send 'help' for the list of commands."),
        ("  ", "Error: this message is empty. Send 'help' for the list of commands."),
        ("", "Error: this message is empty. Send 'help' for the list of commands."),
        ("x" * 100, f"Error: unknown command '{'x' * 30}...'. Send 'help' for the list"),
    ],
)
def test_unknown_and_empty_commands(tweets: Tweets, text: str, expected: str) -> None:
    assert tweets.say(BOB, text).startswith(expected)


@pytest.mark.parametrize(
    "stanza",
    [
        "<message type='chat' from='bob@localhost/phone'/>",
        "<message type='chat' from='bob@localhost/phone'><composing"
        " xmlns='http://jabber.org/protocol/chatstates'/></message>",
        "<message from='bob@localhost/phone'><body>help</body></message>",
        "<message type='normal' from='bob@localhost/phone'><body>help</body></message>",
        "<message type='groupchat' from='bob@localhost/phone'><body>help</body></message>",
        "<message type='headline' from='bob@localhost/phone'><body>help</body></message>",
        "<message type='error' from='bob@localhost/phone'><body>help</body></message>",
        "<message type='chat' from='localhost'><body>help</body></message>",
        "<message type='chat' from='x@tweeter.localhost'><body>help</body></message>",
    ],
)
def test_ignored_messages(tweets: Tweets, stanza: str) -> None:
    assert tweets.deliver(stanza) == []


def test_a_message_to_a_users_address_is_not_relayed(tweets: Tweets) -> None:
    (answer,) = tweets.chat(BOB, "nice post!", to=ALICE_ADDRESS)
    assert answer.get("from") == ALICE_ADDRESS
    assert answer.get("to") == "bob@localhost/phone"
    assert text_of(answer, "c:body") == (
        "Error: this address only relays the posts of alice@localhost; your message was not"
        " delivered. Send commands to tweeter.localhost."
    )
    (answer,) = tweets.chat(BOB, "help", to="nobody@tweeter.localhost")
    assert text_of(answer, "c:body") == (
        "Error: nobody@tweeter.localhost is nobody's address. Send commands to tweeter.localhost."
    )


def test_a_failing_store_gets_an_answer_too(
    tweets: Tweets, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(user: str) -> Deferred[list[str]]:
        return fail(OSError("disk on fire"))

    monkeypatch.setattr(tweets.handler.store, "following", broken)
    answer = tweets.say(BOB, "timeline")
    assert answer == "Error: something went wrong on our side; please try again later."


def test_replies_are_chat_messages_from_the_component(tweets: Tweets) -> None:
    (answer,) = tweets.chat(BOB, "help")
    assert etree.QName(answer).localname == "message"
    assert answer.get("type") == "chat"
