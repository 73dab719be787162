"""The test kit itself (empc.testing.FakeServer) and ``python -m empc routes``,
the tools a handler author works with."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from lxml import etree
from support import (
    ALICE,
    BOB,
    FORECAST,
    NS_WEATHER,
    C,
    Calls,
    Greeter,
    chat,
    chat_reply,
    error_of,
    forecast,
    forecast_get,
    one,
    serving,
    weather,
    write_config,
)
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from empc import Handler, LocalProtocolError, iq, make_stanza, message
from empc.__main__ import main
from empc.protocol import RestrictedXML
from empc.testing import DEFAULT_SENDER, NAMESPACES, FakeServer, LinkSettings

_trial = SynchronousTestCase()
failureResultOf = _trial.failureResultOf
successResultOf = _trial.successResultOf

# deliver()


def test_deliver_fills_in_to_from_and_a_fresh_iq_id() -> None:
    seen: list[etree._Element] = []
    server = serving(seen.append, domain="weather.example.org")
    server.deliver(f"<iq type='get'><forecast xmlns='{NS_WEATHER}'/></iq>")
    server.deliver(f"<iq type='get'><forecast xmlns='{NS_WEATHER}'/></iq>")
    assert [(s.get("to"), s.get("from")) for s in seen] == [
        ("weather.example.org", DEFAULT_SENDER)
    ] * 2
    first, second = (s.get("id") for s in seen)
    assert first and second and first != second


def test_deliver_keeps_what_the_stanza_gives() -> None:
    seen: list[etree._Element] = []
    server = serving(seen.append)
    stanza = f"<iq type='get' id='mine' from='{ALICE}' to='bot@{server.domain}/x'>"
    server.deliver(stanza + f"<forecast xmlns='{NS_WEATHER}'/></iq>")
    assert [(s.get("id"), s.get("from"), s.get("to")) for s in seen] == [
        ("mine", ALICE, f"bot@{server.domain}/x")
    ]


def test_deliver_gives_no_id_to_messages() -> None:
    seen: list[etree._Element] = []
    serving(seen.append).deliver(chat())
    assert seen[0].get("id") is None


def test_text_without_xmlns_is_in_the_component_namespace() -> None:
    seen: list[etree._Element] = []
    serving(seen.append).deliver("<message type='chat'><body>hi</body></message>")
    assert seen[0].tag == f"{C}message"
    assert seen[0].findtext(f"{C}body") == "hi"


def test_deliver_takes_an_element_too() -> None:
    server = serving(lambda stanza: forecast())
    stanza = make_stanza("iq", {"type": "get"})
    etree.SubElement(stanza, FORECAST)
    assert one(server.deliver(stanza)).get("type") == "result"


def test_deliver_leaves_the_given_element_as_it_is() -> None:
    server = serving(lambda stanza: forecast())
    stanza = make_stanza("iq", {"type": "get"})
    etree.SubElement(stanza, FORECAST)
    server.deliver(stanza)
    assert (stanza.get("to"), stanza.get("from"), stanza.get("id")) == (None, None, None)


def test_an_element_in_no_namespace_is_in_the_stream_s_namespace_on_the_wire() -> None:
    seen: list[etree._Element] = []
    stanza = etree.Element("message", type="chat")
    etree.SubElement(stanza, "body").text = "hi"
    serving(seen.append).deliver(stanza)
    assert seen[0].tag == f"{C}message"
    assert seen[0].findtext(f"{C}body") == "hi"


def test_deliver_returns_only_what_this_stanza_caused() -> None:
    server = serving(lambda stanza: chat_reply(stanza, "pong"))
    server.deliver(chat("one"))
    assert len(server.deliver(chat("two"))) == 1
    assert len(server.sent) == 2


# The same path as production: handshake, parser, stream, protocol


def test_the_component_links_through_the_handshake() -> None:
    server = FakeServer()
    assert server.connected
    assert server.component.connected
    assert successResultOf(server.started) is None


def test_a_handshake_that_is_not_the_xep_0114_digest_fails_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("empc.protocol._stream.handshake_digest", lambda id, secret: "0" * 40)
    server = FakeServer()
    failure = failureResultOf(server.started, AssertionError)
    assert "XEP-0114" in str(failure.value)
    assert not server.component.connected


def test_nothing_is_delivered_before_the_start_hooks_have_finished() -> None:
    class Slow(Handler):
        def start(self) -> Deferred[None]:
            return starting

    starting: Deferred[None] = Deferred()
    server = FakeServer([Slow()])
    assert not server.connected
    with pytest.raises(RuntimeError, match="not connected"):
        server.deliver(chat())
    starting.callback(None)
    assert server.connected


def test_a_delivered_stanza_comes_out_of_the_stream_parser_so_absolute_xpath_matches() -> None:
    seen: list[str | None] = []

    class Absolute(Handler):
        @message("chat", xpath="//c:body")
        def body(self, stanza: etree._Element) -> None:
            seen.append(stanza.findtext(f"{C}body"))

    FakeServer([Absolute()]).deliver(chat("hi"))
    assert seen == ["hi"]


def test_a_delivered_stanza_with_a_comment_is_refused_as_restricted_xml() -> None:
    seen: list[etree._Element] = []
    server = serving(seen.append)
    with capturedLogs():
        sent = server.deliver("<message type='chat'><!-- hidden --><body>hi</body></message>")
    assert sent == []
    assert seen == []
    assert isinstance(server.stream_error, RestrictedXML)
    assert not server.connected
    assert not server.component.connected


def test_no_stream_error_while_the_stream_is_fine() -> None:
    server = serving()
    server.deliver(chat())
    assert server.stream_error is None


def test_feed_takes_a_stanza_split_across_reads() -> None:
    server = serving(lambda stanza: chat_reply(stanza, "pong"))
    data = f"<message type='chat' from='{ALICE}' to='{server.domain}'><body>ping</body></message>"
    assert server.feed(data[:20].encode()) == []
    assert one(server.feed(data[20:].encode())).get("to") == ALICE


def test_feed_takes_two_stanzas_in_one_read() -> None:
    server = serving(lambda stanza: chat_reply(stanza, "pong"))
    data = f"<message type='chat' from='{ALICE}' to='{server.domain}'><body>1</body></message>"
    assert len(server.feed((data + data).encode())) == 2


# Blocking actions


def test_a_blocking_action_runs_in_the_test_s_thread_and_deliver_returns_its_reply() -> None:
    threads: list[int] = []

    def blocking(stanza: etree._Element) -> etree._Element:
        threads.append(threading.get_ident())
        return forecast("hail")

    server = serving(blocking, route={"blocking": True})
    reply = one(server.deliver(forecast_get()))
    assert reply.get("type") == "result"
    assert reply.findtext(FORECAST) == "hail"
    assert threads == [threading.get_ident()]


def test_a_blocking_action_runs_after_the_read_that_brought_its_stanza() -> None:
    order: list[str] = []

    class Mixed(Handler):
        @iq("get", FORECAST, blocking=True)
        def slow(self, stanza: etree._Element) -> None:
            order.append("blocking")

        @message("chat")
        def fast(self, stanza: etree._Element) -> None:
            order.append("plain")

    server = FakeServer([Mixed()])
    to = f" to='{server.domain}' id='1'"
    server.feed(
        f"<iq type='get'{to}><forecast xmlns='{NS_WEATHER}'/></iq>"
        f"<message type='chat'{to}><body>x</body></message>".encode()
    )
    assert order == ["plain", "blocking"]


def test_a_blocking_action_s_exception_comes_back_through_its_deferred() -> None:
    def broken(stanza: etree._Element) -> None:
        raise KeyError("bug")

    server = serving(broken, route={"blocking": True})
    with capturedLogs():
        reply = one(server.deliver(forecast_get()))
    assert error_of(reply)[0] == "internal-server-error"


# Stream end


def test_close_stream_ends_the_link() -> None:
    server = serving()
    assert server.close_stream() == []
    assert not server.connected
    assert not server.component.connected
    with pytest.raises(RuntimeError, match="not connected"):
        server.deliver(chat())


def test_a_reply_to_a_stanza_received_before_the_server_s_close_still_goes_out() -> None:
    calls = Calls()
    server = serving(calls)
    server.deliver(forecast_get(id="late"))
    assert server.close_stream() == []
    calls.waiting[0].callback(forecast())
    assert server.only("self::c:iq[@id='late']").get("type") == "result"
    server.advance(0)
    assert not server.connected


def test_a_blocking_action_fed_with_the_server_s_close_is_answered_before_the_end() -> None:
    server = serving(lambda stanza: forecast("rain"), route={"blocking": True})
    stanza = f"<iq type='get' id='last' to='{server.domain}' from='{ALICE}'>"
    sent = server.feed(f"{stanza}<forecast xmlns='{NS_WEATHER}'/></iq></stream:stream>".encode())
    assert one(sent).findtext(FORECAST) == "rain"
    assert not server.connected


def test_at_stream_end_pending_requests_fail_with_connection_lost() -> None:
    server = FakeServer()
    ping = make_stanza("iq", {"type": "get", "to": "example.org"})
    etree.SubElement(ping, "{urn:xmpp:ping}ping")
    answer = server.component.request(ping)
    server.close_stream()
    failureResultOf(answer, ConnectionLost)


def test_stop_closes_the_stream_before_the_stop_hooks_run() -> None:
    linked: list[bool] = []

    class Watcher(Handler):
        def stop(self) -> None:
            linked.append(self.component.connected)

    server = FakeServer([Watcher()])
    successResultOf(server.stop())
    assert linked == [False]
    assert not server.connected


def test_stop_lets_the_stream_close_once_a_running_action_has_answered() -> None:
    calls = Calls()
    server = serving(calls)
    server.deliver(forecast_get(id="pending"))
    stopped = server.stop()
    assert not stopped.called
    calls.waiting[0].callback(forecast())
    server.advance(0)
    assert server.only("self::c:iq[@id='pending']").get("type") == "result"
    assert stopped.called
    assert not server.connected


# Keepalives and pings


def test_no_keepalive_and_no_ping_unless_the_test_asks() -> None:
    server = FakeServer()
    assert server.advance(3600) == []
    assert server.connected


def test_pings_to_the_server_are_answered_by_the_fake_server_as_by_a_real_one() -> None:
    # The link's business, not the handlers': not among what was sent, and
    # answered, so the link stays up past the ping's timeout.
    server = FakeServer(link=LinkSettings(ping_interval=10, ping_timeout=5))
    assert server.advance(60) == []
    assert server.connected


# sent, find, only, clear


def test_sent_is_every_stanza_oldest_first_as_the_server_parsed_it() -> None:
    server = serving(lambda stanza: chat_reply(stanza, stanza.findtext(f"{C}body") or ""))
    for body in ("a", "b", "c"):
        server.deliver(chat(body))
    assert [s.findtext(f"{C}body") for s in server.sent] == ["a", "b", "c"]
    assert all(s.get("from") == server.domain for s in server.sent)


def test_sent_is_a_copy() -> None:
    server = serving(lambda stanza: chat_reply(stanza, "x"))
    server.deliver(chat())
    server.sent.clear()
    assert len(server.sent) == 1


def test_find_evaluates_xpath_on_each_stanza_with_c_and_stanzas_prefixes() -> None:
    server = serving()
    server.deliver(forecast_get(id="ok"))
    server.deliver(f"<iq type='get' id='ko'><nothing xmlns='{NS_WEATHER}'/></iq>")
    assert [s.get("id") for s in server.find("self::c:iq[@type='result']")] == ["ok"]
    errors = server.find("c:error/stanzas:service-unavailable")
    assert [s.get("id") for s in errors] == ["ko"]


def test_find_takes_more_prefixes() -> None:
    server = serving(lambda stanza: forecast("fog"))
    server.deliver(forecast_get())
    assert len(server.find("w:forecast[. = 'fog']", w=NS_WEATHER)) == 1
    assert server.find("w:forecast[. = 'sun']", w=NS_WEATHER) == []


def test_only_returns_the_one_match() -> None:
    server = serving(lambda stanza: forecast())
    server.deliver(chat())
    (reply,) = server.deliver(forecast_get())
    assert server.only("self::c:iq[@type='result']") is reply


def test_only_fails_listing_what_was_sent_when_nothing_matches() -> None:
    server = serving(lambda stanza: chat_reply(stanza, "distinctive-body"))
    server.deliver(chat())
    with pytest.raises(AssertionError, match="0 sent stanzas match") as caught:
        server.only("self::c:presence")
    assert "distinctive-body" in str(caught.value)


def test_only_fails_listing_what_was_sent_when_two_match() -> None:
    server = serving(lambda stanza: [chat_reply(stanza, "one"), chat_reply(stanza, "two")])
    server.deliver(chat())
    with pytest.raises(AssertionError, match="2 sent stanzas match") as caught:
        server.only("self::c:message")
    assert "one" in str(caught.value)
    assert "two" in str(caught.value)


def test_clear_forgets_what_was_sent() -> None:
    server = serving(lambda stanza: chat_reply(stanza, "x"))
    server.deliver(chat())
    server.clear()
    assert server.sent == []
    assert len(server.deliver(chat())) == 1


# advance and the clock


class Reminder(Handler):
    """Answers a chat message after ten seconds."""

    @message("chat")
    def remind(self, stanza: etree._Element) -> None:
        reply = chat_reply(stanza, "time's up")
        self.component.clock.callLater(10, self.component.send, reply)


def test_advance_moves_time_on_and_returns_what_was_sent_meanwhile() -> None:
    server = FakeServer([Reminder()])
    assert server.deliver(chat()) == []
    assert server.advance(9.9) == []
    assert one(server.advance(0.1)).findtext(f"{C}body") == "time's up"
    assert server.clock.seconds() == 10


def test_a_clock_can_be_given() -> None:
    clock = Clock()
    server = FakeServer([Reminder()], clock=clock)
    server.deliver(chat())
    clock.advance(10)
    assert len(server.sent) == 1


# What the component may send


def test_sending_with_a_foreign_from_raises_local_protocol_error() -> None:
    server = FakeServer()
    stanza = make_stanza("message", {"to": ALICE, "from": "other.example.org"})
    with pytest.raises(LocalProtocolError, match="outside the component's domain"):
        server.component.send(stanza)
    assert server.sent == []


def test_sending_without_to_raises_local_protocol_error() -> None:
    server = FakeServer()
    with pytest.raises(LocalProtocolError, match="needs a 'to'"):
        server.component.send(make_stanza("message"))


def test_sending_from_a_jid_of_the_component_s_domain_is_fine() -> None:
    server = FakeServer()
    server.component.send(make_stanza("message", {"to": ALICE, "from": f"bot@{server.domain}"}))
    assert one(server.sent).get("from") == f"bot@{server.domain}"


def test_returned_stanza_with_a_foreign_from_is_dropped_and_logged() -> None:
    server = serving(lambda stanza: make_stanza("message", {"to": BOB, "from": "example.org"}))
    with capturedLogs() as events:
        assert server.deliver(chat()) == []
    assert any("outside the component's domain" in str(e.get("why")) for e in events)


# from_config


GREETER_CONFIG = """
components:
  - domain: greeter.example.org
    secret: not-used-by-the-kit
    builtins: {version: false}
    handlers:
      - class: support:Greeter
        config: {greeting: hi there}
      - class: support:AdminGreeter
        config: {greeting: hello admin}
  - domain: other.example.org
    secret: not-used-by-the-kit
