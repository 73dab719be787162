"""The router: matching routes and the reply contract, and the built-in handlers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from lxml import etree
from support import RecordingLink
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.python.failure import Failure

from empc import JID, Component, Handler, StanzaError, iq, message, presence, route
from empc.handlers import NS_PING, Disco, Ping
from empc.protocol import NS_COMPONENT
from empc.routing import NS_STANZAS, Limits, Router, make_stanza

NS_WEATHER = "urn:example:weather"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
FORECAST = f"{{{NS_WEATHER}}}forecast"
C = f"{{{NS_COMPONENT}}}"
DOMAIN = "echo.example.org"
USER = "juliet@example.org/balcony"


def iq_get(payload: str | None = FORECAST, type: str = "get", id: str = "q1") -> etree._Element:
    stanza = make_stanza("iq", {"type": type, "id": id, "from": USER, "to": DOMAIN})
    if payload is not None:
        etree.SubElement(stanza, payload)
    return stanza


def chat(body: str, type: str = "chat") -> etree._Element:
    stanza = make_stanza("message", {"type": type, "from": USER, "to": DOMAIN})
    etree.SubElement(stanza, f"{C}body").text = body
    return stanza


def condition(reply: etree._Element) -> str:
    """The defined condition of an error reply."""
    error = reply.find(f"{C}error")
    assert error is not None, etree.tostring(reply)
    names = [
        etree.QName(child).localname for child in error if child.tag != f"{{{NS_STANZAS}}}text"
    ]
    assert len(names) == 1
    return names[0]


def error_type(reply: etree._Element) -> str | None:
    error = reply.find(f"{C}error")
    assert error is not None
    return error.get("type")


def error_text(reply: etree._Element) -> str | None:
    return reply.findtext(f"{C}error/{{{NS_STANZAS}}}text")


class Harness:
    """A router over a recording send and a fake clock."""

    def __init__(self, *handlers: object, timeout: float = 30.0) -> None:
        self.sent: list[etree._Element] = []
        self.clock = Clock()
        self.router = Router(self.sent.append, self.clock, timeout)
        for handler in handlers:
            self.router.add(handler)

    def dispatch(self, stanza: etree._Element) -> list[etree._Element]:
        self.router.dispatch(stanza)
        return self.sent

    def only_reply(self) -> etree._Element:
        assert len(self.sent) == 1, [etree.tostring(s) for s in self.sent]
        return self.sent[0]


def serve(action: object) -> Harness:
    """A harness whose only route is an IQ get of FORECAST served by ``action``."""

    class Weather(Handler):
        @iq("get", FORECAST, timeout=5)
        def forecast(self, stanza: etree._Element) -> object:
            return action(stanza)  # type: ignore[operator]

    return Harness(Weather())


@pytest.fixture
def logs() -> Iterator[list[LogEvent]]:
    with capturedLogs() as events:
        yield events  # type: ignore[misc]


# The reply contract for IQ get and set


def test_action_returning_none_answers_an_empty_result() -> None:
    harness = serve(lambda stanza: None)
    harness.dispatch(iq_get())
    reply = harness.only_reply()
    assert reply.tag == f"{C}iq"
    assert reply.get("type") == "result"
    assert len(reply) == 0


def test_reply_keeps_the_id_and_swaps_to_and_from() -> None:
    harness = serve(lambda stanza: None)
    harness.dispatch(iq_get(id="abc-123"))
    reply = harness.only_reply()
    assert (reply.get("id"), reply.get("to"), reply.get("from")) == ("abc-123", USER, DOMAIN)


def test_action_returning_an_element_answers_a_result_carrying_it() -> None:
    payload = etree.Element(f"{{{NS_WEATHER}}}forecast")
    payload.text = "sunny"
    harness = serve(lambda stanza: payload)
    harness.dispatch(iq_get())
    reply = harness.only_reply()
    assert reply.get("type") == "result"
    assert [child.tag for child in reply] == [FORECAST]
    assert reply[0].text == "sunny"


def test_action_raising_stanza_error_answers_that_error() -> None:
    def refuse(stanza: etree._Element) -> None:
        raise StanzaError("forbidden", "members only")

    harness = serve(refuse)
    harness.dispatch(iq_get())
    reply = harness.only_reply()
    assert reply.get("type") == "error"
    assert (condition(reply), error_type(reply), error_text(reply)) == (
        "forbidden",
        "auth",
        "members only",
    )


def test_action_raising_stanza_error_with_an_explicit_type_answers_that_type() -> None:
    def refuse(stanza: etree._Element) -> None:
        raise StanzaError("resource-constraint", type="cancel")

    harness = serve(refuse)
    harness.dispatch(iq_get())
    reply = harness.only_reply()
    assert (condition(reply), error_type(reply)) == ("resource-constraint", "cancel")


def test_action_raising_not_implemented_answers_feature_not_implemented() -> None:
    def unimplemented(stanza: etree._Element) -> None:
        raise NotImplementedError

    harness = serve(unimplemented)
    harness.dispatch(iq_get())
    assert condition(harness.only_reply()) == "feature-not-implemented"


def test_action_raising_anything_else_answers_internal_server_error() -> None:
    def crash(stanza: etree._Element) -> None:
        raise RuntimeError("database password is hunter2")

    harness = serve(crash)
    harness.dispatch(iq_get())
    reply = harness.only_reply()
    assert (condition(reply), error_type(reply)) == ("internal-server-error", "cancel")


def test_internal_server_error_reply_carries_no_traceback_or_exception_text() -> None:
    def crash(stanza: etree._Element) -> None:
        raise RuntimeError("database password is hunter2")

    harness = serve(crash)
    harness.dispatch(iq_get())
    wire = etree.tostring(harness.only_reply())
    assert b"hunter2" not in wire
    assert b"Traceback" not in wire
    assert b"RuntimeError" not in wire


def test_action_raising_anything_else_logs_the_failure(logs: list[LogEvent]) -> None:
    def crash(stanza: etree._Element) -> None:
        raise RuntimeError("database password is hunter2")

    serve(crash).dispatch(iq_get())
    failures = [event for event in logs if "log_failure" in event]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(RuntimeError)
    assert "internal-server-error" in formatEvent(failures[0])


def test_action_returning_a_non_element_answers_internal_server_error() -> None:
    harness = serve(lambda stanza: "sunny")
    harness.dispatch(iq_get())
    assert condition(harness.only_reply()) == "internal-server-error"


def test_deferred_action_answers_when_it_fires() -> None:
    pending: Deferred[None] = Deferred()
    harness = serve(lambda stanza: pending)
    harness.dispatch(iq_get())
    assert harness.sent == []
    pending.callback(None)
    assert harness.only_reply().get("type") == "result"


def test_deferred_action_failing_with_stanza_error_answers_that_error() -> None:
    pending: Deferred[None] = Deferred()
    harness = serve(lambda stanza: pending)
    harness.dispatch(iq_get())
    pending.errback(StanzaError("item-not-found"))
    assert condition(harness.only_reply()) == "item-not-found"


def test_deferred_that_never_fires_answers_remote_server_timeout_at_the_route_timeout() -> None:
    harness = serve(lambda stanza: Deferred())
    harness.dispatch(iq_get())
    harness.clock.advance(4.9)
    assert harness.sent == []
    harness.clock.advance(0.1)
    reply = harness.only_reply()
    assert (reply.get("type"), condition(reply), error_type(reply)) == (
        "error",
        "remote-server-timeout",
        "wait",
    )


def test_deferred_firing_after_the_timeout_sends_nothing_more() -> None:
    pending: Deferred[etree._Element] = Deferred()
    harness = serve(lambda stanza: pending)
    harness.dispatch(iq_get())
    harness.clock.advance(5)
    pending.callback(etree.Element(FORECAST))
    assert len(harness.sent) == 1
    assert condition(harness.sent[0]) == "remote-server-timeout"


def test_route_without_timeout_uses_the_router_default() -> None:
    class Slow(Handler):
        @iq("get", FORECAST)
        def forecast(self, stanza: etree._Element) -> Deferred[None]:
            return Deferred()

    harness = Harness(Slow(), timeout=12)
    harness.dispatch(iq_get())
    harness.clock.advance(11.9)
    assert harness.sent == []
    harness.clock.advance(0.1)
    assert condition(harness.only_reply()) == "remote-server-timeout"


def test_coroutine_action_answers_with_its_return_value() -> None:
    class Async(Handler):
        @iq("get", FORECAST)
        async def forecast(self, stanza: etree._Element) -> etree._Element:
            return etree.Element(FORECAST)

    harness = Harness(Async())
    harness.dispatch(iq_get())
    reply = harness.only_reply()
    assert reply.get("type") == "result"
    assert [child.tag for child in reply] == [FORECAST]


def test_coroutine_action_awaiting_a_deferred_answers_when_it_fires() -> None:
    waiting: Deferred[str] = Deferred()

    class Async(Handler):
        @iq("get", FORECAST)
        async def forecast(self, stanza: etree._Element) -> etree._Element:
            text = await waiting
            element = etree.Element(FORECAST)
            element.text = text
            return element

    harness = Harness(Async())
    harness.dispatch(iq_get())
    assert harness.sent == []
    waiting.callback("rain")
    assert harness.only_reply()[0].text == "rain"


def test_coroutine_action_raising_stanza_error_answers_that_error() -> None:
    class Async(Handler):
        @iq("get", FORECAST)
        async def forecast(self, stanza: etree._Element) -> None:
            raise StanzaError("not-allowed")

    harness = Harness(Async())
    harness.dispatch(iq_get())
    assert condition(harness.only_reply()) == "not-allowed"


def test_iq_with_an_unknown_payload_answers_service_unavailable() -> None:
    harness = serve(lambda stanza: None)
    harness.dispatch(iq_get("{urn:example:unknown}query"))
    reply = harness.only_reply()
    assert (reply.get("type"), condition(reply)) == ("error", "service-unavailable")


def test_iq_set_on_a_get_only_route_answers_service_unavailable() -> None:
    harness = serve(lambda stanza: None)
    harness.dispatch(iq_get(type="set"))
    assert condition(harness.only_reply()) == "service-unavailable"


@pytest.mark.parametrize("iq_type", ["result", "error"])
def test_iq_result_or_error_is_never_answered(iq_type: str) -> None:
    harness = serve(lambda stanza: None)
    harness.dispatch(iq_get(type=iq_type))
    harness.dispatch(iq_get(payload=None, type=iq_type))
    assert harness.sent == []


def test_message_of_type_error_is_never_answered_nor_routed() -> None:
    seen: list[etree._Element] = []

    class Echo(Handler):
        @message()
        def any_message(self, stanza: etree._Element) -> etree._Element:
            seen.append(stanza)
            return make_stanza("message", {"to": USER})

    harness = Harness(Echo())
    harness.dispatch(chat("bounced", type="error"))
    assert (seen, harness.sent) == ([], [])


def test_presence_of_type_error_is_never_routed() -> None:
    seen: list[etree._Element] = []

    class Watcher(Handler):
        @presence()
        def any_presence(self, stanza: etree._Element) -> None:
            seen.append(stanza)

    harness = Harness(Watcher())
    harness.dispatch(make_stanza("presence", {"type": "error", "from": USER, "to": DOMAIN}))
    assert seen == []


def test_iq_get_without_payload_answers_bad_request() -> None:
    harness = serve(lambda stanza: None)
    harness.dispatch(iq_get(payload=None))
    reply = harness.only_reply()
    assert (reply.get("type"), condition(reply), error_type(reply)) == (
        "error",
        "bad-request",
        "modify",
    )


def test_iq_get_with_two_payloads_answers_bad_request() -> None:
    called: list[etree._Element] = []
    harness = serve(called.append)
    stanza = iq_get()
    etree.SubElement(stanza, "{urn:example:other}extra")
    harness.dispatch(stanza)
    assert condition(harness.only_reply()) == "bad-request"
    assert called == []


def test_iq_without_type_answers_bad_request() -> None:
    harness = serve(lambda stanza: None)
    stanza = iq_get()
    del stanza.attrib["type"]
    harness.dispatch(stanza)
    assert condition(harness.only_reply()) == "bad-request"


def test_stanza_outside_the_component_namespace_is_ignored() -> None:
    harness = serve(lambda stanza: None)
    harness.dispatch(etree.Element("{jabber:client}iq", {"type": "get", "id": "x"}))
    assert harness.sent == []


# Messages and presences


def test_message_action_returning_a_stanza_sends_it() -> None:
    class Echo(Handler):
        @message("chat")
        def echo(self, stanza: etree._Element) -> etree._Element:
            reply = make_stanza("message", {"type": "chat", "to": stanza.get("from")})
            etree.SubElement(reply, f"{C}body").text = stanza.findtext(f"{C}body")
            return reply

    harness = Harness(Echo())
    harness.dispatch(chat("hello"))
    reply = harness.only_reply()
    assert (reply.get("to"), reply.findtext(f"{C}body")) == (USER, "hello")


def test_message_action_returning_a_list_sends_every_stanza_in_order() -> None:
    class Fanout(Handler):
        @message("chat")
        def fanout(self, stanza: etree._Element) -> list[etree._Element]:
            return [make_stanza("message", {"to": f"user{n}@example.org"}) for n in range(3)]

    harness = Harness(Fanout())
    harness.dispatch(chat("hello"))
    assert [s.get("to") for s in harness.sent] == [f"user{n}@example.org" for n in range(3)]


def test_message_action_returning_none_sends_nothing() -> None:
    seen: list[etree._Element] = []

    class Sink(Handler):
        @message("chat")
        def sink(self, stanza: etree._Element) -> None:
            seen.append(stanza)

    harness = Harness(Sink())
    harness.dispatch(chat("hello"))
    assert len(seen) == 1
    assert harness.sent == []


def test_message_without_a_route_gets_no_reply() -> None:
    harness = serve(lambda stanza: None)
    harness.dispatch(chat("hello"))
    assert harness.sent == []


def test_message_without_type_matches_a_normal_route() -> None:
    class Normal(Handler):
        @message("normal")
        def normal(self, stanza: etree._Element) -> etree._Element:
            return make_stanza("message", {"to": USER})

    harness = Harness(Normal())
    stanza = chat("hi")
    del stanza.attrib["type"]
    harness.dispatch(stanza)
    assert len(harness.sent) == 1


def test_presence_action_returning_a_stanza_sends_it() -> None:
    class Subscriptions(Handler):
        @presence("subscribe")
        def subscribe(self, stanza: etree._Element) -> etree._Element:
            return make_stanza("presence", {"type": "subscribed", "to": stanza.get("from")})

    harness = Harness(Subscriptions())
    harness.dispatch(make_stanza("presence", {"type": "subscribe", "from": USER, "to": DOMAIN}))
    assert harness.only_reply().get("type") == "subscribed"


# Matching order


def test_higher_priority_route_wins_over_an_earlier_declared_one() -> None:
    calls: list[str] = []

    class Both(Handler):
        @message("chat")
        def low(self, stanza: etree._Element) -> None:
            calls.append("low")

        @message("chat", priority=10)
        def high(self, stanza: etree._Element) -> None:
            calls.append("high")

    Harness(Both()).dispatch(chat("hi"))
    assert calls == ["high"]


def test_equal_priorities_go_in_declaration_order() -> None:
    calls: list[str] = []

    class Both(Handler):
        @message("chat")
        def first(self, stanza: etree._Element) -> None:
            calls.append("first")

        @message("chat")
        def second(self, stanza: etree._Element) -> None:
            calls.append("second")

    Harness(Both()).dispatch(chat("hi"))
    assert calls == ["first"]


def test_equal_priorities_across_handlers_go_in_registration_order() -> None:
    calls: list[str] = []

    class First(Handler):
        @message("chat")
        def take(self, stanza: etree._Element) -> None:
            calls.append("first")

    class Second(Handler):
        @message("chat")
        def take(self, stanza: etree._Element) -> None:
            calls.append("second")

    Harness(First(), Second()).dispatch(chat("hi"))
    assert calls == ["first"]


def test_routes_lists_higher_priority_first_then_declaration_order() -> None:
    class Many(Handler):
        @message("chat")
        def a(self, stanza: etree._Element) -> None: ...

        @message("chat", priority=5)
        def b(self, stanza: etree._Element) -> None: ...

        @message("chat")
        def c(self, stanza: etree._Element) -> None: ...

    harness = Harness(Many())
    assert [r.name for r in harness.router.routes] == ["Many.b", "Many.a", "Many.c"]


def test_xpath_with_the_c_prefix_selects_matching_messages() -> None:
    calls: list[str] = []

    class Commands(Handler):
        @message("chat", xpath="c:body[starts-with(., '!')]")
        def command(self, stanza: etree._Element) -> None:
            calls.append(stanza.findtext(f"{C}body") or "")

    harness = Harness(Commands())
    harness.dispatch(chat("!weather"))
    harness.dispatch(chat("hello"))
    assert calls == ["!weather"]


def test_xpath_miss_falls_through_to_the_next_route() -> None:
    calls: list[str] = []

    class Commands(Handler):
        @message("chat", xpath="c:body[starts-with(., '!')]", priority=1)
        def command(self, stanza: etree._Element) -> None:
            calls.append("command")

        @message("chat")
        def chatter(self, stanza: etree._Element) -> None:
            calls.append("chatter")

    harness = Harness(Commands())
    harness.dispatch(chat("hello"))
    harness.dispatch(chat("!help"))
    assert calls == ["chatter", "command"]


def test_xpath_with_a_custom_namespace_prefix() -> None:
    calls: list[str] = []

    class Events(Handler):
        @message(xpath="ev:event[@node='news']", namespaces={"ev": "urn:example:events"})
        def news(self, stanza: etree._Element) -> None:
            calls.append(stanza.get("id") or "")

    harness = Harness(Events())
    for ident, node in (("1", "news"), ("2", "sports")):
        stanza = make_stanza("message", {"id": ident, "from": USER, "to": DOMAIN})
        etree.SubElement(stanza, "{urn:example:events}event", {"node": node})
        harness.dispatch(stanza)
    harness.dispatch(chat("news"))
    assert calls == ["1"]


def test_generic_route_by_xpath_alone_matches_any_kind() -> None:
    calls: list[str] = []

    class Spy(Handler):
        @route("@from='juliet@example.org/balcony'")
        def spy(self, stanza: etree._Element) -> None:
            calls.append(etree.QName(stanza).localname)

    harness = Harness(Spy())
    harness.dispatch(chat("hi"))
    harness.dispatch(make_stanza("presence", {"from": USER, "to": DOMAIN}))
    assert calls == ["message", "presence"]


def test_bad_xpath_is_refused_when_the_handler_is_added() -> None:
    class Broken(Handler):
        @message(xpath="c:body[")
        def broken(self, stanza: etree._Element) -> None: ...

    with pytest.raises(ValueError, match="bad XPath"):
        Harness(Broken())


def test_payload_must_be_a_qualified_name() -> None:
    with pytest.raises(ValueError, match="qualified name"):
        iq("get", "forecast")


# Disco and Ping, through a component


class Weather(Handler):
    @iq("get", FORECAST)
    def forecast(self, stanza: etree._Element) -> None:
        return None

    @message("chat", feature="urn:example:chat-commands")
    def command(self, stanza: etree._Element) -> None:
        return None


def linked_component(*handlers: Handler, **options: object) -> tuple[Component, list]:
    link = RecordingLink()
    component = Component(DOMAIN, handlers, Clock(), **options)  # type: ignore[arg-type]
    component.link(link)
    return component, link.sent


def disco_info(component: Component, sent: list[etree._Element]) -> etree._Element:
    component.receive(iq_get(f"{{{NS_DISCO_INFO}}}query"))
    assert len(sent) == 1
    reply = sent[0]
    assert reply.get("type") == "result", etree.tostring(reply)
    query = reply.find(f"{{{NS_DISCO_INFO}}}query")
    assert query is not None
    return query


def test_disco_features_are_derived_from_the_routes() -> None:
    component, sent = linked_component(Weather(), Ping(), Disco())
    query = disco_info(component, sent)
    features = [f.get("var") for f in query.iter(f"{{{NS_DISCO_INFO}}}feature")]
    assert features == sorted(
        [NS_DISCO_INFO, NS_DISCO_ITEMS, NS_WEATHER, "urn:example:chat-commands", "urn:xmpp:ping"]
    )


def test_disco_without_ping_does_not_advertise_ping() -> None:
    component, sent = linked_component(Disco())
    query = disco_info(component, sent)
    features = [f.get("var") for f in query.iter(f"{{{NS_DISCO_INFO}}}feature")]
    assert features == [NS_DISCO_INFO, NS_DISCO_ITEMS]


def test_disco_identity_is_the_component_identity() -> None:
    component, sent = linked_component(Disco(), identity=("gateway", "irc", "IRC bridge"))
    query = disco_info(component, sent)
    identities = [dict(i.attrib) for i in query.iter(f"{{{NS_DISCO_INFO}}}identity")]
    assert identities == [{"category": "gateway", "type": "irc", "name": "IRC bridge"}]


def test_disco_info_on_a_node_answers_item_not_found() -> None:
    component, sent = linked_component(Disco())
    stanza = iq_get(f"{{{NS_DISCO_INFO}}}query")
    stanza[0].set("node", "some-node")
    component.receive(stanza)
    assert condition(sent[0]) == "item-not-found"


def test_builtin_ping_answers_an_empty_result() -> None:
    component, sent = linked_component(Ping())
    component.receive(iq_get("{urn:xmpp:ping}ping", id="ping-7"))
    assert len(sent) == 1
    reply = sent[0]
    assert (reply.get("type"), reply.get("id"), reply.get("to"), len(reply)) == (
        "result",
        "ping-7",
        USER,
        0,
    )


def test_route_whose_xpath_cannot_evaluate_is_refused_when_registered() -> None:
    # 'ev:' is never declared: lxml compiles the XPath but could only fail
    # when evaluating it, on every stanza. It is refused up front instead.
    class Typo(Handler):
        @iq("get", FORECAST, xpath="ev:event")
        def forecast(self, stanza: etree._Element) -> None:
            return None

    with pytest.raises(ValueError, match="ev:event"):
        Harness(Typo())


# Answers (type error, IQ result) reach only the routes that name their type


class Bounces(Handler):
    def __init__(self) -> None:
        super().__init__()
        self.bounced: list[etree._Element] = []
        self.any_message: list[etree._Element] = []
        self.iq_errors: list[etree._Element] = []

    @message("error")
    def bounce(self, stanza: etree._Element) -> None:
        self.bounced.append(stanza)

    @message()
    def anything(self, stanza: etree._Element) -> None:
        self.any_message.append(stanza)

    @iq("error", FORECAST)
    def forecast_failed(self, stanza: etree._Element) -> etree._Element:
        self.iq_errors.append(stanza)
        return make_stanza("message", {"to": USER, "type": "chat"})


def test_error_message_reaches_the_route_that_names_type_error_and_is_not_answered() -> None:
    handler = Bounces()
    harness = Harness(handler)
    assert harness.dispatch(chat("gone", type="error")) == []
    assert len(handler.bounced) == 1
    assert handler.any_message == []


def test_error_message_never_reaches_a_route_of_any_type() -> None:
    class AnyMessage(Handler):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[etree._Element] = []

        @message()
        def anything(self, stanza: etree._Element) -> None:
            self.seen.append(stanza)

    handler = AnyMessage()
    harness = Harness(handler)
    assert harness.dispatch(chat("gone", type="error")) == []
    assert handler.seen == []


def test_iq_error_reaches_the_route_that_names_it_and_may_send_stanzas_but_no_reply() -> None:
    handler = Bounces()
    harness = Harness(handler)
    harness.dispatch(iq_get(type="error"))
    assert len(handler.iq_errors) == 1
    (sent,) = harness.sent
    assert sent.tag == f"{C}message"


def test_iq_result_without_a_route_naming_it_is_dropped_unanswered() -> None:
    harness = Harness(Bounces(), Ping())
    assert harness.dispatch(iq_get(type="result")) == []


# Blocking actions have a budget of their own


class Stuck(Handler):
    @iq("get", FORECAST, blocking=True)
    def forecast(self, stanza: etree._Element) -> None:
        raise AssertionError("the pool never runs it")


def test_hung_blocking_actions_leave_the_other_routes_and_the_builtins_working() -> None:
    hung: list[Deferred[object]] = []

    def never_finishes(action: object, stanza: etree._Element) -> Deferred[object]:
        hung.append(Deferred())
        return hung[-1]

    sent: list[etree._Element] = []
    router = Router(
        sent.append,
        Clock(),
        limits=Limits(max_in_flight=2, threads=1, blocking_queue=1),
        threads=never_finishes,
    )
    router.add(Stuck())
    router.add(Ping())
    for n in range(3):
        router.dispatch(iq_get(id=f"b{n}"))
    (refused,) = sent
    assert (refused.get("id"), condition(refused)) == ("b2", "resource-constraint")
    for n in range(3):
        router.dispatch(iq_get(f"{{{NS_PING}}}ping", id=f"p{n}"))
    assert [(s.get("id"), s.get("type")) for s in sent[1:]] == [
        ("p0", "result"),
        ("p1", "result"),
        ("p2", "result"),
    ]
    assert len(hung) == 2


class Queued:
    """A thread pool whose threads take the work when the test says so."""

    def __init__(self) -> None:
        self.work: list[tuple[Callable[[etree._Element], object], etree._Element, Deferred[object]]]
        self.work = []

    def __call__(
        self, action: Callable[[etree._Element], object], stanza: etree._Element
    ) -> Deferred[object]:
        self.work.append((action, stanza, Deferred()))
        return self.work[-1][2]

    def take(self) -> None:
        """A thread takes the oldest work and runs it."""
        action, stanza, done = self.work.pop(0)
        try:
            done.callback(action(stanza))
        except Exception:
            done.errback()


class Counted(Handler):
    def __init__(self) -> None:
        super().__init__()
        self.runs = 0

    @iq("get", FORECAST, blocking=True, timeout=5)
    def forecast(self, stanza: etree._Element) -> None:
        self.runs += 1


def test_blocking_action_whose_deadline_passed_while_queued_is_never_run() -> None:
    threads, handler = Queued(), Counted()
    sent: list[etree._Element] = []
    clock = Clock()
    router = Router(sent.append, clock, threads=threads, limits=Limits(threads=1, blocking_queue=0))
    router.add(handler)
    router.dispatch(iq_get())
    with capturedLogs():
        clock.advance(5)
        (answer,) = sent
        assert condition(answer) == "remote-server-timeout"
        threads.take()
    assert handler.runs == 0
    router.dispatch(iq_get(id="q2"))  # its place in the budget is free again
    assert len(threads.work) == 1


def test_a_cancelled_idle_waiter_is_forgotten() -> None:
    waiting: list[Deferred[None]] = []

    class Pending(Handler):
        @iq("get", FORECAST)
        def forecast(self, stanza: etree._Element) -> Deferred[None]:
            waiting.append(Deferred())
            return waiting[-1]

    harness = Harness(Pending())
    harness.dispatch(iq_get())
    idle = harness.router.when_idle()
    idle.cancel()
    idle.addErrback(lambda _: None)
    assert harness.router._idle_waiters == []
    waiting[0].callback(None)
    assert harness.router.unanswered == 0


def test_blocking_iq_still_waiting_when_the_stream_closes_is_never_run() -> None:
    threads, handler = Queued(), Counted()
    component = Component(DOMAIN, [handler], Clock(), threads=threads)
    component.link(RecordingLink())
    component.receive(iq_get())
    component.unlink(Failure(ConnectionLost()))
    with capturedLogs() as logs:
        threads.take()
    assert handler.runs == 0
    assert any("the stream closed while it waited" in formatEvent(e) for e in logs)
    # Done with, at once: no answer due later, on whatever stream comes next.
    assert component.router.unanswered == 0
    assert component.clock.getDelayedCalls() == []


def test_a_blocking_message_still_waiting_when_the_stream_closes_still_runs() -> None:
    class Posts(Handler):
        def __init__(self) -> None:
            super().__init__()
            self.posted: list[str | None] = []

        @message("chat", blocking=True)
        def post(self, stanza: etree._Element) -> None:
            self.posted.append(stanza.findtext(f"{C}body"))

    threads, handler = Queued(), Posts()
    component = Component(DOMAIN, [handler], Clock(), threads=threads)
    component.link(RecordingLink())
    component.receive(chat("keep me"))
    component.unlink(Failure(ConnectionLost()))
    threads.take()
    assert handler.posted == ["keep me"]  # a message carries data: never dropped


# XEP-0128: extended information forms in disco#info


def extension(form_type: str) -> etree._Element:
    x = etree.fromstring("<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'/></x>")
    etree.SubElement(x[0], "{jabber:x:data}value").text = form_type
    return x


class Extended(Handler):
    """Extension forms at the top and at its node ``extended``."""

    def __init__(self) -> None:
        super().__init__()
        self.top = extension("urn:example:top")

    def disco_info(
        self, node: str, requester: JID
    ) -> tuple[list[tuple[str, str, str]], list[str]] | None:
        return ([("hierarchy", "leaf", "")], []) if node == "extended" else None

    def disco_forms(self, node: str | None) -> list[etree._Element]:
        return [self.top] if node is None else [extension(f"urn:example:{node}")]


def form_types(query: etree._Element) -> list[str | None]:
    return [
        x.findtext("{jabber:x:data}field/{jabber:x:data}value")
        for x in query.iter("{jabber:x:data}x")
    ]


def test_disco_info_carries_no_extension_form_by_default() -> None:
    component, sent = linked_component(Weather(), Disco())
    assert form_types(disco_info(component, sent)) == []


def test_disco_info_carries_every_handler_s_extension_forms_after_the_features() -> None:
    component, sent = linked_component(Extended(), Weather(), Extended(), Disco())
    query = disco_info(component, sent)
    assert form_types(query) == ["urn:example:top", "urn:example:top"]
    assert [etree.QName(child).localname for child in query][-3:] == ["feature", "x", "x"]


def test_disco_info_of_a_node_carries_the_claiming_handler_s_forms_only() -> None:
    component, sent = linked_component(Weather(), Extended(), Extended(), Disco())
    stanza = iq_get(f"{{{NS_DISCO_INFO}}}query")
    stanza[0].set("node", "extended")
    component.receive(stanza)
    query = sent[0].find(f"{{{NS_DISCO_INFO}}}query")
    assert query is not None and form_types(query) == ["urn:example:extended"]


def test_disco_info_sends_a_copy_of_a_form_the_handler_keeps() -> None:
    extended = Extended()
    component, sent = linked_component(extended, Disco())
    first = disco_info(component, sent)
    sent.clear()
    second = disco_info(component, sent)
    assert form_types(first) == form_types(second) == ["urn:example:top"]
    assert extended.top.getparent() is None
