"""Registration (a display name, and who may follow), follow requests, and
the commands as XEP-0050 ad-hoc commands."""

from __future__ import annotations

import pytest
from lxml import etree
from tweeter.store import Profile
from tweeter_kit import ADMIN, ALICE, ALICE_ADDRESS, BOB, CAROL, DOMAIN, NS, Tweets, text_of

REGISTER = "<query xmlns='jabber:iq:register'>{}</query>"
PROFILE_FORM = (
    "<x xmlns='jabber:x:data' type='submit'>"
    "<field var='FORM_TYPE'><value>jabber:iq:register</value></field>"
    "<field var='name'><value>{name}</value></field>"
    "<field var='auto_accept'><value>{auto}</value></field></x>"
)


@pytest.fixture
def tweets() -> Tweets:
    return Tweets()


def register(tweets: Tweets, user: str, name: str, auto_accept: bool = True) -> None:
    form = PROFILE_FORM.format(name=name, auto="1" if auto_accept else "0")
    reply = tweets.iq(user, "set", REGISTER.format(form))
    assert reply.get("type") == "result", etree.tostring(reply)


def sent_to(stanzas: list[etree._Element], user: str) -> list[etree._Element]:
    return [s for s in stanzas if (s.get("to") or "").split("/")[0] == user]


# Registration


def test_the_registration_form_asks_for_a_name_and_the_follow_policy(tweets: Tweets) -> None:
    query = tweets.iq(BOB, "get", REGISTER.format(""))[0]
    fields = query.xpath("x:x/x:field/@var", namespaces=NS)
    assert fields == ["FORM_TYPE", "name", "auto_accept"]
    assert query.find("{jabber:iq:register}nick") is not None  # for old clients
    assert query.find("{jabber:iq:register}registered") is None


def test_a_registered_user_sees_the_profile_on_file(tweets: Tweets) -> None:
    register(tweets, BOB, "Bob the Builder", auto_accept=False)
    assert tweets.profile(BOB) == Profile(BOB, "Bob the Builder", False)
    query = tweets.iq(BOB, "get", REGISTER.format(""))[0]
    assert query.find("{jabber:iq:register}registered") is not None
    assert text_of(query, "r:nick") == "Bob the Builder"
    assert text_of(query, "x:x/x:field[@var='auto_accept']/x:value") == "0"


def test_an_old_client_registers_with_a_nick(tweets: Tweets) -> None:
    reply = tweets.iq(BOB, "set", REGISTER.format("<nick>Bobby</nick>"))
    assert reply.get("type") == "result"
    assert tweets.profile(BOB) == Profile(BOB, "Bobby", True)


def test_removing_the_registration_forgets_the_profile(tweets: Tweets) -> None:
    register(tweets, BOB, "Bob")
    assert tweets.iq(BOB, "set", REGISTER.format("<remove/>")).get("type") == "result"
    assert tweets.profile(BOB) is None


def test_the_display_name_is_the_nickname_of_the_user_s_address(tweets: Tweets) -> None:
    register(tweets, ALICE, "Alice L.")
    (presence,) = tweets.deliver(
        f"<presence type='probe' from='{BOB}/phone' to='{ALICE_ADDRESS}'/>"
    )
    assert text_of(presence, "nick:nick") == "Alice L."


# Follow requests


def test_a_user_who_accepts_by_hand_is_asked_first(tweets: Tweets) -> None:
    register(tweets, ALICE, "Alice", auto_accept=False)
    stanzas = tweets.chat(BOB, "follow alice@localhost")
    (answer,) = sent_to(stanzas, BOB)
    assert text_of(answer, "c:body") == (
        "alice@localhost accepts followers by hand: your request was sent."
    )
    (asked,) = sent_to(stanzas, ALICE)
    assert text_of(asked, "c:body") == (
        "bob@localhost asks to follow you. Send 'accept bob@localhost' or 'refuse bob@localhost'."
    )
    assert tweets.say(BOB, "following").startswith("You follow nobody")
    assert tweets.say(ALICE, "requests") == "1 user(s) ask to follow you:\nbob@localhost"


def test_accepting_a_request_makes_a_follower_and_tells_him(tweets: Tweets) -> None:
    register(tweets, ALICE, "Alice", auto_accept=False)
    tweets.chat(BOB, "follow alice@localhost")
    stanzas = tweets.chat(ALICE, "accept bob@localhost")
    assert [text_of(s, "c:body") for s in sent_to(stanzas, ALICE)] == [
        "bob@localhost now follows you."
    ]
    told, subscribed, available = sent_to(stanzas, BOB)
    assert text_of(told, "c:body") == (
        "alice@localhost accepted your request: you now follow alice@localhost."
    )
    assert (subscribed.get("type"), subscribed.get("from")) == ("subscribed", ALICE_ADDRESS)
    assert (available.get("type"), available.get("from")) == (None, ALICE_ADDRESS)
    assert text_of(available, "nick:nick") == "Alice"
    assert tweets.say(BOB, "following") == "You follow 1 user(s):\nalice@localhost"
    assert tweets.say(ALICE, "requests") == "Nobody asks to follow you."


def test_refusing_a_request_tells_him_too(tweets: Tweets) -> None:
    register(tweets, ALICE, "Alice", auto_accept=False)
    tweets.chat(BOB, "follow alice@localhost")
    stanzas = tweets.chat(ALICE, "refuse bob@localhost")
    told, unsubscribed = sent_to(stanzas, BOB)
    assert text_of(told, "c:body") == "alice@localhost declined your request to follow them."
    assert unsubscribed.get("type") == "unsubscribed"
    assert tweets.say(BOB, "following").startswith("You follow nobody")


