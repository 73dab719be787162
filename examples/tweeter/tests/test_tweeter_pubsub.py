"""The microblog nodes (XEP-0060, XEP-0277), served by empc.pubsub, and
service discovery."""

from __future__ import annotations

import pytest
from lxml import etree
from tweeter_kit import ALICE, ALICE_NODE, BOB, CAROL, DOMAIN, NS, Tweets, done, error_of, text_of

PUBSUB = "http://jabber.org/protocol/pubsub"
ATOM = "http://www.w3.org/2005/Atom"
MICROBLOG = "urn:xmpp:microblog:0"


@pytest.fixture
def tweets() -> Tweets:
    return Tweets()


def pubsub(inner: str) -> str:
    return f"<pubsub xmlns='{PUBSUB}'>{inner}</pubsub>"


def subscribe(
    tweets: Tweets, user: str = BOB, jid: str = BOB, node: str = ALICE_NODE
) -> etree._Element:
    return tweets.iq(user, "set", pubsub(f"<subscribe node='{node}' jid='{jid}'/>"))


def entry(title: str) -> str:
    return f"<entry xmlns='{ATOM}'><title type='text'>{title}</title></entry>"


def publish(tweets: Tweets, user: str, item: str, node: str = ALICE_NODE) -> etree._Element:
    return tweets.iq(user, "set", pubsub(f"<publish node='{node}'>{item}</publish>"))


def xpath(element: etree._Element, expression: str) -> list[etree._Element]:
    found = element.xpath(expression, namespaces=NS)
    assert isinstance(found, list)
    return [item for item in found if isinstance(item, etree._Element)]


def events(sent: list[etree._Element]) -> list[etree._Element]:
    return [s for s in sent if xpath(s, "self::c:message/ev:event")]


# -- discovery -------------------------------------------------------------------


def test_disco_items_lists_the_nodes_of_users_who_posted(tweets: Tweets) -> None:
    query = "<query xmlns='http://jabber.org/protocol/disco#items'/>"
    assert xpath(tweets.iq(BOB, "get", query), "dit:query/dit:item") == []
    tweets.say(CAROL, "post c")
    tweets.say(ALICE, "post a")
    items = xpath(tweets.iq(BOB, "get", query), "dit:query/dit:item")
    assert [(i.get("jid"), i.get("node"), i.get("name")) for i in items] == [
        (DOMAIN, ALICE_NODE, "alice@localhost's microblog"),
        (DOMAIN, "urn:xmpp:microblog:0:carol@localhost", "carol@localhost's microblog"),
    ]


def test_disco_items_of_a_node_lists_its_items(tweets: Tweets) -> None:
    tweets.say(ALICE, "post a")
    tweets.say(BOB, "post b")
    tweets.say(ALICE, "post c")
    reply = tweets.iq(
        BOB, "get", f"<query xmlns='http://jabber.org/protocol/disco#items' node='{ALICE_NODE}'/>"
    )
    (query,) = xpath(reply, "dit:query")
    assert query.get("node") == ALICE_NODE
    items = xpath(reply, "dit:query/dit:item")
    assert [(i.get("jid"), i.get("name")) for i in items] == [(DOMAIN, "3"), (DOMAIN, "1")]


def test_disco_info_of_a_node(tweets: Tweets) -> None:
    tweets.say(ALICE, "post a")
    reply = tweets.iq(
        BOB, "get", f"<query xmlns='http://jabber.org/protocol/disco#info' node='{ALICE_NODE}'/>"
    )
    assert reply.get("type") == "result"
    (query,) = xpath(reply, "di:query")
    assert query.get("node") == ALICE_NODE
    identities = xpath(query, "di:identity")
    assert [(i.get("category"), i.get("type"), i.get("name")) for i in identities] == [
        ("pubsub", "leaf", "alice@localhost's microblog")
    ]
    features = [f.get("var") for f in xpath(query, "di:feature")]
    assert features == [PUBSUB, MICROBLOG]
    assert xpath(query, "x:x/x:field[@var='pubsub#owner']/x:value")[0].text == ALICE


