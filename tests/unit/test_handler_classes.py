"""Handlers and their routes, through the test kit: config defaults, start
and stop hooks, the built-in Version and Disco, and which route wins."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import pytest
from lxml import etree
from support import FORECAST, NS_WEATHER, C, Greeter, chat, chat_reply, error_of, one, weather
from twisted.internet.defer import Deferred, succeed

from empc import JID, DiscoInfo, DiscoItem, Handler, iq, make_stanza, message, presence, route
from empc.handlers import Disco, Version
from empc.protocol import new_element
from empc.testing import FakeServer

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_VERSION = "jabber:iq:version"
NS_EVENTS = "urn:example:events"


# Config defaults


def test_no_config_gives_the_defaults() -> None:
    assert Greeter().config == {"greeting": "hello", "retries": 3, "delay": 1.5}


def test_config_is_merged_over_the_defaults() -> None:
    greeter = Greeter({"greeting": "hi", "delay": 0.25})
    assert greeter.config == {"greeting": "hi", "retries": 3, "delay": 0.25}


def test_config_does_not_change_the_class_defaults() -> None:
    Greeter({"greeting": "hi"})
    assert Greeter.defaults["greeting"] == "hello"


def test_unknown_config_key_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"unknown config key\(s\): greting"):
        Greeter({"greting": "hi"})


def test_handler_without_defaults_refuses_any_config() -> None:
    with pytest.raises(ValueError, match="colour"):
        Handler({"colour": "blue"})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("greeting", 42),
        ("retries", "three"),
        ("retries", 2.5),
        ("delay", "soon"),
        ("retries", True),
    ],
)
def test_value_of_the_wrong_type_is_refused_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"config key '{key}': expected"):
        Greeter({key: value})


def test_int_is_accepted_for_a_float_default() -> None:
    assert Greeter({"delay": 2}).config["delay"] == 2


def test_configured_handler_serves_with_its_config() -> None:
    server = FakeServer([Greeter({"greeting": "bonjour"})])
    reply = one(server.deliver(chat()))
    assert reply.findtext(f"{C}body") == "bonjour"


# Start and stop hooks


class Lifecycle(Handler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.starting: Deferred[None] = Deferred()

    def start(self) -> object:
        self.events.append("start")
        return self.starting

    def stop(self) -> object:
        self.events.append("stop")
        return None


def test_start_hook_is_called_once_by_the_fake_server() -> None:
    handler = Lifecycle()
    server = FakeServer([handler])
    assert handler.events == ["start"]
    assert not server.started.called
    handler.starting.callback(None)
    assert server.started.called


def test_stop_hook_is_called_by_stop() -> None:
    handler = Lifecycle()
    server = FakeServer([handler])
    handler.starting.callback(None)
    stopped = server.stop()
    assert handler.events == ["start", "stop"]
    assert stopped.called


def test_handler_knows_its_component_when_it_starts() -> None:
    seen: list[str] = []

    class Domain(Handler):
        def start(self) -> None:
            seen.append(self.component.domain)

    FakeServer([Domain()], domain="weather.example.org")
    assert seen == ["weather.example.org"]


# Version (XEP-0092)


def software_version(server: FakeServer) -> tuple[str | None, str | None]:
    reply = one(server.deliver(f"<iq type='get'><query xmlns='{NS_VERSION}'/></iq>"))
    assert reply.get("type") == "result", etree.tostring(reply)
    query = reply.find(f"{{{NS_VERSION}}}query")
    assert query is not None
    assert query.find(f"{{{NS_VERSION}}}os") is None
    return query.findtext(f"{{{NS_VERSION}}}name"), query.findtext(f"{{{NS_VERSION}}}version")


def test_version_answers_empc_and_its_version() -> None:
    assert software_version(FakeServer()) == ("empc", version("empc"))


def test_version_answers_the_configured_name_and_version() -> None:
    server = FakeServer([Version({"name": "weather", "version": "2.1"})], builtins=False)
    assert software_version(server) == ("weather", "2.1")


def test_version_with_only_a_name_keeps_empc_s_version() -> None:
    server = FakeServer([Version({"name": "weather"})], builtins=False)
    assert software_version(server) == ("weather", version("empc"))


def looked_up(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The distributions whose version the Version handler looks up."""
    names: list[str] = []

    def counting(name: str) -> str:
        names.append(name)
        return "9.9"

    monkeypatch.setattr("empc.handlers._version.version", counting)
    return names


