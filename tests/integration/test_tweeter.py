"""The example microblog (examples/tweeter) against real Prosody and ejabberd.

``twistd empc`` serves ``tweeter.localhost`` with the handler
``tweeter.handlers:Tweeter`` and an SQLite file; alice, bob and carol talk
to it from real client connections the three ways the example offers: chat
commands, presence subscriptions and pubsub (XEP-0060 with XEP-0277 Atom
entries).  The component runs once per server for the whole module (it is
restarted once, by the persistence test, on the same database); each test
starts with nobody following anybody, and tells its posts apart from those
of other tests by a token of its own.
"""

from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from client import Clients, IqReply, IqType, Received, XmppClient, login_all
from component import ComponentProcess, ComponentStarter
from servers import SERVER_CLASSES, XmppServer

pytestmark = pytest.mark.integration

TWEETER = "tweeter.localhost"
HANDLER = "tweeter.handlers:Tweeter"
PUBSUB = "empc.pubsub:PubSub"
CONNECT_TIMEOUT = 20.0
WAIT = 10.0  # for what must come
QUIET = 1.0  # for what must not: how long to listen after the rest came

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_ATOM = "http://www.w3.org/2005/Atom"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_DELAY = "urn:xmpp:delay"
# Twisted's log lines of unhandled failures; empc's own errors.
LOGGED_FAILURE = r"Traceback|Unhandled|#(?:warn|error|critical)\]"
POSTED = re.compile(r"Posted #(\d+) to (\d+) follower\(s\)\.")


# -- addresses ------------------------------------------------------------------


def address(user: str) -> str:
    """The user's address at the component (XEP-0106: ``@`` is ``\\40``)."""
    return user.replace("@", "\\40") + "@" + TWEETER


def node(user: str) -> str:
    return f"urn:xmpp:microblog:0:{user}"


# -- the component, once per server -----------------------------------------------


@dataclass
class Tweeter:
    server: XmppServer
    process: ComponentProcess
    database: Path

    def jid(self, name: str) -> str:
        return self.server.account(name)[0]

    def wait_connected(self) -> None:
        self.process.wait_for(re.escape(f"Component {TWEETER} connected"), CONNECT_TIMEOUT)


@pytest.fixture(scope="module", params=sorted(SERVER_CLASSES))
def tweeter_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tweeter]:
    """``twistd empc`` serving tweeter.localhost, for each server in turn."""
    server: XmppServer = request.getfixturevalue(f"{request.param}_server")
    server.start()
    workdir = tmp_path_factory.mktemp(f"tweeter-{request.param}")
    database = workdir / "tweeter.sqlite3"
    starter = ComponentStarter(workdir)
    try:
        process = starter(
            server,
            domain=TWEETER,
            handlers=[HANDLER, {"class": PUBSUB, "config": {"creators": []}}],
            access_lists={"admins": ["carol@localhost"]},
            storage={"url": f"sqlite:///{database}"},
        )
        service = Tweeter(server, process, database)
        service.wait_connected()
        yield service
    finally:
        starter.stop_all()
        for process in starter.started:  # for a look after the run
            lines = process.earlier_lines + process.lines
            (workdir / "empc.log").write_text("\n".join(lines) + "\n")


@pytest.fixture
def tweeter(tweeter_service: Tweeter) -> Iterator[Tweeter]:
    """The running service, with nobody following anybody; after the test,
    the component must not have logged a traceback or an error."""
    service = tweeter_service
    service.server.start()  # a test elsewhere may have stopped it
    if service.process.returncode is not None:
        pytest.fail(f"the tweeter component has exited:\n{service.process.output()}")
    with _login(service, "alice", "bob", "carol", available=False) as clients:
        for client in clients:
            answer = command(client, "following")
            for followed in answer.splitlines()[1:]:
                assert command(client, f"unfollow {followed}").startswith("You no longer")
    process = service.process
    seen = len(process.earlier_lines) + len(process.lines)
    yield service
    logged = (process.earlier_lines + process.lines)[seen:]
    failures = [line for line in logged if re.search(LOGGED_FAILURE, line)]
    assert not failures, "the component logged failures:\n" + "\n".join(logged)