def test_a_node_exists_from_the_first_post(tweets: Tweets) -> None:
    query = f"<query xmlns='http://jabber.org/protocol/disco#info' node='{ALICE_NODE}'/>"
    assert error_of(tweets.iq(BOB, "get", query))[:2] == ("cancel", "item-not-found")
    tweets.say(ALICE, "post a")
    assert tweets.iq(BOB, "get", query).get("type") == "result"


@pytest.mark.parametrize("node", ["nope", "urn:xmpp:microblog:0:localhost", "urn:xmpp:microblog:0"])
@pytest.mark.parametrize("kind", ["info", "items"])
def test_disco_of_an_unknown_node(tweets: Tweets, node: str, kind: str) -> None:
    reply = tweets.iq(
        BOB, "get", f"<query xmlns='http://jabber.org/protocol/disco#{kind}' node='{node}'/>"
    )
    assert error_of(reply)[:2] == ("cancel", "item-not-found")


def test_disco_info_of_the_service(tweets: Tweets) -> None:
    reply = tweets.iq(BOB, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    identities = xpath(reply, "di:query/di:identity")
    assert [(i.get("category"), i.get("type")) for i in identities] == [("pubsub", "service")]
    features = {f.get("var") for f in xpath(reply, "di:query/di:feature")}
    assert {
        PUBSUB,
        f"{PUBSUB}#subscribe",
        f"{PUBSUB}#publish",
        f"{PUBSUB}#retrieve-items",
        f"{PUBSUB}#persistent-items",
        MICROBLOG,
    } <= features


# -- subscriptions -----------------------------------------------------------------


@pytest.fixture
def posted(tweets: Tweets) -> Tweets:
    """Alice has posted: her node exists."""
    tweets.say(ALICE, "post first")
    return tweets


def test_subscribe(posted: Tweets) -> None:
    tweets = posted
    reply = subscribe(tweets)
    assert reply.get("type") == "result"
    (subscription,) = xpath(reply, "p:pubsub/p:subscription")
    assert (subscription.get("node"), subscription.get("jid")) == (ALICE_NODE, BOB)
    assert subscription.get("subscription") == "subscribed"
    subscriptions = done(tweets.pubsub.subscribers(ALICE_NODE))
    assert [(s.jid, s.state) for s in subscriptions] == [(BOB, "subscribed")]


def test_subscribe_with_the_full_jid(posted: Tweets) -> None:
    tweets = posted
    reply = subscribe(tweets, jid="bob@localhost/phone")
    assert xpath(reply, "p:pubsub/p:subscription[@jid='bob@localhost/phone']")
    sent = tweets.chat(ALICE, "post hi")
    assert [s.get("to") for s in events(sent)] == ["bob@localhost/phone"]


def test_subscribe_to_a_user_who_never_posted_is_item_not_found(tweets: Tweets) -> None:
    reply = subscribe(tweets, node="urn:xmpp:microblog:0:zed@elsewhere.example")
    assert error_of(reply)[:2] == ("cancel", "item-not-found")


@pytest.mark.parametrize("jid", ["carol@localhost", "carol@localhost/phone", "localhost", "@x", ""])
def test_subscribe_for_someone_else_is_refused(tweets: Tweets, jid: str) -> None:
    assert error_of(subscribe(tweets, jid=jid)) == ("modify", "bad-request", ["invalid-jid"])
    assert error_of(tweets.iq(BOB, "set", pubsub(f"<subscribe node='{ALICE_NODE}'/>"))) == (
        "modify",
        "bad-request",
        ["invalid-jid"],
    )


def test_subscribe_without_a_node(tweets: Tweets) -> None:
    reply = tweets.iq(BOB, "set", pubsub(f"<subscribe jid='{BOB}'/>"))
    assert error_of(reply) == ("modify", "bad-request", ["nodeid-required"])


@pytest.mark.parametrize("node", ["nope", "urn:xmpp:microblog:0:not a jid"])
def test_subscribe_to_an_unknown_node(tweets: Tweets, node: str) -> None:
    assert error_of(subscribe(tweets, node=node))[:2] == ("cancel", "item-not-found")


def test_unsubscribe(posted: Tweets) -> None:
    tweets = posted
    subscribe(tweets)
    request = pubsub(f"<unsubscribe node='{ALICE_NODE}' jid='{BOB}'/>")
    reply = tweets.iq(BOB, "set", request)
    assert reply.get("type") == "result" and len(reply) == 0
    assert events(tweets.chat(ALICE, "post hi")) == []
    reply = tweets.iq(BOB, "set", request)
    assert error_of(reply) == ("cancel", "unexpected-request", ["not-subscribed"])
    reply = tweets.iq(CAROL, "set", request)
    assert error_of(reply) == ("auth", "forbidden", [])


# -- items ---------------------------------------------------------------------------


def test_items(tweets: Tweets) -> None:
    tweets.say(ALICE, "post one")
    tweets.say(BOB, "post not alice")
    tweets.server.advance(3600)
    tweets.say(ALICE, "post two")
    reply = tweets.iq(BOB, "get", pubsub(f"<items node='{ALICE_NODE}'/>"))
    (items,) = xpath(reply, "p:pubsub/p:items")
    assert items.get("node") == ALICE_NODE
    assert [item.get("id") for item in xpath(items, "p:item")] == ["3", "1"]
    (latest,) = xpath(items, "p:item[@id='3']/a:entry")
    assert text_of(latest, "a:title") == "two"
    assert text_of(latest, "a:author/a:name") == ALICE
    assert text_of(latest, "a:author/a:uri") == "xmpp:alice@localhost"
    assert text_of(latest, "a:published") == "1970-01-01T01:00:00Z"
    assert text_of(latest, "a:id") == "tag:tweeter.localhost,1970-01-01:posts-3"


def test_items_with_max_items(tweets: Tweets) -> None:
    for number in range(5):
        tweets.say(ALICE, f"post {number}")
    reply = tweets.iq(BOB, "get", pubsub(f"<items node='{ALICE_NODE}' max_items='2'/>"))
    assert [i.get("id") for i in xpath(reply, "p:pubsub/p:items/p:item")] == ["5", "4"]


def test_items_by_id(tweets: Tweets) -> None:
    tweets.say(ALICE, "post one")
    tweets.say(BOB, "post bob's")
    tweets.say(ALICE, "post two")
    reply = tweets.iq(
        BOB,
        "get",
        pubsub(f"<items node='{ALICE_NODE}'><item id='1'/><item id='2'/><item id='x'/></items>"),
    )
    assert [i.get("id") for i in xpath(reply, "p:pubsub/p:items/p:item")] == ["1"]
    reply = tweets.iq(BOB, "get", pubsub(f"<items node='{ALICE_NODE}'><item id='2'/></items>"))
    assert reply.get("type") == "result"
    assert xpath(reply, "p:pubsub/p:items/p:item") == []


def test_items_of_a_node_whose_posts_are_deleted(posted: Tweets) -> None:
    assert posted.say(ALICE, "delete 1") == "Deleted #1."
    reply = posted.iq(BOB, "get", pubsub(f"<items node='{ALICE_NODE}'/>"))
    assert reply.get("type") == "result"
    assert xpath(reply, "p:pubsub/p:items/p:item") == []


@pytest.mark.parametrize("max_items", ["-1", "many", "1.5"])
def test_items_with_a_bad_max_items(posted: Tweets, max_items: str) -> None:
    reply = posted.iq(BOB, "get", pubsub(f"<items node='{ALICE_NODE}' max_items='{max_items}'/>"))
    assert error_of(reply)[:2] == ("modify", "bad-request")


def test_items_errors(tweets: Tweets) -> None:
    reply = tweets.iq(BOB, "get", pubsub("<items/>"))
    assert error_of(reply) == ("modify", "bad-request", ["nodeid-required"])
    reply = tweets.iq(BOB, "get", pubsub("<items node='nope'/>"))
    assert error_of(reply)[:2] == ("cancel", "item-not-found")


# -- publishing ------------------------------------------------------------------------


def test_publish_posts_like_the_chat_command(tweets: Tweets) -> None:
    tweets.say(BOB, "follow alice@localhost")
    request = pubsub(f"<publish node='{ALICE_NODE}'><item>{entry(' Hello! ')}</item></publish>")
    sent = tweets.deliver(f"<iq type='set' from='alice@localhost/phone' id='q1'>{request}</iq>")
    (result,) = [s for s in sent if etree.QName(s).localname == "iq"]
    assert result.get("type") == "result"
    (item,) = xpath(result, f"p:pubsub/p:publish[@node='{ALICE_NODE}']/p:item")
    assert item.get("id") == "1"
    assert [(p.author, p.text) for p in tweets.posts(ALICE)] == [(ALICE, "Hello!")]
    chats = [s for s in sent if s.get("type") == "chat"]
    assert [(s.get("to"), text_of(s, "c:body")) for s in chats] == [(BOB, "Hello!")]
    # And it is on the timeline.
    assert tweets.say(BOB, "timeline").splitlines()[1].startswith("alice@localhost: Hello! (#1, ")


def test_a_published_post_reaches_the_subscribers(posted: Tweets) -> None:
    tweets = posted
    subscribe(tweets, user=CAROL, jid=CAROL)
    request = pubsub(f"<publish node='{ALICE_NODE}'><item>{entry('Hello!')}</item></publish>")
    (event,) = events(tweets.deliver(f"<iq type='set' from='{ALICE}/phone' id='p'>{request}</iq>"))
    assert (event.get("to"), event.get("from"), event.get("type")) == (CAROL, DOMAIN, "headline")
    (entry_element,) = xpath(
        event, f"ev:event/ev:items[@node='{ALICE_NODE}']/ev:item[@id='2']/a:entry"
    )
    assert text_of(entry_element, "a:title") == "Hello!"


def test_publish_takes_the_content_without_a_title(tweets: Tweets) -> None:
    item = f"<item><entry xmlns='{ATOM}'><content>from content</content></entry></item>"
    assert publish(tweets, ALICE, item).get("type") == "result"
    assert tweets.posts(ALICE)[0].text == "from content"


def test_publish_ignores_the_publishers_item_id(tweets: Tweets) -> None:
    reply = publish(tweets, ALICE, f"<item id='mine'>{entry('hi')}</item>")
    assert xpath(reply, "p:pubsub/p:publish/p:item[@id='1']")


def test_only_the_owner_publishes(tweets: Tweets) -> None:
    reply = publish(tweets, BOB, f"<item>{entry('impostor')}</item>")
    assert error_of(reply)[:2] == ("auth", "forbidden")
    assert tweets.posts(ALICE) == []


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("", ("modify", "bad-request", ["item-required"])),
        ("<item/>", ("modify", "bad-request", ["payload-required"])),
        (
            f"<item>{entry('a')}</item><item>{entry('b')}</item>",
            ("modify", "bad-request", ["invalid-payload"]),
        ),
        (f"<item>{entry('a')}{entry('b')}</item>", ("modify", "bad-request", ["invalid-payload"])),
        (
            "<item><entry xmlns='urn:other'><title>x</title></entry></item>",
            ("modify", "bad-request", ["invalid-payload"]),
        ),
        (f"<item>{entry('   ')}</item>", ("modify", "bad-request", ["invalid-payload"])),
        (f"<item><entry xmlns='{ATOM}'/></item>", ("modify", "bad-request", ["invalid-payload"])),
        (f"<item>{entry('x' * 281)}</item>", ("modify", "not-acceptable", ["payload-too-big"])),
    ],
)
def test_publish_errors(tweets: Tweets, item: str, expected: tuple[str, str, list[str]]) -> None:
    assert error_of(publish(tweets, ALICE, item)) == expected
    assert tweets.posts(ALICE) == []