def test_version_looks_up_empc_s_version_once_not_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = looked_up(monkeypatch)
    server = FakeServer([Version()], builtins=False)
    answers = [software_version(server) for _ in range(3)]
    assert answers == [("empc", "9.9")] * 3
    assert names == ["empc"]


def test_version_with_a_configured_version_never_looks_up_empc_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = looked_up(monkeypatch)
    server = FakeServer([Version({"version": "2.1"})], builtins=False)
    software_version(server)
    assert names == []


# Disco (XEP-0030)


class Events(Handler):
    """Routes whose features are declared, and disco items."""

    @iq("get", f"{{{NS_EVENTS}}}list", feature=f"{NS_EVENTS}#list")
    def events(self, stanza: etree._Element) -> None:
        return None

    @message("groupchat", feature="urn:example:rooms")
    def room_message(self, stanza: etree._Element) -> None:
        return None

    def disco_items(self, node: str | None, requester: JID) -> Sequence[DiscoItem]:
        if node is None:
            return [("rooms.example.org", None, "Rooms"), ("example.org", "events", None)]
        if node == "events":
            return [("example.org", "events/today", "Today")]
        return []

    def disco_info(self, node: str, requester: JID) -> DiscoInfo | None:
        return ([("hierarchy", "branch", "")], []) if node == "events" else None


class Stations(Handler):
    def disco_items(self, node: str | None, requester: JID) -> Sequence[DiscoItem]:
        return [("stations.example.org", None, "Weather stations")] if node is None else []


def disco(server: FakeServer, namespace: str, node: str | None = None) -> etree._Element:
    attribute = "" if node is None else f" node='{node}'"
    reply = one(server.deliver(f"<iq type='get'><query xmlns='{namespace}'{attribute}/></iq>"))
    assert reply.get("type") == "result", etree.tostring(reply)
    query = reply.find(f"{{{namespace}}}query")
    assert query is not None
    return query


def features(server: FakeServer) -> list[str | None]:
    return [f.get("var") for f in disco(server, NS_DISCO_INFO).iter(f"{{{NS_DISCO_INFO}}}feature")]


def test_disco_info_names_the_component_identity() -> None:
    server = FakeServer(identity=("gateway", "irc", "IRC bridge"))
    identities = disco(server, NS_DISCO_INFO).findall(f"{{{NS_DISCO_INFO}}}identity")
    assert [dict(i.attrib) for i in identities] == [
        {"category": "gateway", "type": "irc", "name": "IRC bridge"}
    ]


def test_disco_info_features_are_derived_from_the_routes() -> None:
    server = FakeServer([weather(), Events()])
    assert features(server) == sorted(
        [
            NS_DISCO_INFO,
            NS_DISCO_ITEMS,
            NS_VERSION,
            "urn:xmpp:ping",
            "urn:xmpp:delegation:1",  # the built-in Delegation's
            "urn:xmpp:delegation:2",
            NS_WEATHER,  # a payload's namespace
            f"{NS_EVENTS}#list",  # declared instead of the payload's namespace
            "urn:example:rooms",  # declared on a message route
        ]
    )


def test_disco_info_does_not_advertise_what_is_not_routed() -> None:
    server = FakeServer([Disco()], builtins=False)
    assert features(server) == [NS_DISCO_INFO, NS_DISCO_ITEMS]


def test_disco_info_on_a_node_no_handler_has_answers_item_not_found() -> None:
    server = FakeServer([Events()])
    stanza = f"<iq type='get'><query xmlns='{NS_DISCO_INFO}' node='nowhere'/></iq>"
    assert error_of(one(server.deliver(stanza))) == ("item-not-found", "cancel", None)


class Feeds(Handler):
    """Nodes of its own, answered later (as from a database), and a feature
    that no route stands for."""

    features = ("http://jabber.org/protocol/pubsub#persistent-items",)

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Deferred[object]] = []

    def disco_info(self, node: str, requester: JID) -> Deferred[object] | None:
        if not node.startswith("feed/"):
            return None
        answer: Deferred[object] = Deferred()
        self.pending.append(answer)
        return answer.addCallback(lambda _: ([("pubsub", "leaf", node)], ["urn:example:feed"]))

    def disco_items(self, node: str | None, requester: JID) -> Deferred[Sequence[DiscoItem]]:
        return succeed([("feeds.example.org", "feed/alice", None)] if node is None else [])


