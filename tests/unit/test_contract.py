"""The reply contract, through the test kit: whatever an action does, an IQ
get or set gets exactly one reply; messages and presences get none unless
the action returns stanzas."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lxml import etree
from support import (
    ALICE,
    FORECAST,
    C,
    Calls,
    ErrorAnswer,
    chat,
    chat_reply,
    error_of,
    failures,
    forecast,
    forecast_get,
    one,
    serving,
)
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs, formatEvent

from empc import Handler, StanzaError, make_message, make_stanza, message, presence
from empc.testing import DEFAULT_SENDER, FakeServer

# What an action raises, and the error it is answered with.
RAISED_AND_ANSWERED = [
    (StanzaError("item-not-found"), ("item-not-found", "cancel", None)),
    (StanzaError("not-authorized", "log in first"), ("not-authorized", "auth", "log in first")),
    (StanzaError("bad-request", type="cancel"), ("bad-request", "cancel", None)),
    (NotImplementedError("later"), ("feature-not-implemented", "cancel", None)),
    (RuntimeError("the database is down"), ("internal-server-error", "cancel", None)),
]


def raising(error: Exception) -> Callable[[etree._Element], None]:
    """An action that raises ``error``."""

    def action(stanza: etree._Element) -> None:
        raise error

    return action


# Results


def test_returning_none_answers_an_empty_result() -> None:
    server = serving(lambda stanza: None)
    reply = one(server.deliver(forecast_get()))
    assert (reply.tag, reply.get("type"), len(reply)) == (f"{C}iq", "result", 0)
    assert len(server.sent) == 1


def test_returning_an_element_answers_a_result_carrying_it() -> None:
    server = serving(lambda stanza: forecast("rain"))
    reply = one(server.deliver(forecast_get()))
    assert reply.get("type") == "result"
    assert [(child.tag, child.text) for child in reply] == [(FORECAST, "rain")]


def test_reply_swaps_to_and_from_and_keeps_the_id() -> None:
    server = serving(lambda stanza: None)
    reply = one(server.deliver(forecast_get(ALICE, id="abc-123")))
    assert (reply.get("id"), reply.get("to"), reply.get("from")) == (
        "abc-123",
        ALICE,
        server.domain,
    )


def test_error_reply_swaps_to_and_from_and_keeps_the_id() -> None:
    server = serving(raising(StanzaError("conflict")))
    reply = one(server.deliver(forecast_get(ALICE, id="err-9")))
    assert (reply.get("id"), reply.get("to"), reply.get("from")) == ("err-9", ALICE, server.domain)


# Errors


@pytest.mark.parametrize(
    ("condition", "expected_type"),
    [
        ("item-not-found", "cancel"),
        ("forbidden", "auth"),
        ("not-acceptable", "modify"),
        ("resource-constraint", "wait"),
    ],
)
def test_stanza_error_answers_its_condition_with_the_condition_s_usual_type(
    condition: str, expected_type: str
) -> None:
    server = serving(raising(StanzaError(condition)))
    reply = one(server.deliver(forecast_get()))
    assert error_of(reply) == (condition, expected_type, None)


def test_stanza_error_with_an_explicit_type_answers_that_type() -> None:
    server = serving(raising(StanzaError("item-not-found", type="wait")))
    assert error_of(one(server.deliver(forecast_get()))) == ("item-not-found", "wait", None)


def test_stanza_error_text_goes_on_the_wire() -> None:
    server = serving(raising(StanzaError("not-allowed", "members only")))
    assert error_of(one(server.deliver(forecast_get()))) == (
        "not-allowed",
        "cancel",
        "members only",
    )


def test_not_implemented_error_answers_feature_not_implemented() -> None:
    server = serving(raising(NotImplementedError("some day")))
    reply = one(server.deliver(forecast_get()))
    assert error_of(reply) == ("feature-not-implemented", "cancel", None)


def test_any_other_exception_answers_internal_server_error() -> None:
    server = serving(raising(KeyError("forecast")))
    reply = one(server.deliver(forecast_get()))
    assert error_of(reply) == ("internal-server-error", "cancel", None)


def test_internal_server_error_shows_no_traceback_nor_exception_text() -> None:
    server = serving(raising(RuntimeError("password hunter2 refused")))
    with capturedLogs():
        wire = etree.tostring(one(server.deliver(forecast_get())))
    for secret in (b"hunter2", b"RuntimeError", b"Traceback", b".py"):
        assert secret not in wire


def test_any_other_exception_is_logged_with_its_traceback() -> None:
    server = serving(raising(RuntimeError("password hunter2 refused")))
    with capturedLogs() as events:
        server.deliver(forecast_get())
    (logged,) = failures(events)
    assert logged["log_failure"].check(RuntimeError)
    assert "Weather.forecast" in formatEvent(logged)


# Deferreds and deadlines


def test_deferred_answers_when_it_fires() -> None:
    calls = Calls()
    server = serving(calls)
    assert server.deliver(forecast_get()) == []
    calls.waiting[0].callback(forecast("fog"))
    assert one(server.sent)[0].text == "fog"


@pytest.mark.parametrize(("error", "answer"), RAISED_AND_ANSWERED)
def test_deferred_failing_maps_like_a_raise(error: Exception, answer: ErrorAnswer) -> None:
    calls = Calls()
    server = serving(calls)
    server.deliver(forecast_get())
    with capturedLogs():
        calls.waiting[0].errback(error)
    assert error_of(one(server.sent)) == answer


def test_deferred_not_fired_by_the_route_timeout_answers_remote_server_timeout() -> None:
    server = serving(lambda stanza: Deferred(), route={"timeout": 5})
    server.deliver(forecast_get())
    assert server.advance(4.999) == []
    with capturedLogs():
        reply = one(server.advance(0.001))
    condition, error_type, _ = error_of(reply)
    assert (condition, error_type) == ("remote-server-timeout", "wait")


def test_route_without_timeout_has_the_component_action_timeout() -> None:
    server = serving(lambda stanza: Deferred(), action_timeout=12)
    server.deliver(forecast_get())
    assert server.advance(11.9) == []
    with capturedLogs():
        reply = one(server.advance(0.1))
    assert error_of(reply)[:2] == ("remote-server-timeout", "wait")


def test_route_timeout_wins_over_the_component_action_timeout() -> None:
    server = serving(lambda stanza: Deferred(), route={"timeout": 2}, action_timeout=12)
    server.deliver(forecast_get())
    with capturedLogs():
        assert error_of(one(server.advance(2)))[0] == "remote-server-timeout"


def test_late_callback_after_the_deadline_sends_nothing_more() -> None:
    calls = Calls()
    server = serving(calls, route={"timeout": 5})
    server.deliver(forecast_get())
    with capturedLogs():
        server.advance(5)
    calls.waiting[0].callback(forecast())
    server.advance(60)
    assert error_of(one(server.sent))[0] == "remote-server-timeout"


# Coroutines


def coroutine_server(waiting: Deferred[object], timeout: float = 30) -> FakeServer:
    async def action(stanza: etree._Element) -> object:
        return await waiting

    return serving(action, route={"timeout": timeout})


def test_coroutine_awaiting_a_deferred_answers_when_it_fires() -> None:
    waiting: Deferred[object] = Deferred()
    server = coroutine_server(waiting)
    assert server.deliver(forecast_get()) == []
    waiting.callback(forecast("hail"))
    reply = one(server.sent)
    assert (reply.get("type"), reply[0].text) == ("result", "hail")


def test_coroutine_returning_none_answers_an_empty_result() -> None:
    waiting: Deferred[object] = Deferred()
    server = coroutine_server(waiting)
    server.deliver(forecast_get())
    waiting.callback(None)
    reply = one(server.sent)
    assert (reply.get("type"), len(reply)) == ("result", 0)


@pytest.mark.parametrize(("error", "answer"), RAISED_AND_ANSWERED)
def test_coroutine_exception_maps_like_a_plain_one(error: Exception, answer: ErrorAnswer) -> None:
    waiting: Deferred[object] = Deferred()
    server = coroutine_server(waiting)
    server.deliver(forecast_get())
    with capturedLogs():
        waiting.errback(error)
    assert error_of(one(server.sent)) == answer


def test_coroutine_still_awaiting_at_the_deadline_times_out_once() -> None:
    waiting: Deferred[object] = Deferred()
    server = coroutine_server(waiting, timeout=3)
    server.deliver(forecast_get())
    with capturedLogs():
        assert error_of(one(server.advance(3)))[:2] == ("remote-server-timeout", "wait")
    waiting.callback(forecast())
    assert len(server.sent) == 1


# Blocking actions (run inline by the kit)


def test_blocking_action_runs_and_answers_with_its_result() -> None:
    server = serving(lambda stanza: forecast("snow"), route={"blocking": True})
    reply = one(server.deliver(forecast_get()))
    assert (reply.get("type"), reply[0].text) == ("result", "snow")


def test_blocking_action_returning_none_answers_an_empty_result() -> None:
    server = serving(lambda stanza: None, route={"blocking": True})
    reply = one(server.deliver(forecast_get()))
    assert (reply.get("type"), len(reply)) == ("result", 0)


@pytest.mark.parametrize(("error", "answer"), RAISED_AND_ANSWERED)
def test_blocking_action_exception_maps_like_a_plain_one(
    error: Exception, answer: ErrorAnswer
) -> None:
    server = serving(raising(error), route={"blocking": True})
    with capturedLogs():
        assert error_of(one(server.deliver(forecast_get()))) == answer


def test_blocking_route_without_a_thread_pool_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match="blocking"):
        serving(route={"blocking": True}, threads=None)


# What is never answered


def test_iq_without_a_route_answers_service_unavailable() -> None:
    server = serving()
    reply = one(server.deliver("<iq type='get'><query xmlns='urn:example:nobody'/></iq>"))
    assert error_of(reply) == ("service-unavailable", "cancel", None)


def test_iq_set_where_only_get_is_routed_answers_service_unavailable() -> None:
    server = serving()
    reply = one(server.deliver(forecast_get().replace("type='get'", "type='set'")))
    assert error_of(reply)[0] == "service-unavailable"


@pytest.mark.parametrize("iq_type", ["result", "error"])
def test_result_and_error_iqs_are_never_answered(iq_type: str) -> None:
    calls = Calls()
    server = serving(calls)
    server.deliver(forecast_get().replace("type='get'", f"type='{iq_type}'"))
    server.deliver(f"<iq type='{iq_type}' id='unknown-request'/>")
    assert (server.sent, len(calls)) == ([], 0)


def test_error_messages_are_never_answered_nor_routed() -> None:
    calls = Calls()
    server = serving(calls)
    server.deliver(chat("bounced", type="error"))
    assert (server.sent, len(calls)) == ([], 0)


# Messages and presences


def test_message_gets_no_automatic_reply() -> None:
    seen: list[etree._Element] = []
    server = serving(seen.append)
    assert server.deliver(chat("hello")) == []
    assert len(seen) == 1


def test_message_without_a_route_gets_no_reply() -> None:
    server = serving()
    assert server.deliver(chat("hello", type="groupchat")) == []


def test_message_action_returning_a_stanza_sends_it() -> None:
    server = serving(lambda stanza: chat_reply(stanza, "hello back"))
    reply = one(server.deliver(chat("hello", sender=ALICE)))
    assert (reply.get("to"), reply.get("from"), reply.findtext(f"{C}body")) == (
        ALICE,
        server.domain,
        "hello back",
    )


def test_message_action_returning_a_list_sends_each_stanza_in_order() -> None:
    server = serving(lambda stanza: [chat_reply(stanza, str(n)) for n in range(3)])
    sent = server.deliver(chat())
    assert [s.findtext(f"{C}body") for s in sent] == ["0", "1", "2"]


def test_message_action_failing_sends_nothing_and_is_logged() -> None:
    server = serving(raising(RuntimeError("oops")))
    with capturedLogs() as events:
        assert server.deliver(chat()) == []
    assert len(failures(events)) == 1


class Presences(Handler):
    @presence("subscribe")
    def subscribe(self, stanza: etree._Element) -> list[etree._Element]:
        to = stanza.get("from")
        return [
            make_stanza("presence", {"type": "subscribed", "to": to}),
            make_stanza("presence", {"type": "subscribe", "to": to}),
        ]

    @presence("unavailable")
    def gone(self, stanza: etree._Element) -> None:
        return None


def test_presence_action_returning_stanzas_sends_them() -> None:
    server = FakeServer([Presences()])
    sent = server.deliver("<presence type='subscribe'/>")
    assert [(s.get("type"), s.get("to")) for s in sent] == [
        ("subscribed", DEFAULT_SENDER),
        ("subscribe", DEFAULT_SENDER),
    ]


def test_presence_gets_no_automatic_reply() -> None:
    server = FakeServer([Presences()])
    assert server.deliver("<presence type='unavailable'/>") == []
    assert server.deliver("<presence/>") == []


# Exceptions never escape to the connection


class Generator(Handler):
    @message("chat")
    def replies(self, stanza: etree._Element):  # type: ignore[no-untyped-def]
        yield chat_reply(stanza, "first")
        raise RuntimeError("the second one failed")


def test_generator_action_failing_midway_sends_what_it_yielded_and_logs_the_rest() -> None:
    server = FakeServer([Generator()])
    with capturedLogs() as events:
        sent = server.deliver(chat())
    assert len(sent) == 1
    assert len(failures(events)) == 1


def test_stanza_for_another_domain_is_dropped_with_a_warning_naming_the_fix() -> None:
    calls = Calls()
    server = serving(calls)
    with capturedLogs() as events:
        sent = server.deliver(
            "<iq type='get' to='other.example.org'><forecast xmlns='urn:example:weather'/></iq>"
        )
    assert sent == []
    assert len(calls) == 0
    assert any("global_routes" in formatEvent(event) for event in events)


def test_stanza_to_an_address_at_the_component_is_served() -> None:
    server = serving()
    reply = one(server.deliver(forecast_get().replace("<iq ", f"<iq to='x@{server.domain}' ")))
    assert reply.get("type") == "result"
    assert reply.get("from") == f"x@{server.domain}"


def test_make_message_builds_a_message_with_a_body() -> None:
    stanza = make_message("bob@example.org", "hi", from_="alice@component.example.org", id="m1")
    assert stanza.tag == f"{C}message"
    assert dict(stanza.attrib) == {
        "to": "bob@example.org",
        "type": "chat",
        "from": "alice@component.example.org",
        "id": "m1",
    }
    assert stanza.findtext(f"{C}body") == "hi"


def test_an_error_whose_text_is_no_xml_still_gets_exactly_one_reply() -> None:
    def fails(stanza: etree._Element) -> None:
        raise StanzaError("bad-request", "control character \x01 from a database")

    server = serving(fails)
    with capturedLogs():
        reply = one(server.deliver(forecast_get()))
    assert error_of(reply)[0] == "internal-server-error"


def test_a_blocking_coroutine_is_refused_at_registration() -> None:
    class Confused(Handler):
        @message("chat", blocking=True)
        async def chat(self, stanza: etree._Element) -> None:
            return None

    with pytest.raises(ValueError, match="coroutine"):
        FakeServer([Confused()])
