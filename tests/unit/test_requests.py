"""PendingRequests and Component.request: ids, answers, deadlines, link loss."""

from __future__ import annotations

import pytest
from lxml import etree
from support import RecordingLink
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from empc import Component, LocalProtocolError, NotConnected, RequestTimeout, StanzaError
from empc.routing import NS_STANZAS, PendingRequests, make_stanza

_trial = SynchronousTestCase()
successResultOf = _trial.successResultOf
failureResultOf = _trial.failureResultOf
assertNoResult = _trial.assertNoResult

PEER = "weather.example.org"


def ping_iq(to: str = PEER) -> etree._Element:
    iq = make_stanza("iq", {"type": "get", "to": to})
    etree.SubElement(iq, "{urn:xmpp:ping}ping")
    return iq


def answer(
    request: etree._Element, type: str = "result", sender: str | None = None
) -> etree._Element:
    return make_stanza(
        "iq",
        {
            "type": type,
            "id": request.get("id"),
            "from": request.get("to") if sender is None else sender,
            "to": "echo.example.org",
        },
    )


def error_answer(request: etree._Element, condition: str, error_type: str) -> etree._Element:
    reply = answer(request, "error")
    error = etree.SubElement(reply, "{jabber:component:accept}error", {"type": error_type})
    etree.SubElement(error, f"{{{NS_STANZAS}}}{condition}")
    etree.SubElement(error, f"{{{NS_STANZAS}}}text").text = "go away"
    return reply


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pending(clock: Clock) -> PendingRequests:
    return PendingRequests(clock)


@pytest.fixture
def component(clock: Clock) -> Component:
    return Component("echo.example.org", [], clock, request_timeout=30)


# PendingRequests


def test_register_sets_an_id_of_at_least_16_characters(pending: PendingRequests) -> None:
    iq = ping_iq()
    pending.register(iq, 10)
    assert len(iq.get("id") or "") >= 16


def test_register_gives_two_requests_different_ids(pending: PendingRequests) -> None:
    first, second = ping_iq(), ping_iq()
    pending.register(first, 10)
    pending.register(second, 10)
    assert first.get("id") != second.get("id")


def test_register_replaces_an_id_the_caller_chose(pending: PendingRequests) -> None:
    iq = ping_iq()
    iq.set("id", "1")
    pending.register(iq, 10)
    assert iq.get("id") != "1"


def test_result_answer_fires_the_deferred_with_the_answer(pending: PendingRequests) -> None:
    iq = ping_iq()
    d = pending.register(iq, 10)
    result = answer(iq)
    assert pending.resolve(result) is True
    assert successResultOf(d) is result


def test_result_answer_cancels_the_deadline(pending: PendingRequests, clock: Clock) -> None:
    iq = ping_iq()
    pending.register(iq, 10)
    pending.resolve(answer(iq))
    assert clock.getDelayedCalls() == []
    assert len(pending) == 0


def test_error_answer_fails_with_the_stanza_error_condition(pending: PendingRequests) -> None:
    iq = ping_iq()
    d = pending.register(iq, 10)
    pending.resolve(error_answer(iq, "forbidden", "auth"))
    error = failureResultOf(d, StanzaError).value
    assert (error.condition, error.type, error.text) == ("forbidden", "auth", "go away")


def test_no_answer_before_the_deadline_fails_with_request_timeout(
    pending: PendingRequests, clock: Clock
) -> None:
    d = pending.register(ping_iq(), 10)
    clock.advance(9.9)
    assertNoResult(d)
    clock.advance(0.1)
    failureResultOf(d, RequestTimeout)


def test_answer_from_another_jid_is_ignored(pending: PendingRequests) -> None:
    iq = ping_iq()
    d = pending.register(iq, 10)
    assert pending.resolve(answer(iq, sender="evil.example.net")) is False
    assertNoResult(d)


def test_answer_from_another_jid_leaves_the_real_answer_accepted(
    pending: PendingRequests,
) -> None:
    iq = ping_iq()
    d = pending.register(iq, 10)
    pending.resolve(answer(iq, sender="evil.example.net"))
    pending.resolve(answer(iq))
    successResultOf(d)


def test_answer_with_an_unknown_id_is_not_resolved(pending: PendingRequests) -> None:
    iq = ping_iq()
    d = pending.register(iq, 10)
    stray = answer(iq)
    stray.set("id", "not-ours")
    assert pending.resolve(stray) is False
    assertNoResult(d)


def test_answer_from_the_same_domain_in_another_case_is_accepted(
    pending: PendingRequests,
) -> None:
    iq = ping_iq()
    d = pending.register(iq, 10)
    assert pending.resolve(answer(iq, sender=PEER.upper())) is True
    successResultOf(d)


def test_fail_all_fails_every_pending_request(pending: PendingRequests, clock: Clock) -> None:
    deferreds = [pending.register(ping_iq(), 10) for _ in range(3)]
    pending.fail_all(Failure(ConnectionLost()))
    for d in deferreds:
        failureResultOf(d, ConnectionLost)
    assert clock.getDelayedCalls() == []


# Component.request


def test_request_while_not_connected_fails_at_once_with_not_connected(
    component: Component, clock: Clock
) -> None:
    d = component.request(ping_iq())
    failureResultOf(d, NotConnected)
    assert clock.getDelayedCalls() == []


def test_request_sends_the_iq_with_a_fresh_id(component: Component) -> None:
    link = RecordingLink()
    component.link(link)
    iq = ping_iq()
    component.request(iq)
    assert link.sent == [iq]
    assert len(iq.get("id") or "") >= 16


def test_request_result_received_by_the_component_fires_the_deferred(
    component: Component,
) -> None:
    link = RecordingLink()
    component.link(link)
    d = component.request(ping_iq())
    result = answer(link.sent[0])
    component.receive(result)
    assert successResultOf(d) is result


def test_request_uses_the_component_default_timeout(component: Component, clock: Clock) -> None:
    component.link(RecordingLink())
    d = component.request(ping_iq())
    clock.advance(29.9)
    assertNoResult(d)
    clock.advance(0.1)
    failureResultOf(d, RequestTimeout)


def test_request_fails_with_the_reason_when_the_link_drops(component: Component) -> None:
    component.link(RecordingLink())
    d = component.request(ping_iq())
    component.unlink(Failure(ConnectionLost()))
    failureResultOf(d, ConnectionLost)


def test_request_refused_by_the_link_fails_at_once_with_local_protocol_error(
    component: Component, clock: Clock
) -> None:
    component.link(RecordingLink(refuse=True))
    failureResultOf(component.request(ping_iq()), LocalProtocolError)
    assert clock.getDelayedCalls() == []


def test_request_without_to_fails_with_local_protocol_error_instead_of_raising(
    component: Component,
) -> None:
    # Component.request promises a failed Deferred (LocalProtocolError) when
    # the IQ cannot be sent; an IQ without 'to' cannot be sent.
    component.link(RecordingLink())
    iq = make_stanza("iq", {"type": "get"})
    etree.SubElement(iq, "{urn:xmpp:ping}ping")
    failureResultOf(component.request(iq), LocalProtocolError)
