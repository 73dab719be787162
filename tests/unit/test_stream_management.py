"""StreamManagement: XEP-0198 for a client stream, driven with plain elements."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from empc.protocol import LocalProtocolError
from empc.protocol._errors import BadFormat, UnsupportedStanzaType
from empc.protocol._sm import (
    NS_SM,
    HandledCountTooHigh,
    SmState,
    StreamManagement,
    UnackedQueueFull,
)
from empc.protocol._xml import new_element

PROPERTY = settings(max_examples=200, deadline=None)
WRAP = 2**32
MALFORMED_H = ["", "x", "-1", "1.5", "+1", "0x10", "\uff11", "4294967296", "99999999999"]


def from_server(name: str, **attributes: str) -> etree._Element:
    """An element in the SM namespace, parsed as the stream would deliver it."""
    return etree.fromstring(etree.tostring(new_element(NS_SM, name, attributes)))


def serialized(element: etree._Element) -> bytes:
    return etree.tostring(element)


def stanza(number: int) -> bytes:
    return f"<message id='m{number}'/>".encode()


def enabled_session(resume: str = "true", **attributes: str) -> StreamManagement:
    """A session the server enabled (resumable by default, SM-ID "sm-1")."""
    sm = StreamManagement()
    sm.enable()
    if resume == "true":
        attributes.setdefault("id", "sm-1")
    sm.enabled(from_server("enabled", resume=resume, **attributes))
    return sm


def send(sm: StreamManagement, *numbers: int) -> None:
    for number in numbers:
        sm.sent(stanza(number))


def suspended_session(*numbers: int) -> StreamManagement:
    """A resumable session whose stream ended with ``numbers`` unacknowledged."""
    sm = enabled_session()
    send(sm, *numbers)
    sm.stream_ended()
    return sm


def resuming_session(*numbers: int) -> StreamManagement:
    sm = suspended_session(*numbers)
    sm.resume()
    return sm


def set_counts(
    sm: StreamManagement, *, acked: int | None = None, inbound: int | None = None
) -> None:
    """Put the counts where 2**32 stanzas would take them: too many to send
    in a test."""
    if acked is not None:
        sm._acked = acked
    if inbound is not None:
        sm._inbound = inbound


def in_state(state: SmState) -> StreamManagement:
    """A session brought to ``state`` the way a client stream would."""
    sm = StreamManagement()
    if state is SmState.ENABLING:
        sm.enable()
    elif state is SmState.ENABLED:
        sm = enabled_session()
    elif state is SmState.SUSPENDED:
        sm = suspended_session()
    elif state is SmState.RESUMING:
        sm = resuming_session()
    assert sm.state is state
    return sm


# Construction


@pytest.mark.parametrize("bound", [0, -1, 2**31])
def test_a_queue_bound_outside_1_to_2_31_is_refused(bound: int) -> None:
    with pytest.raises(ValueError, match="max_unacked"):
        StreamManagement(max_unacked=bound)


def test_a_new_session_is_disabled_and_empty() -> None:
    sm = StreamManagement()
    assert (sm.state, sm.active, sm.resumable, sm.unacked) == (SmState.DISABLED, False, False, 0)
    assert (sm.session_id, sm.max_resume, sm.location) == (None, None, None)


# Enabling


def test_enable_asks_for_a_resumable_session() -> None:
    sm = StreamManagement()
    assert serialized(sm.enable()) == b'<enable xmlns="urn:xmpp:sm:3" resume="true"/>'
    assert sm.state is SmState.ENABLING
    assert not sm.active


@pytest.mark.parametrize("resume", ["true", "1", " true "])
def test_enabled_with_resume_and_an_id_makes_the_session_resumable(resume: str) -> None:
    sm = StreamManagement()
    sm.enable()
    sm.enabled(
        from_server("enabled", resume=resume, id="sm-1", max="300", location="[2001:db8::1]:5222")
    )
    assert (sm.state, sm.active, sm.resumable) == (SmState.ENABLED, True, True)
    assert (sm.session_id, sm.max_resume, sm.location) == ("sm-1", 300, "[2001:db8::1]:5222")


@pytest.mark.parametrize("resume", [None, "false", "0"])
def test_enabled_without_resume_is_active_but_not_resumable(resume: str | None) -> None:
    sm = StreamManagement()
    sm.enable()
    attributes = {"id": "sm-1"} if resume is None else {"id": "sm-1", "resume": resume}
    sm.enabled(from_server("enabled", **attributes))
    assert (sm.active, sm.resumable, sm.session_id) == (True, False, None)


def test_enabled_without_max_or_location_leaves_them_unknown() -> None:
    sm = enabled_session()
    assert (sm.max_resume, sm.location) == (None, None)


def test_enabled_offering_resumption_without_an_id_is_bad_format() -> None:
    sm = StreamManagement()
    sm.enable()
    with pytest.raises(BadFormat, match="without an id"):
        sm.enabled(from_server("enabled", resume="true"))
    assert not sm.resumable


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("resume", "yes"), ("resume", ""), ("max", "0"), ("max", "-5"), ("max", "ten"), ("max", "")],
)
def test_enabled_with_a_malformed_attribute_is_bad_format(attribute: str, value: str) -> None:
    sm = StreamManagement()
    sm.enable()
    with pytest.raises(BadFormat, match=attribute):
        sm.enabled(from_server("enabled", id="sm-1", **{attribute: value}))
    assert sm.state is SmState.ENABLING


def test_stanzas_sent_after_enable_are_counted_before_enabled_arrives() -> None:
    sm = StreamManagement()
    sm.enable()
    send(sm, 1)
    sm.enabled(from_server("enabled"))
    assert sm.unacked_stanzas == (stanza(1),)
    sm.acked(from_server("a", h="1"))
    assert sm.unacked == 0


@pytest.mark.parametrize("received_after_enable", [False, True])
def test_stanzas_received_before_enabled_are_not_counted(received_after_enable: bool) -> None:
    sm = StreamManagement()
    if received_after_enable:
        sm.enable()
    sm.received()
    if not received_after_enable:
        sm.enable()
    sm.enabled(from_server("enabled"))
    assert sm.answer().get("h") == "0"


def test_enable_failed_disables_and_forgets_what_was_sent_since_enable() -> None:
    sm = StreamManagement()
    sm.enable()
    send(sm, 1)
    sm.enable_failed(from_server("failed"))
    assert (sm.state, sm.unacked) == (SmState.DISABLED, 0)


def test_a_new_stream_may_enable_again_after_a_failure() -> None:
    sm = StreamManagement()
    sm.enable()
    sm.enable_failed(from_server("failed"))
    sm.enable()
    assert sm.state is SmState.ENABLING


# Sending and the queue


def test_stanzas_sent_while_disabled_are_not_kept() -> None:
    sm = StreamManagement()
    send(sm, 1)
    assert sm.unacked == 0


def test_stanzas_sent_while_enabled_are_kept_in_order() -> None:
    sm = enabled_session()
    send(sm, 1, 2, 3)
    assert sm.unacked_stanzas == (stanza(1), stanza(2), stanza(3))


def test_the_queue_refuses_a_stanza_past_its_bound_before_keeping_it() -> None:
    sm = StreamManagement(max_unacked=2)
    sm.enable()
    sm.enabled(from_server("enabled"))
    send(sm, 1, 2)
    with pytest.raises(UnackedQueueFull, match="2 stanzas wait"):
        sm.sent(stanza(3))
    assert sm.unacked_stanzas == (stanza(1), stanza(2))


def test_a_full_queue_is_a_local_protocol_error() -> None:
    assert issubclass(UnackedQueueFull, LocalProtocolError)


def test_an_ack_makes_room_in_a_full_queue() -> None:
    sm = StreamManagement(max_unacked=2)
    sm.enable()
    sm.enabled(from_server("enabled"))
    send(sm, 1, 2)
    sm.acked(from_server("a", h="1"))
    sm.sent(stanza(3))
    assert sm.unacked_stanzas == (stanza(2), stanza(3))


# Requests and answers


def test_request_is_an_empty_r() -> None:
    assert serialized(enabled_session().request()) == b'<r xmlns="urn:xmpp:sm:3"/>'


def test_answer_counts_the_stanzas_received() -> None:
    sm = enabled_session()
    for _ in range(3):
        sm.received()
    assert serialized(sm.answer()) == b'<a xmlns="urn:xmpp:sm:3" h="3"/>'


def test_the_inbound_count_wraps_at_2_32() -> None:
    sm = enabled_session()
    set_counts(sm, inbound=WRAP - 1)
    sm.received()
    assert sm.answer().get("h") == "0"


# Acknowledgements


@pytest.mark.parametrize(
    ("acks", "left"),
    [(["2"], 1), (["2", "2"], 1), (["2", "1"], 1), (["2", "1", "3"], 0)],
    ids=["an ack", "the same ack twice", "a stale ack", "an ack after a stale one"],
)
def test_acks_drop_the_acknowledged_stanzas_oldest_first_and_stale_ones_nothing(
    acks: list[str], left: int
) -> None:
    sm = enabled_session()
    send(sm, 1, 2, 3)
    for h in acks:
        sm.acked(from_server("a", h=h))
    assert sm.unacked_stanzas == (stanza(1), stanza(2), stanza(3))[3 - left :]


@pytest.mark.parametrize("h", ["003", " 3 "])
def test_h_may_have_leading_zeros_and_surrounding_spaces(h: str) -> None:
    sm = enabled_session()
    send(sm, 1, 2, 3)
    sm.acked(from_server("a", h=h))
    assert sm.unacked == 0


def test_an_ack_of_more_than_was_sent_is_handled_count_too_high() -> None:
    sm = enabled_session()
    send(sm, 1, 2)
    with pytest.raises(HandledCountTooHigh) as raised:
        sm.acked(from_server("a", h="3"))
    error = raised.value
    assert (error.condition, error.h, error.send_count) == ("undefined-condition", 3, 2)
    assert serialized(error.application_condition()) == (
        b'<handled-count-too-high xmlns="urn:xmpp:sm:3" h="3" send-count="2"/>'
    )
    assert sm.unacked == 2


def test_a_server_acknowledging_too_much_loses_resumption() -> None:
    sm = enabled_session()
    send(sm, 1)
    with pytest.raises(HandledCountTooHigh):
        sm.acked(from_server("a", h="2"))
    assert not sm.resumable
    assert sm.stream_ended() == [stanza(1)]
    assert sm.state is SmState.DISABLED


@pytest.mark.parametrize("h", [None, *MALFORMED_H])
def test_an_ack_without_an_unsigned_32_bit_h_is_bad_format(h: str | None) -> None:
    sm = enabled_session()
    send(sm, 1)
    with pytest.raises(BadFormat, match="unsigned 32-bit h"):
        sm.acked(from_server("a") if h is None else from_server("a", h=h))
    assert (sm.unacked, sm.resumable) == (1, False)


def test_an_ack_wraps_at_2_32() -> None:
    sm = enabled_session()
    set_counts(sm, acked=WRAP - 2)
    send(sm, 1, 2, 3, 4)
    sm.acked(from_server("a", h="1"))
    assert sm.unacked_stanzas == (stanza(4),)


def test_an_ack_past_the_wrap_of_more_than_was_sent_is_too_high() -> None:
    sm = enabled_session()
    set_counts(sm, acked=WRAP - 1)
    send(sm, 1)
    with pytest.raises(HandledCountTooHigh) as raised:
        sm.acked(from_server("a", h="1"))
    assert (raised.value.h, raised.value.send_count) == (1, 0)


def test_an_ack_half_the_counter_ahead_is_stale_and_one_less_too_high() -> None:
    sm = enabled_session()
    send(sm, 1)
    sm.acked(from_server("a", h=str(2**31)))
    assert sm.unacked == 1
    with pytest.raises(HandledCountTooHigh):
        sm.acked(from_server("a", h=str(2**31 - 1)))


def test_an_ack_just_behind_the_wrap_is_stale() -> None:
    sm = enabled_session()
    set_counts(sm, acked=1)
    send(sm, 1)
    sm.acked(from_server("a", h=str(WRAP - 1)))
    assert sm.unacked == 1


# The end of a stream


def test_a_resumable_session_is_suspended_when_its_stream_ends() -> None:
    sm = enabled_session()
    send(sm, 1)
    assert sm.stream_ended() == []
    assert (sm.state, sm.active, sm.resumable) == (SmState.SUSPENDED, False, True)
    assert sm.unacked_stanzas == (stanza(1),)


def test_a_session_that_is_not_resumable_ends_with_its_stream() -> None:
    sm = enabled_session(resume="false")
    send(sm, 1, 2)
    assert sm.stream_ended() == [stanza(1), stanza(2)]
    assert (sm.state, sm.unacked) == (SmState.DISABLED, 0)


def test_a_cleanly_closed_stream_ends_even_a_resumable_session() -> None:
    sm = enabled_session()
    send(sm, 1)
    assert sm.stream_ended(cleanly=True) == [stanza(1)]
    assert (sm.state, sm.resumable, sm.session_id) == (SmState.DISABLED, False, None)


def test_a_stream_ending_before_enabled_returns_what_was_sent_since_enable() -> None:
    sm = StreamManagement()
    sm.enable()
    send(sm, 1)
    assert sm.stream_ended() == [stanza(1)]
    assert sm.state is SmState.DISABLED


def test_a_stream_ending_while_resuming_keeps_the_session_for_the_next() -> None:
    sm = resuming_session(1)
    assert sm.stream_ended() == []
    assert (sm.state, sm.unacked_stanzas) == (SmState.SUSPENDED, (stanza(1),))


@pytest.mark.parametrize("state", [SmState.DISABLED, SmState.SUSPENDED])
def test_a_stream_ending_without_a_session_on_it_changes_nothing(state: SmState) -> None:
    sm = in_state(state)
    assert sm.stream_ended() == []
    assert sm.state is state


# Resumption


def test_resume_names_the_session_and_the_stanzas_received() -> None:
    sm = enabled_session()
    sm.received()
    sm.received()
    sm.stream_ended()
    assert serialized(sm.resume()) == b'<resume xmlns="urn:xmpp:sm:3" h="2" previd="sm-1"/>'
    assert sm.state is SmState.RESUMING


def test_resumption_resends_exactly_the_unacknowledged_stanzas_in_order() -> None:
    sm = enabled_session()
    send(sm, 1, 2, 3, 4)
    sm.acked(from_server("a", h="1"))
    sm.stream_ended()
    sm.resume()
    assert sm.resumed(from_server("resumed", h="2", previd="sm-1")) == [stanza(3), stanza(4)]
    assert (sm.state, sm.active, sm.resumable) == (SmState.ENABLED, True, True)


def test_resent_stanzas_stay_queued_until_acknowledged() -> None:
    sm = resuming_session(1, 2)
    sm.resumed(from_server("resumed", h="0", previd="sm-1"))
    send(sm, 3)
    sm.acked(from_server("a", h="2"))
    assert sm.unacked_stanzas == (stanza(3),)


def test_the_inbound_count_carries_over_a_resumption() -> None:
    sm = enabled_session()
    sm.received()
    sm.stream_ended()
    sm.resume()
    sm.resumed(from_server("resumed", h="0", previd="sm-1"))
    sm.received()
    assert sm.answer().get("h") == "2"


def test_a_stale_h_on_resumed_resends_everything() -> None:
    sm = enabled_session()
    send(sm, 1, 2)
    sm.acked(from_server("a", h="1"))
    sm.stream_ended()
    sm.resume()
    assert sm.resumed(from_server("resumed", h="0", previd="sm-1")) == [stanza(2)]


def test_resumed_naming_another_session_is_bad_format() -> None:
    sm = resuming_session(1)
    with pytest.raises(BadFormat, match="'sm-2', not 'sm-1'"):
        sm.resumed(from_server("resumed", h="0", previd="sm-2"))
    assert not sm.resumable
    assert sm.stream_ended() == [stanza(1)]


def test_resumed_without_previd_is_bad_format() -> None:
    with pytest.raises(BadFormat, match="None, not 'sm-1'"):
        resuming_session().resumed(from_server("resumed", h="0"))


@pytest.mark.parametrize("h", [None, *MALFORMED_H])
def test_resumed_without_an_unsigned_32_bit_h_is_bad_format(h: str | None) -> None:
    attributes = {"previd": "sm-1"} if h is None else {"previd": "sm-1", "h": h}
    with pytest.raises(BadFormat, match="unsigned 32-bit h"):
        resuming_session(1).resumed(from_server("resumed", **attributes))


def test_resumed_acknowledging_more_than_was_sent_is_handled_count_too_high() -> None:
    sm = resuming_session(1)
    with pytest.raises(HandledCountTooHigh):
        sm.resumed(from_server("resumed", h="2", previd="sm-1"))
    assert not sm.resumable


def test_a_failed_resumption_returns_what_h_does_not_acknowledge() -> None:
    sm = resuming_session(1, 2, 3)
    assert sm.resume_failed(from_server("failed", h="1")) == [stanza(2), stanza(3)]


def test_a_failed_resumption_without_h_returns_every_unacknowledged_stanza() -> None:
    sm = resuming_session(1, 2)
    assert sm.resume_failed(from_server("failed")) == [stanza(1), stanza(2)]


def test_a_failed_resumption_forgets_the_session() -> None:
    sm = enabled_session(max="300", location="example.org:5222")
    sm.received()
    send(sm, 1)
    sm.stream_ended()
    sm.resume()
    sm.resume_failed(from_server("failed"))
    assert (sm.state, sm.active, sm.resumable, sm.unacked) == (SmState.DISABLED, False, False, 0)
    assert (sm.session_id, sm.max_resume, sm.location) == (None, None, None)


def test_a_new_session_after_a_failed_resumption_counts_from_zero() -> None:
    sm = resuming_session(1)
    sm.resume_failed(from_server("failed"))
    sm.enable()
    sm.enabled(from_server("enabled"))
    send(sm, 2)
    sm.acked(from_server("a", h="1"))
    assert (sm.unacked, sm.answer().get("h")) == (0, "0")


@pytest.mark.parametrize("h", MALFORMED_H)
def test_a_failed_resumption_with_a_malformed_h_is_bad_format(h: str) -> None:
    with pytest.raises(BadFormat, match="unsigned 32-bit h"):
        resuming_session(1).resume_failed(from_server("failed", h=h))


def test_a_failed_resumption_acknowledging_too_much_is_handled_count_too_high() -> None:
    with pytest.raises(HandledCountTooHigh):
        resuming_session(1).resume_failed(from_server("failed", h="2"))


# Elements out of turn

Call = Callable[[StreamManagement], object]
# What the server may send, and the one state in which each is due.
ANSWERS: dict[str, tuple[Call, SmState]] = {
    "<enabled/>": (lambda sm: sm.enabled(from_server("enabled")), SmState.ENABLING),
    "<failed/> to <enable/>": (
        lambda sm: sm.enable_failed(from_server("failed")),
        SmState.ENABLING,
    ),
    "<a/>": (lambda sm: sm.acked(from_server("a", h="0")), SmState.ENABLED),
    "<resumed/>": (
        lambda sm: sm.resumed(from_server("resumed", h="0", previd="sm-1")),
        SmState.RESUMING,
    ),
    "<failed/> to <resume/>": (
        lambda sm: sm.resume_failed(from_server("failed")),
        SmState.RESUMING,
    ),
}
# What the client may ask for, and the states in which it may.
REQUESTS: dict[str, tuple[Call, tuple[SmState, ...]]] = {
    "enable": (lambda sm: sm.enable(), (SmState.DISABLED,)),
    "request an ack on": (lambda sm: sm.request(), (SmState.ENABLED,)),
    "acknowledge stanzas on": (lambda sm: sm.answer(), (SmState.ENABLED,)),
    "resume": (lambda sm: sm.resume(), (SmState.SUSPENDED,)),
    "send a stanza while": (
        lambda sm: sm.sent(stanza(1)),
        (SmState.DISABLED, SmState.ENABLING, SmState.ENABLED),
    ),
}


@pytest.mark.parametrize(
    ("answer", "state"),
    [(answer, state) for answer, (_, due) in ANSWERS.items() for state in SmState if state != due],
)
def test_an_answer_out_of_turn_is_unsupported_and_ends_resumption(
    answer: str, state: SmState
) -> None:
    sm = in_state(state)
    call, _ = ANSWERS[answer]
    with pytest.raises(UnsupportedStanzaType, match=answer.split()[0]):
        call(sm)
    assert (sm.state, sm.resumable) == (state, False)


@pytest.mark.parametrize(
    ("action", "state"),
    [
        (action, state)
        for action, (_, allowed) in REQUESTS.items()
        for state in SmState
        if state not in allowed
    ],
)
def test_a_request_out_of_turn_is_refused(action: str, state: SmState) -> None:
    sm = in_state(state)
    call, _ = REQUESTS[action]
    with pytest.raises(LocalProtocolError, match=f"cannot {action}"):
        call(sm)
    assert (sm.state, sm.unacked) == (state, 0)


def test_a_session_whose_server_broke_the_protocol_cannot_be_resumed() -> None:
    sm = suspended_session(1)
    with pytest.raises(UnsupportedStanzaType):
        sm.acked(from_server("a", h="1"))
    with pytest.raises(LocalProtocolError, match="broke the protocol"):
        sm.resume()
    assert sm.stream_ended() == [stanza(1)]


# Reset


def test_reset_forgets_the_session() -> None:
    sm = enabled_session(max="60")
    send(sm, 1)
    sm.received()
    sm.reset()
    assert (sm.state, sm.resumable, sm.unacked, sm.session_id, sm.max_resume) == (
        SmState.DISABLED,
        False,
        0,
        None,
        None,
    )
    sm.enable()
    sm.enabled(from_server("enabled"))
    assert sm.answer().get("h") == "0"


# Properties

steps = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(1, 5)),
        st.tuples(st.just("ack"), st.integers(0, 5)),
    ),
    max_size=40,
)


@PROPERTY
@given(start=st.integers(0, WRAP - 1), steps=steps)
def test_the_queue_holds_exactly_what_was_sent_and_not_yet_acknowledged(
    start: int, steps: list[tuple[str, int]]
) -> None:
    sm = enabled_session()
    set_counts(sm, acked=start)
    sent: list[bytes] = []
    acked = 0
    for action, count in steps:
        if action == "send":
            for _ in range(count):
                sent.append(stanza(len(sent)))
                sm.sent(sent[-1])
        else:
            acked += min(count, len(sent) - acked)
            sm.acked(from_server("a", h=str((start + acked) % WRAP)))
        assert sm.unacked == len(sent) - acked
        assert sm.unacked_stanzas == tuple(sent[acked:])


@PROPERTY
@given(start=st.integers(0, WRAP - 1), unacked=st.integers(0, 5), h=st.integers(0, WRAP - 1))
def test_any_h_acknowledges_within_what_was_sent_is_stale_or_is_refused(
    start: int, unacked: int, h: int
) -> None:
    sm = enabled_session()
    set_counts(sm, acked=start)
    send(sm, *range(unacked))
    ahead = (h - start) % WRAP
    try:
        sm.acked(from_server("a", h=str(h)))
    except HandledCountTooHigh:
        assert unacked < ahead < 2**31
        assert sm.unacked == unacked
    else:
        dropped = ahead if ahead <= unacked else 0
        assert sm.unacked_stanzas == tuple(stanza(n) for n in range(dropped, unacked))