def test_disco_info_of_a_node_comes_from_the_handler_that_has_it() -> None:
    feeds = Feeds()
    server = FakeServer([Events(), feeds])
    stanza = f"<iq type='get'><query xmlns='{NS_DISCO_INFO}' node='feed/alice'/></iq>"
    assert server.deliver(stanza) == []  # the handler answers later
    feeds.pending[0].callback(None)
    query = one(server.sent).find(f"{{{NS_DISCO_INFO}}}query")
    assert query is not None and query.get("node") == "feed/alice"
    assert [dict(i.attrib) for i in query.findall(f"{{{NS_DISCO_INFO}}}identity")] == [
        {"category": "pubsub", "type": "leaf", "name": "feed/alice"}
    ]
    assert [f.get("var") for f in query.findall(f"{{{NS_DISCO_INFO}}}feature")] == [
        "urn:example:feed"
    ]


def test_disco_items_may_come_from_a_deferred() -> None:
    server = FakeServer([Feeds()])
    assert [item.get("node") for item in disco(server, NS_DISCO_ITEMS)] == ["feed/alice"]


def test_handler_features_are_advertised_besides_the_routes_features() -> None:
    server = FakeServer([Feeds()])
    assert "http://jabber.org/protocol/pubsub#persistent-items" in features(server)


def test_disco_items_gathers_every_handler_s_items() -> None:
    server = FakeServer([Events(), Stations()])
    items = [dict(item.attrib) for item in disco(server, NS_DISCO_ITEMS)]
    assert items == [
        {"jid": "rooms.example.org", "name": "Rooms"},
        {"jid": "example.org", "node": "events"},
        {"jid": "stations.example.org", "name": "Weather stations"},
    ]


def test_disco_items_on_a_node_asks_the_handlers_for_that_node() -> None:
    server = FakeServer([Events(), Stations()])
    query = disco(server, NS_DISCO_ITEMS, node="events")
    assert query.get("node") == "events"
    assert [dict(item.attrib) for item in query] == [
        {"jid": "example.org", "node": "events/today", "name": "Today"}
    ]


class Private(Handler):
    """Offers an item only to the one who may use it."""

    def disco_items(self, node: str | None, requester: JID) -> Sequence[DiscoItem]:
        return (
            [("example.org", "secret", None)]
            if requester.bare == JID.parse("alice@localhost")
            else []
        )


def test_disco_items_are_asked_for_the_requester() -> None:
    server = FakeServer([Private()])
    request = f"<iq type='get' from='{{}}'><query xmlns='{NS_DISCO_ITEMS}'/></iq>"
    alice = one(server.deliver(request.format("alice@localhost/phone")))
    bob = one(server.deliver(request.format("bob@localhost/phone")))
    assert [item.get("node") for item in alice[0]] == ["secret"]
    assert len(bob[0]) == 0


def test_disco_items_without_items_is_an_empty_result() -> None:
    assert len(disco(FakeServer(), NS_DISCO_ITEMS)) == 0


# Which route wins


class Ranked(Handler):
    """Chat routes that answer with their own name."""

    @message("chat")
    def first(self, stanza: etree._Element) -> etree._Element:
        return self.answer(stanza, "first")

    @message("chat")
    def second(self, stanza: etree._Element) -> etree._Element:
        return self.answer(stanza, "second")

    @message("chat", xpath="c:body[starts-with(., '!')]", priority=5)
    def command(self, stanza: etree._Element) -> etree._Element:
        return self.answer(stanza, "command")

    @message("chat", xpath="c:body = '!help'", priority=10)
    def help(self, stanza: etree._Element) -> etree._Element:
        return self.answer(stanza, "help")

    @message(xpath="ev:event[@node='news']", namespaces={"ev": NS_EVENTS}, priority=1)
    def news(self, stanza: etree._Element) -> etree._Element:
        return self.answer(stanza, "news")

    @message(("headline", "groupchat"))
    def broadcast(self, stanza: etree._Element) -> etree._Element:
        return self.answer(stanza, "broadcast")

    @presence(("subscribe", "unsubscribe"))
    def subscription(self, stanza: etree._Element) -> etree._Element:
        return self.answer(stanza, "subscription")

    @iq(("get", "set"), FORECAST)
    def forecast(self, stanza: etree._Element) -> etree._Element:
        return new_element(NS_WEATHER, "forecast")

    def answer(self, stanza: etree._Element, name: str) -> etree._Element:
        return chat_reply(stanza, name)


def winner(stanza: str, *handlers: Handler) -> str | None:
    server = FakeServer(list(handlers) or [Ranked()])
    sent = server.deliver(stanza)
    return one(sent).findtext(f"{C}body") if sent else None