def _login(service: Tweeter, *names: str, available: bool = True) -> Clients:
    accounts = [service.server.account(name) for name in names]
    return login_all(accounts, service.server.c2s_port, available=available)


@pytest.fixture
def users(tweeter: Tweeter) -> Iterator[dict[str, XmppClient]]:
    """alice, bob and carol logged in, available (messages to their bare
    JIDs reach them), by name."""
    with _login(tweeter, "alice", "bob", "carol") as clients:
        yield dict(zip(("alice", "bob", "carol"), clients, strict=True))


# -- helpers ------------------------------------------------------------------------


def token() -> str:
    """A word no other test posts."""
    return secrets.token_hex(4)


def command(client: XmppClient, text: str) -> str:
    """Send a chat command to the component; its answer's text."""
    answer = client.chat(TWEETER, text, timeout=WAIT)
    assert answer.type == "chat", answer.xml
    assert answer.body is not None, answer.xml
    return answer.body


def post(client: XmppClient, text: str, followers: int | None = None) -> int:
    """Post by chat; the new post's number (and check the follower count)."""
    answer = command(client, f"post {text}")
    posted = POSTED.fullmatch(answer)
    assert posted, answer
    if followers is not None:
        assert int(posted.group(2)) == followers, answer
    return int(posted.group(1))


def notification(client: XmppClient, author: str, text: str) -> Received:
    """Wait for the chat notification of ``author``'s post ``text``."""
    found = client.wait_for_message(
        address(author), lambda m: m.body is not None and text in m.body, WAIT
    )
    assert found.sender == address(author), found.xml
    assert found.type == "chat", found.xml
    assert found.body == text, found.xml
    return found


def stray(client: XmppClient, *words: str, wait: float = QUIET) -> list[Received]:
    """After a quiet wait, what the client got that mentions any of
    ``words`` (tokens of this test): should be nothing."""
    return client.take(
        predicate=lambda m: any(word in m.xml for word in words), wait=wait, kind="message"
    )


def pubsub(payload: str) -> str:
    return f"<pubsub xmlns='{NS_PUBSUB}'>{payload}</pubsub>"


def atom_entry(text: str) -> str:
    return f"<entry xmlns='{NS_ATOM}'><title type='text'>{escape(text)}</title></entry>"


def publish(client: XmppClient, owner: str, text: str) -> IqReply:
    item = f"<item>{atom_entry(text)}</item>"
    return client.iq(TWEETER, pubsub(f"<publish node='{node(owner)}'>{item}</publish>"), "set")


def pubsub_condition(reply: IqReply) -> str | None:
    for element in reply.element.iter():
        if element.tag.startswith(f"{{{NS_PUBSUB_ERRORS}}}"):
            return element.tag.partition("}")[2]
    return None


def pubsub_event(word: str) -> Callable[[Received], bool]:
    """Matches a pubsub event message that mentions ``word``."""

    def match(message: Received) -> bool:
        event = message.element.find(f"{{{NS_PUBSUB_EVENT}}}event")
        return event is not None and word in message.xml

    return match


def titles(container: ET.Element, namespace: str) -> list[tuple[str, str]]:
    """(item id, Atom title) of each item under ``container``, in order."""
    found = []
    for item in container.iter(f"{{{namespace}}}item"):
        title = item.find(f"{{{NS_ATOM}}}entry/{{{NS_ATOM}}}title")
        found.append((item.get("id", ""), "" if title is None else (title.text or "")))
    return found


# -- 0. the servers' side of it ---------------------------------------------------------


def test_server_stores_chat_messages_for_offline_users(tweeter: Tweeter) -> None:
    # What the offline-follower test relies on, without the component.
    text = f"while you were out {token()}"
    with _login(tweeter, "alice") as (alice,):
        alice.send_message(tweeter.jid("carol"), text)
        assert alice.ping(tweeter.server.host).type == "result"  # the server has it
    with _login(tweeter, "carol") as (carol,):
        got = carol.wait_for_message(tweeter.jid("alice"), lambda m: m.body == text, WAIT)
    assert got.type == "chat", got.xml


# -- 1. following by chat ------------------------------------------------------------------