def test_publish_to_an_unknown_node(tweets: Tweets) -> None:
    reply = publish(tweets, ALICE, f"<item>{entry('x')}</item>", node="nope")
    assert error_of(reply)[:2] == ("cancel", "item-not-found")
    reply = tweets.iq(ALICE, "set", pubsub(f"<publish><item>{entry('x')}</item></publish>"))
    assert error_of(reply) == ("modify", "bad-request", ["nodeid-required"])


def test_a_chat_post_reaches_pubsub_subscribers(posted: Tweets) -> None:
    tweets = posted
    subscribe(tweets)
    subscribe(tweets, user=CAROL, jid=CAROL)
    sent = tweets.chat(ALICE, "post via chat")
    assert sorted(s.get("to") or "" for s in events(sent)) == [BOB, CAROL]
    for event in events(sent):
        (title,) = xpath(event, "ev:event/ev:items/ev:item/a:entry/a:title")
        assert title.text == "via chat"


def test_users_create_no_nodes(tweets: Tweets) -> None:
    reply = tweets.iq(ALICE, "set", pubsub("<create node='x'/>"))
    assert error_of(reply)[:2] == ("auth", "forbidden")


def test_the_author_owns_the_node(posted: Tweets) -> None:
    owner = f"<pubsub xmlns='{PUBSUB}#owner'><affiliations node='{ALICE_NODE}'/></pubsub>"
    reply = posted.iq(ALICE, "get", owner)
    affiliations = xpath(reply, "*/*/*")
    assert [(a.get("jid"), a.get("affiliation")) for a in affiliations] == [(ALICE, "owner")]
    assert error_of(posted.iq(BOB, "get", owner))[:2] == ("auth", "forbidden")