def test_higher_priority_wins() -> None:
    assert winner(chat("!weather")) == "command"
    assert winner(chat("!help")) == "help"


def test_equal_priorities_go_in_declaration_order() -> None:
    assert winner(chat("hello")) == "first"


def test_equal_priorities_across_handlers_go_in_registration_order() -> None:
    other = weather(lambda stanza: chat_reply(stanza, "weather"))
    assert winner(chat("hello"), other, Ranked()) == "weather"
    assert winner(chat("hello"), Ranked(), other) == "first"


def test_xpath_with_the_c_prefix_only_matches_what_it_selects() -> None:
    assert winner(chat("hello !")) == "first"


def test_xpath_with_a_custom_namespace_prefix() -> None:
    news = f"<message type='chat'><event xmlns='{NS_EVENTS}' node='news'/></message>"
    sports = f"<message type='chat'><event xmlns='{NS_EVENTS}' node='sports'/></message>"
    assert (winner(news), winner(sports)) == ("news", "first")


@pytest.mark.parametrize(
    ("stanza", "expected"),
    [
        (chat(type="headline"), "broadcast"),
        (chat(type="groupchat"), "broadcast"),
        (chat(type="normal"), None),
        ("<presence type='subscribe'/>", "subscription"),
        ("<presence type='unsubscribe'/>", "subscription"),
        ("<presence type='subscribed'/>", None),
        ("<presence/>", None),
    ],
)
def test_shorthands_match_the_types_they_list(stanza: str, expected: str | None) -> None:
    assert winner(stanza) == expected


@pytest.mark.parametrize("iq_type", ["get", "set"])
def test_iq_shorthand_with_a_tuple_of_types(iq_type: str) -> None:
    server = FakeServer([Ranked()])
    reply = one(server.deliver(f"<iq type='{iq_type}'><forecast xmlns='{NS_WEATHER}'/></iq>"))
    assert [child.tag for child in reply] == [FORECAST]


def many_routes(count: int) -> Handler:
    """A handler with ``count`` routes: half IQs of their own payload, half
    chat commands told apart by XPath, priorities all over the place."""

    def numbered_iq(n: int) -> Any:
        @iq("get", f"{{urn:example:n{n}}}query", priority=n % 7)
        def action(self: Handler, stanza: etree._Element) -> etree._Element:
            return new_element(f"urn:example:n{n}", "query", {"n": str(n)})

        return action

    def numbered_command(n: int) -> Any:
        @message("chat", xpath=f"c:body = 'cmd{n}'", priority=n % 5)
        def action(self: Handler, stanza: etree._Element) -> etree._Element:
            return chat_reply(stanza, str(n))

        return action

    methods = {f"iq{n}": numbered_iq(n) for n in range(count // 2)}
    methods |= {f"command{n}": numbered_command(n) for n in range(count // 2)}
    handler: Handler = type("Many", (Handler,), methods)()
    return handler


def test_with_200_routes_the_right_one_still_wins() -> None:
    handler = many_routes(200)
    server = FakeServer([handler], builtins=False)
    assert len(server.component.router.routes) == 200
    for n in (0, 42, 99):
        reply = one(server.deliver(f"<iq type='get'><query xmlns='urn:example:n{n}'/></iq>"))
        assert reply[0].get("n") == str(n)
        assert one(server.deliver(chat(f"cmd{n}"))).findtext(f"{C}body") == str(n)
    assert server.deliver(chat("cmd100")) == []


def test_generic_route_matches_any_kind_its_xpath_selects() -> None:
    class Spy(Handler):
        @route("@type = 'probe'")
        def probe(self, stanza: etree._Element) -> etree._Element:
            return make_stanza("presence", {"to": stanza.get("from")})

    server = FakeServer([Spy()])
    assert len(server.deliver("<presence type='probe'/>")) == 1
    assert server.deliver("<presence type='available'/>") == []


def test_disco_items_of_a_node_no_handler_claims_is_item_not_found() -> None:
    server = FakeServer([Events()])
    stanza = f"<iq type='get'><query xmlns='{NS_DISCO_ITEMS}' node='nowhere'/></iq>"
    assert error_of(one(server.deliver(stanza))) == ("item-not-found", "cancel", None)


def test_disco_info_of_a_node_leaves_out_an_empty_identity_name() -> None:
    server = FakeServer([Events()])
    query = disco(server, NS_DISCO_INFO, node="events")
    assert [dict(i.attrib) for i in query.findall(f"{{{NS_DISCO_INFO}}}identity")] == [
        {"category": "hierarchy", "type": "branch"}
    ]