def test_follower_gets_the_post(tweeter: Tweeter, users: dict[str, XmppClient]) -> None:
    alice, bob = users["alice"], users["bob"]
    alice_jid = tweeter.jid("alice")
    assert command(bob, f"follow {alice_jid}") == f"You now follow {alice_jid}."
    assert command(bob, f"follow {alice_jid}") == f"You already follow {alice_jid}."
    text = f"Hello from Alice {token()}"
    post(alice, text, followers=1)
    found = notification(bob, alice_jid, text)
    assert found.sender == "alice\\40localhost@tweeter.localhost", found.xml
    # Sent to the bare JID; the server delivered it to bob's session.
    assert found.element.get("to", "").startswith(tweeter.jid("bob")), found.xml

    # Inner line breaks stay in the notification (folded in listings);
    # 280 characters outside the BMP are 280 characters.
    lines = f"first line {token()}\nsecond line"
    post(alice, lines, followers=1)
    notification(bob, alice_jid, lines)
    birds = "\U0001f426" * 280
    post(alice, birds, followers=1)
    notification(bob, alice_jid, birds)
    timeline = command(bob, "timeline 2").splitlines()
    assert timeline[1].startswith(f"{alice_jid}: {birds} (#"), timeline
    assert timeline[2].startswith(f"{alice_jid}: {' '.join(lines.split())} (#"), timeline


def test_posts_reach_exactly_the_followers(tweeter: Tweeter, users: dict[str, XmppClient]) -> None:
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    alice_jid, bob_jid, carol_jid = (tweeter.jid(name) for name in ("alice", "bob", "carol"))
    assert command(bob, f"follow {alice_jid}").startswith("You now follow")
    # Any case, a resource, and the address form all name the same user.
    assert command(carol, "FOLLOW Alice@localhost/phone") == f"You now follow {alice_jid}."
    assert command(carol, f"follow {address(alice_jid)}") == f"You already follow {alice_jid}."
    assert command(alice, f"follow {bob_jid}").startswith("You now follow")

    assert command(alice, "followers").splitlines() == ["2 user(s) follow you:", bob_jid, carol_jid]
    assert command(bob, "following").splitlines() == ["You follow 1 user(s):", alice_jid]
    assert command(bob, "followers").splitlines() == ["1 user(s) follow you:", alice_jid]
    assert command(carol, "followers") == "Nobody follows you yet."

    by_alice, by_bob, by_carol = (f"{name} says {token()}" for name in ("alice", "bob", "carol"))
    post(alice, by_alice, followers=2)
    post(bob, by_bob, followers=1)
    post(carol, by_carol, followers=0)
    notification(bob, alice_jid, by_alice)
    notification(carol, alice_jid, by_alice)
    notification(alice, bob_jid, by_bob)
    assert stray(alice, by_alice, by_carol) == []
    assert stray(bob, by_bob, by_carol, wait=0) == []  # the wait above was for all
    assert stray(carol, by_bob, by_carol, wait=0) == []

    # The timeline holds the posts of the people followed only, newest first.
    timeline = command(bob, "timeline").splitlines()
    assert timeline[0].startswith("Timeline ("), timeline
    assert timeline[1].startswith(f"{alice_jid}: {by_alice} (#"), timeline
    assert not any(by_bob in line or by_carol in line for line in timeline), timeline


# -- 2. pubsub ---------------------------------------------------------------------------