def test_answering_a_request_nobody_made_says_so(tweets: Tweets) -> None:
    assert tweets.say(ALICE, "accept carol@localhost") == (
        "carol@localhost does not ask to follow you."
    )


def test_a_presence_subscription_waits_for_the_answer(tweets: Tweets) -> None:
    register(tweets, ALICE, "Alice", auto_accept=False)
    stanzas = tweets.deliver(f"<presence type='subscribe' from='{BOB}' to='{ALICE_ADDRESS}'/>")
    assert sent_to(stanzas, BOB) == []
    assert len(sent_to(stanzas, ALICE)) == 1  # the question
    stanzas = tweets.chat(ALICE, "accept bob@localhost")
    assert "subscribed" in [s.get("type") for s in sent_to(stanzas, BOB)]


# The same commands over XEP-0050


def execute(
    tweets: Tweets, user: str, node: str, form: str = "", session: str = ""
) -> etree._Element:
    attributes = f" node='{node}'" + (f" sessionid='{session}'" if session else "")
    reply = tweets.iq(user, "set", f"<command xmlns='{NS['cmd']}'{attributes}>{form}</command>")
    assert reply.get("type") == "result", etree.tostring(reply)
    return reply[0]


def test_post_is_an_ad_hoc_command_with_a_form(tweets: Tweets) -> None:
    tweets.chat(BOB, "follow alice@localhost")
    asked = execute(tweets, ALICE, "post")
    assert asked.get("status") == "executing"
    assert asked.xpath("x:x/x:field/@var", namespaces=NS) == ["text"]
    form = "<x xmlns='jabber:x:data' type='submit'><field var='text'><value>Hi</value></field></x>"
    done = execute(tweets, ALICE, "post", form, asked.get("sessionid") or "")
    assert done.get("status") == "completed"
    assert text_of(done, "cmd:note") == "Posted #1 to 1 follower(s)."


def test_the_statistics_are_a_table_for_admins(tweets: Tweets) -> None:
    tweets.chat(BOB, "follow alice@localhost")
    tweets.chat(CAROL, "follow alice@localhost")
    tweets.chat(ALICE, "post hello")
    done = execute(tweets, ADMIN, "stats")
    assert text_of(done, "x:x/x:title") == "Service statistics: 3 users, 1 posts"
    rows = [
        [value.text for value in item.iterfind("{jabber:x:data}field/{jabber:x:data}value")]
        for item in done.iterfind("{jabber:x:data}x/{jabber:x:data}item")
    ]
    assert rows == [
        ["alice@localhost", "1", "2", "0"],
        ["bob@localhost", "0", "0", "1"],
        ["carol@localhost", "0", "0", "1"],
    ]


def test_the_statistics_are_forbidden_to_others(tweets: Tweets) -> None:
    reply = tweets.iq(BOB, "set", f"<command xmlns='{NS['cmd']}' node='stats'/>")
    assert reply.get("type") == "error"
    assert reply.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}forbidden") is not None
    assert reply.get("from") == DOMAIN


@pytest.mark.parametrize("sender", ["evil.example", DOMAIN, f"bob\\40evil.example@{DOMAIN}"])
def test_a_server_or_an_address_at_the_component_runs_no_command(
    tweets: Tweets, sender: str
) -> None:
    (reply,) = tweets.deliver(
        f"<iq type='set' from='{sender}' id='c1'><command xmlns='{NS['cmd']}' node='post'/></iq>"
    )
    assert reply.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}forbidden") is not None
    assert tweets.posts(BOB) == []


def test_unfollowing_withdraws_a_pending_request(tweets: Tweets) -> None:
    register(tweets, ALICE, "Alice", auto_accept=False)
    tweets.chat(BOB, "follow alice@localhost")
    assert tweets.say(BOB, "unfollow alice@localhost") == (
        "Your request to follow alice@localhost is withdrawn."
    )
    assert tweets.say(ALICE, "requests") == "Nobody asks to follow you."


def test_an_unsubscribe_withdraws_a_pending_request(tweets: Tweets) -> None:
    register(tweets, ALICE, "Alice", auto_accept=False)
    tweets.deliver(f"<presence type='subscribe' from='{BOB}' to='{ALICE_ADDRESS}'/>")
    tweets.deliver(f"<presence type='unsubscribe' from='{BOB}' to='{ALICE_ADDRESS}'/>")
    assert tweets.say(ALICE, "requests") == "Nobody asks to follow you."


def test_accepting_followers_without_asking_accepts_those_waiting(tweets: Tweets) -> None:
    register(tweets, ALICE, "Alice", auto_accept=False)
    tweets.chat(BOB, "follow alice@localhost")
    register(tweets, ALICE, "Alice", auto_accept=True)
    assert tweets.say(BOB, "following") == "You follow 1 user(s):\nalice@localhost"
    assert tweets.say(ALICE, "requests") == "Nobody asks to follow you."


def test_a_server_cannot_register(tweets: Tweets) -> None:
    form = PROFILE_FORM.format(name="Server", auto="1")
    (reply,) = tweets.deliver(
        f"<iq type='set' from='localhost' id='r1'>{REGISTER.format(form)}</iq>"
    )
    assert reply.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}forbidden") is not None


def test_another_spelling_of_a_user_s_address_is_refused(tweets: Tweets) -> None:
    (reply,) = tweets.deliver(
        f"<presence type='subscribe' from='{BOB}' to='alice\\40localhost\\2fphone@{DOMAIN}'/>"
    )
    assert reply.get("type") == "error"
