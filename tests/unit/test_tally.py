"""The tally of a component's traffic: what it received, sent, answered and
refused, and how long its actions took, as the metrics read it."""

from __future__ import annotations

import pytest
from lxml import etree
from support import RecordingLink
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from empc import Component, Handler, iq, message, presence
from empc.handlers import Ping
from empc.routing import LATENCY_BUCKETS, Limits, Tally, make_message, make_stanza

DOMAIN = "echo.example.org"
ALICE = "alice@example.org/phone"
NS_SLOW = "urn:example:slow"
NS_ADMIN = "urn:example:admin"


class Slow(Handler):
    """An IQ answered when the test fires its Deferred; an admin-only IQ;
    an echo of chat messages; a record of what needs no answer."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Deferred[None]] = []
        self.heard: list[etree._Element] = []

    @iq("get", f"{{{NS_SLOW}}}query")
    def query(self, stanza: etree._Element) -> Deferred[None]:
        waiting: Deferred[None] = Deferred()
        self.waiting.append(waiting)
        return waiting

    @iq("get", f"{{{NS_ADMIN}}}query", allow=["admin@example.org"])
    def admin(self, stanza: etree._Element) -> None:
        return None

    @message("chat")
    def echo(self, stanza: etree._Element) -> etree._Element:
        return make_message(stanza.get("from", ""), "echo", from_=DOMAIN)

    @presence("unsubscribe")
    def hear_presence(self, stanza: etree._Element) -> None:
        self.heard.append(stanza)

    @message(("groupchat", "error"))
    def hear_message(self, stanza: etree._Element) -> None:
        self.heard.append(stanza)


class Counted:
    """A linked component with a tally, over a recording link."""

    def __init__(self, limits: Limits = Limits()) -> None:  # noqa: B008
        self.clock = Clock()
        self.slow = Slow()
        self.tally = Tally()
        self.component = Component(
            DOMAIN, [self.slow, Ping()], self.clock, limits=limits, tally=self.tally
        )
        self.link = RecordingLink()
        self.component.link(self.link)

    def get(self, payload: str, sender: str = ALICE, id: str = "q1") -> None:
        stanza = make_stanza("iq", {"type": "get", "id": id, "from": sender, "to": DOMAIN})
        etree.SubElement(stanza, payload)
        self.component.receive(stanza)

    def chat(self, sender: str = ALICE, type: str = "chat") -> None:
        self.component.receive(make_message(DOMAIN, "hi", type=type, from_=sender))


def test_received_and_sent_are_counted_by_kind_iq_results_apart() -> None:
    counted = Counted()
    counted.get("{urn:xmpp:ping}ping")
    counted.chat()
    counted.component.receive(make_stanza("presence", {"from": ALICE, "to": DOMAIN}))
    assert counted.tally.received == {"iq": 1, "message": 1, "presence": 1}
    assert (counted.tally.sent, counted.tally.results) == ({"message": 1}, 1)


def test_iq_replies_are_counted_by_outcome_and_condition() -> None:
    counted = Counted()
    counted.get("{urn:xmpp:ping}ping")
    counted.get("{urn:example:unknown}query")
    counted.get("{urn:example:unknown}query", id="q2")
    assert (counted.tally.results, counted.tally.errors) == (1, {"service-unavailable": 2})


def test_an_iq_answered_with_a_payload_is_counted_as_a_result() -> None:
    counted = Counted()
    counted.get(f"{{{NS_SLOW}}}query")
    counted.slow.waiting[0].callback(etree.Element("{urn:example:slow}answer"))
    assert (counted.tally.results, counted.tally.errors) == (1, {})


def test_a_request_the_component_sends_is_no_reply() -> None:
    counted = Counted()
    ping = make_stanza("iq", {"type": "get", "to": "example.org"})
    etree.SubElement(ping, "{urn:xmpp:ping}ping")
    counted.component.request(ping).addErrback(lambda _: None)
    assert counted.tally.sent == {"iq": 1}
    assert (counted.tally.results, counted.tally.errors) == (0, {})


def test_refusal_by_an_access_rule_is_counted_as_access() -> None:
    counted = Counted()
    counted.get(f"{{{NS_ADMIN}}}query")
    assert counted.tally.refused == {"access": 1}
    assert counted.tally.errors == {"forbidden": 1}


def test_refusal_over_the_senders_rate_is_counted_as_rate() -> None:
    counted = Counted(Limits(rate=1.0, burst=1))
    counted.get("{urn:xmpp:ping}ping")
    counted.get("{urn:xmpp:ping}ping", id="q2")
    assert counted.tally.refused == {"rate": 1}


def test_refusal_over_the_actions_in_flight_is_counted_as_in_flight() -> None:
    counted = Counted(Limits(max_in_flight=1))
    counted.get(f"{{{NS_SLOW}}}query")
    counted.get(f"{{{NS_SLOW}}}query", id="q2")
    counted.chat()
    assert counted.tally.refused == {"in_flight": 2}


def test_latency_is_the_time_from_admission_to_outcome_in_its_bucket() -> None:
    counted = Counted()
    counted.get(f"{{{NS_SLOW}}}query")
    counted.clock.advance(0.3)
    counted.slow.waiting[0].callback(None)
    latency = counted.tally.latency["Slow.query"]
    assert latency.total == pytest.approx(0.3)
    assert latency.counts[LATENCY_BUCKETS.index(0.5)] == 1
    assert sum(latency.counts) == 1


def test_an_action_that_answers_at_once_falls_in_the_first_bucket() -> None:
    counted = Counted()
    counted.get("{urn:xmpp:ping}ping")
    counted.get("{urn:xmpp:ping}ping", id="q2")
    latency = counted.tally.latency["Ping.ping"]
    assert (latency.counts[0], latency.total) == (2, 0.0)


def test_an_action_that_times_out_past_the_last_bound_falls_in_the_overflow_bucket() -> None:
    counted = Counted()
    counted.get(f"{{{NS_SLOW}}}query")
    with capturedLogs():
        # One step past the bound: the 30-second deadline fires then.
        counted.clock.advance(LATENCY_BUCKETS[-1] + 1)
    assert counted.tally.latency["Slow.query"].counts[-1] == 1
    assert counted.tally.errors == {"remote-server-timeout": 1}


def stopping(counted: Counted) -> None:
    counted.component.stop_sending()


def test_a_message_arriving_while_the_stream_ends_is_answered_wait_and_not_run() -> None:
    counted = Counted()
    stopping(counted)
    counted.chat()
    [refused] = counted.link.sent
    assert refused.tag == "{jabber:component:accept}message"
    assert refused.get("type") == "error"
    error = refused.find("{jabber:component:accept}error")
    assert error is not None and error.get("type") == "wait"
    assert error.find("{urn:ietf:params:xml:ns:xmpp-stanzas}resource-constraint") is not None
    assert counted.tally.refused == {"draining": 1}
    assert "Slow.echo" not in counted.tally.latency


@pytest.mark.parametrize(
    "stanza",
    [
        make_stanza("presence", {"type": "unsubscribe", "from": ALICE, "to": DOMAIN}),
        make_message(DOMAIN, "in the room", type="groupchat", from_=ALICE),
        make_message(DOMAIN, "bounce", type="error", from_=ALICE),
    ],
    ids=["presence", "groupchat", "message error"],
)
def test_what_asks_for_no_answer_is_still_served_while_the_stream_ends(
    stanza: etree._Element,
) -> None:
    counted = Counted()
    stopping(counted)
    counted.component.receive(stanza)
    assert counted.slow.heard == [stanza]
    assert counted.link.sent == []
    assert counted.tally.refused == {}