def test_pubsub_subscriber_gets_atom_events(tweeter: Tweeter, users: dict[str, XmppClient]) -> None:
    alice, carol = users["alice"], users["carol"]
    alice_jid, carol_jid = tweeter.jid("alice"), tweeter.jid("carol")
    post(alice, f"a node from the first post {token()}", followers=0)
    subscribe = pubsub(f"<subscribe node='{node(alice_jid)}' jid='{carol_jid}'/>")
    reply = carol.iq(TWEETER, subscribe, "set")
    assert reply.type == "result", reply.xml
    subscription = reply.element.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}subscription")
    assert subscription is not None, reply.xml
    assert subscription.attrib == {
        "node": node(alice_jid),
        "jid": carol_jid,
        "subscription": "subscribed",
    }, reply.xml
    try:
        tokens = token(), token()
        # Characters XML escapes come through as they were.
        first, second = f"first <&> 'quoted' \"too\" {tokens[0]}", f"second {tokens[1]}"
        first_id = post(alice, first, followers=0)
        event = carol.wait_for_message(TWEETER, pubsub_event(tokens[0]), WAIT)
        items = event.element.find(f"{{{NS_PUBSUB_EVENT}}}event/{{{NS_PUBSUB_EVENT}}}items")
        assert items is not None and items.get("node") == node(alice_jid), event.xml
        assert titles(items, NS_PUBSUB_EVENT) == [(str(first_id), first)], event.xml
        entry = items.find(f"{{{NS_PUBSUB_EVENT}}}item/{{{NS_ATOM}}}entry")
        assert entry is not None, event.xml
        assert entry.findtext(f"{{{NS_ATOM}}}author/{{{NS_ATOM}}}name") == alice_jid
        assert entry.findtext(f"{{{NS_ATOM}}}author/{{{NS_ATOM}}}uri") == f"xmpp:{alice_jid}"
        assert entry.findtext(f"{{{NS_ATOM}}}published", "").endswith("Z"), event.xml

        second_id = post(alice, second, followers=0)
        event = carol.wait_for_message(TWEETER, pubsub_event(tokens[1]), WAIT)
        assert event.element.get("type") == "headline", event.xml
        assert second_id > first_id
        # A pubsub subscriber is no follower: no chat notification.
        assert stray(carol, *tokens) == []

        # Items: the latest first; max_items limits them.
        request = pubsub(f"<items node='{node(alice_jid)}' max_items='2'/>")
        reply = carol.iq(TWEETER, request)
        assert reply.type == "result", reply.xml
        latest = titles(reply.element, NS_PUBSUB)
        assert latest == [(str(second_id), second), (str(first_id), first)], reply.xml
        reply = carol.iq(TWEETER, pubsub(f"<items node='{node(alice_jid)}' max_items='1'/>"))
        assert titles(reply.element, NS_PUBSUB) == [(str(second_id), second)], reply.xml
        by_id = pubsub(f"<items node='{node(alice_jid)}'><item id='{first_id}'/></items>")
        reply = carol.iq(TWEETER, by_id)
        assert titles(reply.element, NS_PUBSUB) == [(str(first_id), first)], reply.xml

        # disco#info of the service: a pubsub service that lets one
        # subscribe, retrieve items and publish.
        info = carol.disco_info(TWEETER)
        assert {
            f"{NS_PUBSUB}#subscribe",
            f"{NS_PUBSUB}#retrieve-items",
            f"{NS_PUBSUB}#publish",
        } <= info.features, info.reply.xml
        # disco#items of the service lists alice's node.
        reply = carol.iq(TWEETER, f"<query xmlns='{NS_DISCO_ITEMS}'/>")
        assert reply.type == "result", reply.xml
        listed = {
            (item.get("jid"), item.get("node"))
            for item in reply.element.iter(f"{{{NS_DISCO_ITEMS}}}item")
        }
        assert (TWEETER, node(alice_jid)) in listed, reply.xml
        # ... and disco#items of the node its items, newest first.
        reply = carol.iq(TWEETER, f"<query xmlns='{NS_DISCO_ITEMS}' node='{node(alice_jid)}'/>")
        names = [item.get("name") for item in reply.element.iter(f"{{{NS_DISCO_ITEMS}}}item")]
        assert names[:2] == [str(second_id), str(first_id)], reply.xml
    finally:
        unsubscribe = pubsub(f"<unsubscribe node='{node(alice_jid)}' jid='{carol_jid}'/>")
        reply = carol.iq(TWEETER, unsubscribe, "set")
    assert reply.type == "result", reply.xml
    # Unsubscribed: no more events.
    third = f"third {token()}"
    post(alice, third, followers=0)
    assert stray(carol, third) == []