# -- deleting ----------------------------------------------------------------------------


def test_delete_removes_the_post_everywhere(posted: Tweets) -> None:
    tweets = posted
    tweets.say(BOB, "follow alice@localhost")
    subscribe(tweets, user=CAROL, jid=CAROL)
    tweets.say(ALICE, "post second")
    sent = tweets.chat(ALICE, "delete 2")
    (retract,) = xpath(events(sent)[0], f"ev:event/ev:items[@node='{ALICE_NODE}']/ev:retract")
    assert retract.get("id") == "2"
    assert [post.text for post in tweets.posts(ALICE)] == ["first"]
    assert tweets.say(BOB, "timeline").splitlines()[1:] == [
        "alice@localhost: first (#1, 1970-01-01T00:00:00Z)"
    ]


def test_retract_by_the_author_removes_the_post_everywhere(posted: Tweets) -> None:
    tweets = posted
    tweets.say(BOB, "follow alice@localhost")
    request = pubsub(f"<retract node='{ALICE_NODE}'><item id='1'/></retract>")
    assert tweets.iq(ALICE, "set", request).get("type") == "result"
    assert tweets.say(BOB, "timeline") == "Your timeline is empty."
    assert tweets.say(ALICE, "posts") == "You have not posted yet."


def test_only_the_author_retracts(posted: Tweets) -> None:
    request = pubsub(f"<retract node='{ALICE_NODE}'><item id='1'/></retract>")
    assert error_of(posted.iq(BOB, "set", request))[:2] == ("auth", "forbidden")
    assert posted.say(BOB, "delete 1") == "Error: you have no post #1."
    assert [post.id for post in posted.posts(ALICE)] == [1]


