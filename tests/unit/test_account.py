"""Accounts: handlers served at a user's JID, with the account's roster and
presence, driven through the test kit as handler authors drive them."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from empc import Handler, iq, make_message, message, presence
from empc._account import CAPS_NODE, NS_CAPS, NS_ROSTER, Account, Roster, capabilities_version
from empc.commands import Session, command
from empc.protocol import NS_COMPONENT
from empc.routing import sender_of
from empc.testing import DEFAULT_SENDER, FakeServer

BOT = "bot@example.org/empc"


class Echo(Handler):
    @message("chat")
    def echo(self, stanza: etree._Element) -> etree._Element | None:
        body = stanza.findtext(f"{{{NS_COMPONENT}}}body")
        return None if body is None else make_message(str(sender_of(stanza)), f"echo: {body}")

    @iq("get", "{urn:example:hack}ping")
    def ping(self, stanza: etree._Element) -> etree._Element:
        return etree.Element("{urn:example:hack}pong")


class Subscriptions(Handler):
    """Decides subscriptions itself: approves only bob."""

    @presence("subscribe")
    def decide(self, stanza: etree._Element) -> etree._Element:
        sender = sender_of(stanza).bare
        answer = "subscribed" if sender.local == "bob" else "unsubscribed"
        return etree.Element(f"{{{NS_COMPONENT}}}presence", {"to": str(sender), "type": answer})


def account(*handlers: Handler, **options: object) -> FakeServer:
    return FakeServer(list(handlers), account=BOT, **options)  # type: ignore[arg-type]


def test_an_account_logs_in_announces_itself_and_asks_for_its_roster() -> None:
    server = account(Echo())
    presence_sent, roster_query = server.sent
    assert presence_sent.tag == f"{{{NS_COMPONENT}}}presence"
    assert presence_sent.get("type") is None
    assert presence_sent.get("from") == BOT
    assert roster_query.get("type") == "get"
    assert roster_query.find(f"{{{NS_ROSTER}}}query") is not None
    assert server.component.connected


def test_a_handler_answers_as_an_account_with_the_same_api_as_a_component() -> None:
    server = account(Echo())
    (reply,) = server.deliver("<message type='chat'><body>hi</body></message>")
    assert server.only("self::c:message[c:body='echo: hi']") is reply
    assert reply.get("to") == DEFAULT_SENDER
    assert reply.get("from") == BOT  # a client sends from its full JID


def test_an_iq_to_the_bare_jid_is_answered_from_the_full_jid() -> None:
    server = account(Echo())
    (reply,) = server.deliver(
        "<iq type='get' to='bot@example.org'><ping xmlns='urn:example:hack'/></iq>"
    )
    assert reply.get("type") == "result"
    assert reply.get("from") == BOT
    assert reply.find("{urn:example:hack}pong") is not None


def test_a_stanza_for_another_account_is_dropped() -> None:
    server = account(Echo())
    assert (
        server.deliver("<message type='chat' to='eve@example.org'><body>hi</body></message>") == []
    )


def test_an_account_is_a_client_bot_in_disco_with_its_routes_features() -> None:
    server = account(Echo())
    (reply,) = server.deliver(
        "<iq type='get'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    namespaces = {"d": "http://jabber.org/protocol/disco#info"}
    (identity,) = reply.xpath("d:query/d:identity", namespaces=namespaces)
    assert (identity.get("category"), identity.get("type")) == ("client", "bot")
    features = reply.xpath("d:query/d:feature/@var", namespaces=namespaces)
    assert "urn:example:hack" in features
    assert NS_ROSTER not in features  # taking roster pushes is no feature to advertise


def test_the_capabilities_in_the_initial_presence_are_those_disco_answers() -> None:
    server = account(Echo())
    caps = server.sent[0].find(f"{{{NS_CAPS}}}c")
    assert caps is not None
    component = server.component
    expected = capabilities_version([component.identity], component.router.features())
    assert (caps.get("hash"), caps.get("node"), caps.get("ver")) == ("sha-1", CAPS_NODE, expected)
    (reply,) = server.deliver(
        "<iq type='get'><query xmlns='http://jabber.org/protocol/disco#info'"
        f" node='{CAPS_NODE}#{expected}'/></iq>"
    )
    assert reply.get("type") == "result"
    assert "urn:example:hack" in reply.xpath(
        "d:query/d:feature/@var", namespaces={"d": "http://jabber.org/protocol/disco#info"}
    )


def test_the_capabilities_version_is_xep_0115s() -> None:
    # The example of XEP-0115 §5.2.
    features = [
        "http://jabber.org/protocol/caps",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "http://jabber.org/protocol/muc",
    ]
    version = capabilities_version([("client", "pc", "Exodus 0.9.1")], features)
    assert version == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_the_initial_presence_says_what_the_config_says() -> None:
    server = account(presence={"show": "chat", "status": "At your service", "priority": 5})
    initial = server.sent[0]
    assert initial.findtext(f"{{{NS_COMPONENT}}}show") == "chat"
    assert initial.findtext(f"{{{NS_COMPONENT}}}status") == "At your service"
    assert initial.findtext(f"{{{NS_COMPONENT}}}priority") == "5"


@pytest.mark.parametrize(
    ("policy", "sender", "answer"),
    [
        ("all", "alice@example.org/phone", "subscribed"),
        ("none", "alice@example.org/phone", "unsubscribed"),
        (("example.org",), "alice@example.org/phone", "subscribed"),
        (("bob@example.net",), "alice@example.org/phone", "unsubscribed"),
        (("list:friends",), "carol@example.net/x", "subscribed"),
        (("list:friends",), "mallory@example.net/x", "unsubscribed"),
    ],
)
def test_subscription_requests_are_answered_as_the_policy_says(
    policy: str | tuple[str, ...], sender: str, answer: str
) -> None:
    server = account(subscriptions=policy, access_lists={"friends": ["carol@example.net"]})
    (reply,) = server.deliver(f"<presence type='subscribe' from='{sender}'/>")
    assert reply.get("type") == answer
    assert reply.get("to") == sender.split("/")[0]


def test_with_the_handler_policy_the_handlers_route_decides() -> None:
    server = account(Subscriptions(), subscriptions="handler")
    (yes,) = server.deliver("<presence type='subscribe' from='bob@example.org'/>")
    (no,) = server.deliver("<presence type='subscribe' from='eve@example.org'/>")
    assert (yes.get("type"), no.get("type")) == ("subscribed", "unsubscribed")


def test_with_the_handler_policy_and_no_route_nothing_is_answered() -> None:
    server = account(subscriptions="handler")
    assert server.deliver("<presence type='subscribe' from='bob@example.org'/>") == []


def test_a_handlers_subscription_route_wins_over_the_policy() -> None:
    server = account(Subscriptions(), subscriptions="all")
    (reply,) = server.deliver("<presence type='subscribe' from='eve@example.org'/>")
    assert reply.get("type") == "unsubscribed"


def _roster(server: FakeServer) -> Roster:
    (roster,) = (h for h in server.component.handlers if isinstance(h, Roster))
    return roster


def test_roster_pushes_from_the_account_keep_the_roster_up_to_date() -> None:
    server = account()
    push = (
        "<iq type='set' from='bot@example.org'><query xmlns='jabber:iq:roster'>"
        "<item jid='alice@example.org' subscription='both'/></query></iq>"
    )
    (ack,) = server.deliver(push)
    assert ack.get("type") == "result"
    assert set(_roster(server).items) == {"alice@example.org"}
    # As servers send it: without 'from', which means the account itself.
    server.feed(
        b"<iq xmlns='jabber:client' type='set' id='push-2'><query xmlns='jabber:iq:roster'>"
        b"<item jid='alice@example.org' subscription='remove'/></query></iq>"
    )
    assert _roster(server).items == {}


def test_a_roster_push_from_anyone_else_is_refused() -> None:
    server = account()
    (reply,) = server.deliver(
        "<iq type='set' from='mallory@example.org/x'><query xmlns='jabber:iq:roster'>"
        "<item jid='mallory@example.org' subscription='both'/></query></iq>"
    )
    assert reply.get("type") == "error"
    assert server.only("self::c:iq/c:error/stanzas:forbidden") is reply
    assert _roster(server).items == {}


def test_the_fetched_roster_fills_the_roster() -> None:
    server = account()
    (query,) = [s for s in server.sent if s.find(f"{{{NS_ROSTER}}}query") is not None]
    # The fake server answered the first fetch with an empty roster; a
    # second answer of a fetch made now is read the same way.
    fetched = _roster(server).session_started()
    ask = server.sent[-1]
    server.deliver(
        f"<iq type='result' id='{ask.get('id')}' from='bot@example.org'>"
        "<query xmlns='jabber:iq:roster'><item jid='carol@example.org'/></query></iq>"
    )
    assert fetched.called
    assert set(_roster(server).items) == {"carol@example.org"}
    assert query.get("to") == "bot@example.org"


def test_an_account_gets_no_component_only_builtins() -> None:
    server = account(Echo())
    names = {type(handler).__name__ for handler in server.component.handlers}
    assert {"Privilege", "Delegation"}.isdisjoint(names)
    assert {"Ping", "Disco", "Version", "Roster"} <= names


def test_an_account_that_does_not_announce_sends_no_presence() -> None:
    server = FakeServer([], account=BOT, announce=False)
    assert server.sent == []
    assert isinstance(server.component, Account)


def test_stopping_an_account_closes_its_stream() -> None:
    server = account(Echo())
    stopped = server.stop()
    server.advance(0)
    assert stopped.called
    assert not server.connected


def test_the_test_kit_builds_an_account_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "account.yaml"
    config.write_text(
        "accounts:\n"
        "  - jid: bot@example.org\n"
        "    password: s3cret\n"
        "    presence: {status: ready}\n"
        "    subscriptions: none\n"
    )
    server = FakeServer.from_config(str(config), "bot@example.org")
    assert server.component.domain == "bot@example.org"
    assert server.sent[0].findtext(f"{{{NS_COMPONENT}}}status") == "ready"
    (reply,) = server.deliver("<presence type='subscribe' from='alice@example.org'/>")
    assert reply.get("type") == "unsubscribed"
    with pytest.raises(LookupError):
        FakeServer.from_config(str(config), "other@example.org")


class Greeter(Handler):
    @command("hello", name="Say hello")
    def hello(self, session: Session) -> str:
        return "Hello!"


def test_chat_commands_work_for_an_account() -> None:
    server = account(Greeter())
    (reply,) = server.deliver("<message type='chat'><body>hello</body></message>")
    assert reply.findtext(f"{{{NS_COMPONENT}}}body") == "Hello!"


def test_an_accounts_commands_are_listed_at_its_full_jid() -> None:
    # The server answers an IQ to the bare JID itself: the session must be named.
    server = account(Greeter())
    (reply,) = server.deliver(
        "<iq type='get'><query xmlns='http://jabber.org/protocol/disco#items'"
        " node='http://jabber.org/protocol/commands'/></iq>"
    )
    items = reply.xpath(
        "i:query/i:item", namespaces={"i": "http://jabber.org/protocol/disco#items"}
    )
    assert [(item.get("jid"), item.get("node")) for item in items] == [(BOT, "hello")]


def test_an_account_does_not_answer_its_own_messages() -> None:
    server = account(Greeter())
    stanza = "<message type='chat' from='bot@example.org/phone'><body>hello</body></message>"
    assert server.deliver(stanza) == []


def test_a_roster_push_from_another_resource_of_the_account_is_refused() -> None:
    server = account()
    (reply,) = server.deliver(
        "<iq type='set' from='bot@example.org/phone'><query xmlns='jabber:iq:roster'>"
        "<item jid='mallory@example.org' subscription='both'/></query></iq>"
    )
    assert reply.get("type") == "error"
    assert _roster(server).items == {}