def test_pubsub_errors_reach_the_client(tweeter: Tweeter, users: dict[str, XmppClient]) -> None:
    carol = users["carol"]
    alice_jid, carol_jid = tweeter.jid("alice"), tweeter.jid("carol")
    alice_node = node(alice_jid)
    post(users["alice"], f"a node from the first post {token()}", followers=0)
    cases: list[tuple[IqType, str, str, str | None]] = [
        # (type, payload, condition, pubsub#errors condition)
        ("get", "<items/>", "bad-request", "nodeid-required"),
        ("get", "<items node='princess/castle'/>", "item-not-found", None),
        ("get", f"<items node='{alice_node}' max_items='zero'/>", "bad-request", None),
        ("set", f"<retract node='{alice_node}'><item id='1'/></retract>", "forbidden", None),
        (
            "set",
            f"<subscribe node='{alice_node}' jid='{alice_jid}'/>",
            "bad-request",
            "invalid-jid",
        ),
        (
            "set",
            f"<unsubscribe node='{alice_node}' jid='{carol_jid}'/>",
            "unexpected-request",
            "not-subscribed",
        ),
        ("set", f"<publish node='{node(carol_jid)}'/>", "bad-request", "item-required"),
        (
            "set",
            f"<publish node='{node(carol_jid)}'><item/></publish>",
            "bad-request",
            "payload-required",
        ),
        (
            "set",
            f"<publish node='{node(carol_jid)}'><item><x xmlns='urn:other'/></item></publish>",
            "bad-request",
            "invalid-payload",
        ),
        ("set", "<create node='mine'/>", "forbidden", None),
    ]
    for iq_type, payload, condition, specific in cases:
        reply = carol.iq(TWEETER, pubsub(payload), iq_type)
        assert reply.type == "error", (payload, reply.xml)
        assert reply.error_condition == condition, (payload, reply.xml)
        assert pubsub_condition(reply) == specific, (payload, reply.xml)
    # A feed node's own disco#info: a pubsub leaf, a microblog.
    reply = carol.iq(TWEETER, f"<query xmlns='{NS_DISCO_INFO}' node='{alice_node}'/>")
    assert reply.type == "result", reply.xml
    identities = [i.attrib for i in reply.element.iter(f"{{{NS_DISCO_INFO}}}identity")]
    expected = {"category": "pubsub", "type": "leaf", "name": f"{alice_jid}'s microblog"}
    assert identities == [expected], reply.xml
    features = {f.get("var") for f in reply.element.iter(f"{{{NS_DISCO_INFO}}}feature")}
    assert {NS_PUBSUB, "urn:xmpp:microblog:0"} <= features, reply.xml
    assert carol.ping(TWEETER).type == "result"


# -- 3. persistence ---------------------------------------------------------------------


def test_timeline_and_follows_survive_a_restart(tweeter: Tweeter) -> None:
    alice_jid = tweeter.jid("alice")
    before = [f"before restart {n} {token()}" for n in (1, 2)]
    with _login(tweeter, "alice", "bob") as (alice, bob):
        assert command(bob, f"follow {alice_jid}").startswith("You now follow")
        ids = [post(alice, text, followers=1) for text in before]
        for text in before:
            notification(bob, alice_jid, text)

    tweeter.process.restart()
    tweeter.wait_connected()

    after = f"after restart {token()}"
    with _login(tweeter, "alice", "bob") as (alice, bob):
        timeline = command(bob, "timeline 2").splitlines()
        assert timeline[0] == "Timeline (2 posts):", timeline
        for line, text, number in zip(timeline[1:], reversed(before), reversed(ids), strict=True):
            assert re.fullmatch(
                rf"{re.escape(alice_jid)}: {re.escape(text)} \(#{number}, \S+Z\)", line
            ), timeline
        assert command(bob, "following").splitlines() == ["You follow 1 user(s):", alice_jid]
        # alice's feed is still listed, with her posts.
        reply = bob.iq(TWEETER, f"<query xmlns='{NS_DISCO_ITEMS}'/>")
        nodes = [item.get("node") for item in reply.element.iter(f"{{{NS_DISCO_ITEMS}}}item")]
        assert node(alice_jid) in nodes, reply.xml
        reply = bob.iq(TWEETER, pubsub(f"<items node='{node(alice_jid)}' max_items='2'/>"))
        expected = [(str(number), text) for number, text in zip(ids, before, strict=True)]
        assert titles(reply.element, NS_PUBSUB) == expected[::-1], reply.xml
        # The follow still works: bob gets the next post, whose number is new.
        after_id = post(alice, after, followers=1)
        assert after_id > max(ids)
        notification(bob, alice_jid, after)