access_lists:
  admins: [alice@example.org]
limits:
  action_timeout: 7
  rate: 1
  burst: 1
"""


def test_from_config_builds_the_first_component_with_its_handlers(tmp_path: Path) -> None:
    server = FakeServer.from_config(write_config(tmp_path, GREETER_CONFIG))
    assert server.domain == "greeter.example.org"
    handlers = server.component.handlers
    assert [type(h).__name__ for h in handlers] == [
        "Greeter",
        "AdminGreeter",
        "Ping",
        "Disco",
        "Privilege",
        "Delegation",
    ]
    assert isinstance(handlers[0], Greeter)
    assert one(server.deliver(chat())).findtext(f"{C}body") == "hi there"


def test_from_config_leaves_out_the_built_ins_turned_off(tmp_path: Path) -> None:
    server = FakeServer.from_config(write_config(tmp_path, GREETER_CONFIG))
    reply = one(server.deliver("<iq type='get'><query xmlns='jabber:iq:version'/></iq>"))
    assert error_of(reply)[0] == "service-unavailable"


def test_from_config_applies_the_limits(tmp_path: Path) -> None:
    server = FakeServer.from_config(write_config(tmp_path, GREETER_CONFIG))
    ping = "<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>"
    assert one(server.deliver(ping)).get("type") == "result"
    assert error_of(one(server.deliver(ping)))[0] == "resource-constraint"


def test_from_config_applies_the_access_lists(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        GREETER_CONFIG.replace("- class: support:Greeter", "- class: support:AdminGreeter"),
    )
    server = FakeServer.from_config(path)
    assert server.deliver(chat(sender=BOB)) == []
    assert one(server.deliver(chat(sender=ALICE))).get("to") == ALICE


def test_from_config_picks_the_component_by_domain(tmp_path: Path) -> None:
    server = FakeServer.from_config(write_config(tmp_path, GREETER_CONFIG), "other.example.org")
    assert server.domain == "other.example.org"
    assert [type(h).__name__ for h in server.component.handlers] == [
        "Ping",
        "Disco",
        "Version",
        "Privilege",
        "Delegation",
    ]


def test_from_config_with_an_unknown_domain_raises_lookup_error(tmp_path: Path) -> None:
    with pytest.raises(LookupError, match=r"nowhere\.example\.org"):
        FakeServer.from_config(write_config(tmp_path, GREETER_CONFIG), "nowhere.example.org")


def test_from_config_action_timeout_is_the_config_s(tmp_path: Path) -> None:
    config = GREETER_CONFIG.replace("rate: 1", "rate: 0")
    server = FakeServer.from_config(write_config(tmp_path, config))
    never: Deferred[object] = Deferred()
    server.component.router.add(weather(lambda stanza: never))
    server.deliver(forecast_get())
    assert server.advance(6.9) == []
    with capturedLogs():
        assert error_of(one(server.advance(0.1)))[0] == "remote-server-timeout"


# python -m empc routes

PRIVILEGE_ROUTE = "message [p1:privilege | p2:privilege] (priority 10) -> Privilege.advertised"
DELEGATION_ROUTE = "message [d1:delegation | d2:delegation] (priority 10) -> Delegation.advertised"


def builtin_iq_routes(first: int) -> list[str]:
    """The last routes of every component: the built-in Privilege's and
    Delegation's IQ routes, numbered from ``first``."""
    return [
        f"  {first:3}. iq set [r:query] (priority 0) -> Privilege.roster_push",
        *(
            f"  {first + n:3}. iq get|set {{urn:xmpp:delegation:{n}}}delegation (priority 0) "
            "-> Delegation.delegated_iq"
            for n in (1, 2)
        ),
    ]