def test_delete_of_a_post_that_is_not_there(posted: Tweets) -> None:
    assert posted.say(ALICE, "delete 7") == "Error: you have no post #7."
    assert posted.say(CAROL, "delete 1") == "Error: you have no post #1."


def test_deleted_numbers_are_not_given_again(posted: Tweets) -> None:
    posted.say(ALICE, "delete 1")
    assert posted.say(ALICE, "post again") == "Posted #2 to 0 follower(s)."


def test_delete_is_an_ad_hoc_command_too(posted: Tweets) -> None:
    asked = posted.iq(ALICE, "set", f"<command xmlns='{NS['cmd']}' node='delete'/>")
    assert asked.xpath("cmd:command/x:x/x:field/@var", namespaces=NS) == ["number"]
    session = asked[0].get("sessionid")
    form = "<x xmlns='jabber:x:data' type='submit'><field var='number'><value>1</value></field></x>"
    command = f"<command xmlns='{NS['cmd']}' node='delete' sessionid='{session}'>{form}</command>"
    finished = posted.iq(ALICE, "set", command)
    assert text_of(finished, "cmd:command/cmd:note") == "Deleted #1."
    assert posted.posts(ALICE) == []


def test_delete_takes_a_number(posted: Tweets) -> None:
    answer = posted.say(ALICE, "delete two")
    assert answer.startswith("Error: ")
    assert posted.say(ALICE, "cancel") == "Canceled."
    assert [post.id for post in posted.posts(ALICE)] == [1]


def test_an_empty_pubsub_request(tweets: Tweets) -> None:
    assert error_of(tweets.iq(ALICE, "get", pubsub("")))[:2] == ("modify", "bad-request")