# -- 4. mistakes in chat ---------------------------------------------------------------------


BAD_COMMANDS = {
    "frobnicate now": "Error: unknown command 'frobnicate'. Send 'help' for the list of commands.",
    "   ": "Error: this message is empty. Send 'help' for the list of commands.",
    "follow a<b@localhost": "Error: 'a<b@localhost' is not a valid JID.",
    "follow @localhost": None,  # an invalid JID: the wording is the parser's
    "follow alice@": None,
    "follow localhost": (
        "Error: 'localhost' is a server, not a user: give a JID like alice@localhost."
    ),
    "follow alice@localhost bob@localhost": (
        "Error: give one JID: 'follow <jid>', e.g. follow alice@localhost"
    ),
    "post " + "x" * 281: "Error: a post has at most 280 characters; this one has 281.",
    "following everyone": "Error: 'following' takes no argument; send just 'following'.",
}


def test_every_mistake_gets_a_one_line_error(
    tweeter: Tweeter, users: dict[str, XmppClient]
) -> None:
    alice, bob = users["alice"], users["bob"]
    answers = {text: command(bob, text) for text in BAD_COMMANDS}
    for text, expected in BAD_COMMANDS.items():
        answer = answers[text]
        assert answer.startswith("Error: "), (text, answer)
        assert "\n" not in answer, (text, answer)
        if expected is not None:
            assert answer == expected, (text, answer)
    assert command(bob, f"follow {tweeter.jid('bob')}") == "Error: you cannot follow yourself."
    # A reply to a notification (a message to a user's address) is not relayed.
    reply = bob.chat(address(tweeter.jid("alice")), "nice post!", timeout=WAIT)
    assert reply.body is not None and reply.body.startswith("Error: "), reply.xml
    assert "\n" not in reply.body, reply.xml
    assert stray(alice, "nice post!") == []

    # Nothing was posted or followed, and the component is still up.
    assert "x" * 281 not in command(bob, "posts")
    assert command(bob, "following").startswith("You follow nobody yet.")
    assert bob.ping(TWEETER).type == "result"
    longest = "y" * 280
    post(bob, longest, followers=0)  # exactly 280 is fine
    assert command(bob, "help").startswith("Commands")


# -- 5. publishing over pubsub -------------------------------------------------------------


def test_only_the_owner_publishes_to_a_node(tweeter: Tweeter, users: dict[str, XmppClient]) -> None:
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    alice_jid = tweeter.jid("alice")
    assert command(carol, f"follow {alice_jid}").startswith("You now follow")

    forged = f"forged by bob {token()}"
    reply = publish(bob, alice_jid, forged)
    assert reply.type == "error", reply.xml
    assert reply.error_condition == "forbidden", reply.xml
    assert reply.error_type == "auth", reply.xml

    genuine = f"published by alice {token()}"
    reply = publish(alice, alice_jid, genuine)
    assert reply.type == "result", reply.xml
    item = reply.element.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish/{{{NS_PUBSUB}}}item")
    assert item is not None, reply.xml
    assert item.get("id", "").isdigit(), reply.xml
    notification(carol, alice_jid, genuine)

    too_long = "z" * 281
    reply = publish(alice, alice_jid, too_long)
    assert reply.error_condition == "not-acceptable", reply.xml
    assert pubsub_condition(reply) == "payload-too-big", reply.xml

    posts = command(carol, f"posts {alice_jid}")
    assert f"{alice_jid}: {genuine} (#{item.get('id')}, " in posts, posts
    assert forged not in posts and too_long not in posts, posts
    assert stray(carol, forged, too_long) == []


def test_a_deleted_post_leaves_the_timeline_and_the_node(
    tweeter: Tweeter, users: dict[str, XmppClient]
) -> None:
    alice, bob = users["alice"], users["bob"]
    alice_jid = tweeter.jid("alice")
    assert command(bob, f"follow {alice_jid}").startswith("You now follow")
    text = f"to be deleted {token()}"
    number = post(alice, text, followers=1)
    notification(bob, alice_jid, text)
    assert command(alice, f"delete {number}") == f"Deleted #{number}."
    assert text not in command(bob, "timeline")
    by_id = pubsub(f"<items node='{node(alice_jid)}'><item id='{number}'/></items>")
    assert titles(bob.iq(TWEETER, by_id).element, NS_PUBSUB) == []
    assert command(bob, f"delete {number}") == f"Error: you have no post #{number}."