def test_routes_prints_each_domain_and_its_numbered_routes_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["routes", "-c", write_config(tmp_path, GREETER_CONFIG)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "greeter.example.org:",
        f"    1. {PRIVILEGE_ROUTE}",
        f"    2. {DELEGATION_ROUTE}",
        "    3. message chat (priority 0) -> Greeter.greet",
        "    4. message chat (priority 0; allow list:admins) -> AdminGreeter.greet",
        "    5. iq get {urn:xmpp:ping}ping (priority 0) -> Ping.ping",
        "    6. iq get {http://jabber.org/protocol/disco#info}query (priority 0) -> Disco.info",
        "    7. iq get {http://jabber.org/protocol/disco#items}query (priority 0) -> Disco.items",
        *builtin_iq_routes(8),
        "other.example.org:",
        f"    1. {PRIVILEGE_ROUTE}",
        f"    2. {DELEGATION_ROUTE}",
        "    3. iq get {urn:xmpp:ping}ping (priority 0) -> Ping.ping",
        "    4. iq get {http://jabber.org/protocol/disco#info}query (priority 0) -> Disco.info",
        "    5. iq get {http://jabber.org/protocol/disco#items}query (priority 0) -> Disco.items",
        "    6. iq get {jabber:iq:version}query (priority 0) -> Version.software_version",
        *builtin_iq_routes(7),
    ]