# -- 6. offline followers ------------------------------------------------------------------


def test_offline_follower_gets_the_post_at_next_login(tweeter: Tweeter) -> None:
    alice_jid = tweeter.jid("alice")
    text = f"while bob was away {token()}"
    with _login(tweeter, "alice", "bob") as (alice, bob):
        assert command(bob, f"follow {alice_jid}").startswith("You now follow")
        bob.disconnect()
        post(alice, text, followers=1)
        bob.connect()  # available again: the server hands over what it kept
        found = notification(bob, alice_jid, text)
        assert found.element.find(f"{{{NS_DELAY}}}delay") is not None, found.xml
        timeline = command(bob, "timeline 1").splitlines()
        assert timeline[1].startswith(f"{alice_jid}: {text} (#"), timeline


# -- 7. following by presence ------------------------------------------------------------


def test_presence_subscription_follows_and_unsubscribe_stops(
    tweeter: Tweeter, users: dict[str, XmppClient]
) -> None:
    alice, bob = users["alice"], users["bob"]
    alice_jid = tweeter.jid("alice")
    alice_address = address(alice_jid)

    answer = bob.subscribe(alice_address, timeout=WAIT)
    assert answer.type == "subscribed", answer.xml
    # Then alice's address is available (its status: her latest post, if any).
    available = bob.wait_for(alice_address, lambda p: p.type == "", kind="presence", timeout=WAIT)
    assert available.bare_sender == alice_address, available.xml
    assert command(bob, "following").splitlines() == ["You follow 1 user(s):", alice_jid]

    followed = f"for my subscribers {token()}"
    post(alice, followed, followers=1)
    notification(bob, alice_jid, followed)
    # At bob's next login his server probes alice's address: she is
    # available, her status her latest post.
    bob.reconnect()
    probed = bob.wait_for(
        alice_address,
        lambda p: p.type == "" and p.status == followed,
        kind="presence",
        timeout=WAIT,
    )
    assert probed.bare_sender == alice_address, probed.xml

    try:
        # Prosody passes the component's unsubscribed on; ejabberd drops it
        # (bob's side of the subscription is already gone) and passes the
        # unavailable that follows.
        answer = bob.unsubscribe(alice_address, timeout=WAIT)
        assert answer.type in ("unsubscribed", "unavailable"), answer.xml
        unfollowed = f"nobody hears this {token()}"
        post(alice, unfollowed, followers=0)
        assert stray(bob, unfollowed) == []
        assert command(bob, "following").startswith("You follow nobody yet.")
    finally:
        bob.send_presence(alice_address, "unsubscribe")  # leave the roster as it was


def test_presence_to_odd_addresses(tweeter: Tweeter, users: dict[str, XmppClient]) -> None:
    alice = users["alice"]
    # Following yourself is refused.
    own = alice.subscribe(address(tweeter.jid("alice")), timeout=WAIT)
    assert own.type == "error", own.xml
    assert own.error_condition == "not-allowed", own.xml
    alice.send_presence(address(tweeter.jid("alice")), "unsubscribe")
    # An address at the component that is no escaped JID is malformed.
    nobody = alice.subscribe(f"nobody@{TWEETER}", timeout=WAIT)
    assert nobody.type == "error", nobody.xml
    assert nobody.error_condition == "jid-malformed", nobody.xml
    alice.send_presence(f"nobody@{TWEETER}", "unsubscribe")
    # The component itself may be in a roster too.
    service = alice.subscribe(TWEETER, timeout=WAIT)
    assert service.type == "subscribed", service.xml
    alice.send_presence(TWEETER, "unsubscribe")
    assert command(alice, "following").startswith("You follow nobody yet.")


# -- the same commands as ad-hoc commands (XEP-0050) ---------------------------------

USER_COMMANDS = [
    "post",
    "delete",
    "follow",
    "unfollow",
    "timeline",
    "posts",
    "following",
    "followers",
    "requests",
    "accept",
    "refuse",
]


def test_a_client_lists_the_commands_it_may_run(
    tweeter: Tweeter, users: dict[str, XmppClient]
) -> None:
    bob, carol = users["bob"], users["carol"]
    assert sorted(node for node, _ in bob.command_list(TWEETER)) == sorted(USER_COMMANDS)
    assert sorted(node for node, _ in carol.command_list(TWEETER)) == sorted(
        [*USER_COMMANDS, "stats"]
    )


def test_a_client_posts_through_the_command_s_form(
    tweeter: Tweeter, users: dict[str, XmppClient]
) -> None:
    alice, bob = users["alice"], users["bob"]
    command(bob, f"follow {tweeter.jid('alice')}")
    started = alice.execute_command(TWEETER, "post")
    assert started.status == "executing", started.reply.xml
    assert started.fields["text"].required
    assert started.actions == {"complete"}
    assert started.sessionid
    text = f"by form {token()}"
    done = alice.continue_command(
        TWEETER, "post", started.sessionid, {"text": text}, action="complete"
    )
    assert done.status == "completed", done.reply.xml
    assert done.notes and done.notes[0][1].endswith("to 1 follower(s).")
    bob.wait_for_message(address(tweeter.jid("alice")), lambda m: m.body == text, WAIT)


def test_a_client_cancels_a_command(tweeter: Tweeter, users: dict[str, XmppClient]) -> None:
    bob = users["bob"]
    started = bob.execute_command(TWEETER, "follow")
    assert started.status == "executing" and started.sessionid
    canceled = bob.cancel_command(TWEETER, "follow", started.sessionid)
    assert canceled.status == "canceled", canceled.reply.xml
    gone = bob.continue_command(
        TWEETER, "follow", started.sessionid, {"user": "alice@localhost"}, action="complete"
    )
    assert gone.reply.error_condition == "bad-request"
    assert command(bob, "following").startswith("You follow nobody")


def test_only_an_admin_runs_the_statistics(tweeter: Tweeter, users: dict[str, XmppClient]) -> None:
    bob, carol = users["bob"], users["carol"]
    assert bob.execute_command(TWEETER, "stats").reply.error_condition == "forbidden"
    assert command(bob, "stats").startswith("Error: unknown command 'stats'")
    command(bob, f"follow {tweeter.jid('carol')}")
    stats = carol.execute_command(TWEETER, "stats")
    assert stats.status == "completed", stats.reply.xml
    assert "Service statistics: " in stats.reply.xml
    assert "<reported>" in stats.reply.xml.replace(' xmlns="jabber:x:data"', "")


def test_a_chat_command_asks_for_what_is_missing(
    tweeter: Tweeter, users: dict[str, XmppClient]
) -> None:
    alice = users["alice"]
    assert command(alice, "post").startswith("Text")
    assert command(alice, "cancel") == "Canceled."
    assert command(alice, "post").startswith("Text")
    assert command(alice, f"asked {token()}").startswith("Posted #")


def test_a_registered_user_accepts_followers_by_hand(
    tweeter: Tweeter, users: dict[str, XmppClient]
) -> None:
    alice, bob = users["alice"], users["bob"]
    offered = alice.register_form(TWEETER)
    assert not offered.registered
    assert {"name", "auto_accept"} <= offered.fields.keys()
    registered = alice.register(TWEETER, {"name": "Alice L.", "auto_accept": "0"})
    assert registered.type == "result", registered.xml
    try:
        assert alice.register_form(TWEETER).registered
        alice_jid, bob_jid = tweeter.jid("alice"), tweeter.jid("bob")
        assert command(bob, f"follow {alice_jid}") == (
            f"{alice_jid} accepts followers by hand: your request was sent."
        )
        alice.wait_for_message(TWEETER, lambda m: m.body is not None and "asks" in m.body, WAIT)
        assert command(alice, f"accept {bob_jid}") == f"{bob_jid} now follows you."
        bob.wait_for_message(TWEETER, lambda m: m.body is not None and "accepted" in m.body, WAIT)
        assert alice_jid in command(bob, "following")
    finally:
        assert alice.unregister(TWEETER).type == "result"
    assert not alice.register_form(TWEETER).registered