def test_routes_with_a_bad_config_prints_the_error_and_returns_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, GREETER_CONFIG.replace("greeting: hi there", "greting: hi"))
    assert main(["routes", "-c", path]) == 1
    output = capsys.readouterr()
    assert output.out == ""
    assert output.err.startswith("error: ")
    assert "handlers[0]" in output.err
    assert "greting" in output.err


def test_routes_with_an_unknown_access_list_prints_the_error_and_returns_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, GREETER_CONFIG.replace("admins: [", "operators: ["))
    assert main(["routes", "-c", path]) == 1
    assert "no access list named 'admins'" in capsys.readouterr().err


def test_routes_with_a_missing_config_file_returns_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["routes", "-c", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read the config file" in capsys.readouterr().err


class SendsFromAThread(Handler):
    @iq("get", "{urn:example:weather}forecast", blocking=True)
    def forecast(self, stanza: etree._Element) -> None:
        self.component.send(make_stanza("message", {"to": "juliet@example.org"}))


def test_a_blocking_action_cannot_send_as_in_production() -> None:
    server = FakeServer([SendsFromAThread()])
    with capturedLogs() as logs:
        (reply,) = server.deliver("<iq type='get'><forecast xmlns='urn:example:weather'/></iq>")
    assert reply.find("c:error/stanzas:internal-server-error", NAMESPACES) is not None
    assert any("can neither send nor ask" in str(event.get("log_failure")) for event in logs)
