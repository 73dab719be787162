"""Admission, through the test kit: who may use a route (access rules) and
how much (rate and in-flight limits), checked before the action runs."""

from __future__ import annotations

from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree
from support import (
    ALICE,
    ALICE_LAPTOP,
    BOB,
    CAROL,
    Calls,
    chat,
    error_of,
    forecast_get,
    one,
    serving,
)
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from empc import Handler, iq, message
from empc.protocol import JID
from empc.routing import Limits, RateLimiter
from empc.routing._admission import MAX_SENDERS
from empc.testing import FakeServer

NS_ADMIN = "urn:example:admin"
ADMIN_GET = f"<iq type='get' from='{{sender}}'><status xmlns='{NS_ADMIN}'/></iq>"
ADMIN_SET = f"<iq type='set' from='{{sender}}'><status xmlns='{NS_ADMIN}'/></iq>"
ADMINS = {"admins": ["alice@example.org", "example.net"]}


def served(server: FakeServer, stanza: str) -> bool:
    """Whether an IQ was served (True) or refused ``forbidden`` (False)."""
    reply = one(server.deliver(stanza))
    if reply.get("type") == "result":
        return True
    assert error_of(reply) == ("forbidden", "auth", None)
    return False


def allowed(server: FakeServer, *senders: str) -> list[str]:
    """Which of ``senders`` the forecast IQ route serves."""
    return [sender for sender in senders if served(server, forecast_get(sender))]


# Access rules


def test_allow_by_bare_jid_admits_every_resource_of_that_user_only() -> None:
    server = serving(route={"allow": ["alice@example.org"]})
    assert allowed(server, ALICE, ALICE_LAPTOP, BOB, CAROL) == [ALICE, ALICE_LAPTOP]


def test_allow_by_domain_admits_every_user_of_that_domain() -> None:
    server = serving(route={"allow": ["example.net"]})
    assert allowed(server, ALICE, BOB, CAROL) == [CAROL]


def test_allow_by_named_list_admits_its_members() -> None:
    server = serving(route={"allow": ["list:admins"]}, access_lists=ADMINS)
    assert allowed(server, ALICE, BOB, CAROL) == [ALICE, CAROL]


def test_deny_alone_refuses_only_those_it_names() -> None:
    server = serving(route={"deny": ["bob@example.org"]})
    assert allowed(server, ALICE, BOB, CAROL) == [ALICE, CAROL]


def test_deny_wins_over_allow() -> None:
    server = serving(route={"allow": ["example.org"], "deny": ["bob@example.org"]})
    assert allowed(server, ALICE, BOB, CAROL) == [ALICE]


def test_deny_by_named_list_wins_over_allow_by_domain() -> None:
    server = serving(
        route={"allow": ["example.org", "example.net"], "deny": ["list:admins"]},
        access_lists=ADMINS,
    )
    assert allowed(server, ALICE, BOB, CAROL) == [BOB]


def test_refused_iq_is_answered_forbidden_and_its_action_never_runs() -> None:
    calls = Calls()
    server = serving(calls, route={"allow": ["alice@example.org"]})
    reply = one(server.deliver(forecast_get(BOB, id="q-7")))
    assert error_of(reply) == ("forbidden", "auth", None)
    assert (reply.get("id"), reply.get("to")) == ("q-7", BOB)
    assert len(calls) == 0


def test_refused_message_is_dropped_without_a_reply() -> None:
    calls = Calls()
    server = serving(calls, route={"allow": ["alice@example.org"]})
    with capturedLogs():
        assert server.deliver(chat(sender=BOB)) == []
    assert len(calls) == 0


class Admin(Handler):
    """Handler-level rules, one route overriding them."""

    allow: ClassVar[list[str] | None] = ["list:admins"]
    deny: ClassVar[list[str] | None] = ["carol@example.net"]

    @iq("get", f"{{{NS_ADMIN}}}status")
    def status(self, stanza: etree._Element) -> None:
        return None

    @iq("set", f"{{{NS_ADMIN}}}status", allow=["example.org", "example.net"])
    def set_status(self, stanza: etree._Element) -> None:
        return None

    @iq("get", f"{{{NS_ADMIN}}}open", deny=[])
    def open_status(self, stanza: etree._Element) -> None:
        return None


def admin_server() -> FakeServer:
    return FakeServer([Admin()], access_lists=ADMINS)


def test_handler_allow_and_deny_apply_to_its_routes() -> None:
    server = admin_server()
    dave = "dave@example.net/x"
    assert [s for s in (ALICE, BOB, CAROL, dave) if served(server, ADMIN_GET.format(sender=s))] == [
        ALICE,
        dave,
    ]


def test_route_allow_replaces_the_handler_allow_and_the_handler_deny_still_wins() -> None:
    server = admin_server()
    senders = (ALICE, BOB, CAROL)
    assert [s for s in senders if served(server, ADMIN_SET.format(sender=s))] == [ALICE, BOB]


def test_route_deny_replaces_the_handler_deny() -> None:
    server = admin_server()
    stanza = f"<iq type='get' from='{CAROL}'><open xmlns='{NS_ADMIN}'/></iq>"
    assert served(server, stanza)


def test_unknown_list_name_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match="no access list named 'operators'"):
        serving(route={"allow": ["list:operators"]}, access_lists=ADMINS)


def test_unknown_list_name_in_a_handler_rule_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match=r"Admin\.status: no access list named 'admins'"):
        FakeServer([Admin()])


def test_rule_with_an_upper_case_local_part_still_matches_the_sender() -> None:
    server = serving(route={"deny": ["Bob@example.org"]})
    assert allowed(server, ALICE, BOB) == [ALICE]


# Rate limits


def rate_limited(rate: float = 1.0, burst: int = 2) -> FakeServer:
    return serving(limits=Limits(rate=rate, burst=burst))


def answers(server: FakeServer, sender: str, count: int) -> list[str | None]:
    """The reply type of ``count`` forecast IQs from ``sender``:
    ``result`` or the error condition."""
    replies = [one(server.deliver(forecast_get(sender))) for _ in range(count)]
    return [r.get("type") if r.get("type") == "result" else error_of(r)[0] for r in replies]


def test_iqs_over_the_burst_are_answered_resource_constraint() -> None:
    server = rate_limited(burst=2)
    assert answers(server, ALICE, 3) == ["result", "result", "resource-constraint"]
    assert error_of(server.sent[-1])[:2] == ("resource-constraint", "wait")


def test_tokens_refill_as_the_clock_advances() -> None:
    server = rate_limited(rate=2, burst=2)
    answers(server, ALICE, 2)
    server.advance(0.5)
    assert answers(server, ALICE, 2) == ["result", "resource-constraint"]
    server.advance(1)
    assert answers(server, ALICE, 3) == ["result", "result", "resource-constraint"]


def test_another_resource_of_the_same_user_shares_the_bucket() -> None:
    server = rate_limited(burst=2)
    answers(server, ALICE, 2)
    assert answers(server, ALICE_LAPTOP, 1) == ["resource-constraint"]


def test_another_user_has_a_bucket_of_their_own() -> None:
    server = rate_limited(burst=2)
    answers(server, ALICE, 3)
    assert answers(server, BOB, 2) == ["result", "result"]


def test_messages_over_the_rate_are_dropped() -> None:
    calls = Calls()
    server = serving(calls, limits=Limits(rate=1, burst=1))
    with capturedLogs():
        for _ in range(3):
            assert server.deliver(chat(sender=ALICE)) == []
    assert len(calls) == 1


def users(count: int) -> list[JID]:
    return [JID.parse(f"user{n}@example.org") for n in range(count)]


def test_rate_limiter_keeps_at_most_max_senders_buckets_by_default() -> None:
    limiter = RateLimiter(Clock(), rate=1, burst=5)
    most = 0
    for sender in users(25_000):
        assert limiter.allow(sender)
        most = max(most, len(limiter))
    assert most == MAX_SENDERS == 10_000


def test_rate_limiter_bound_holds_when_no_bucket_has_refilled() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, rate=0.001, burst=1, max_senders=100)
    for sender in users(1_000):
        clock.advance(0.01)
        limiter.allow(sender)
        assert len(limiter) <= 100


def test_rate_limiter_bound_holds_when_known_senders_come_back_between_new_ones() -> None:
    limiter = RateLimiter(Clock(), rate=0.001, burst=100, max_senders=10)
    known: list[JID] = []
    for batch in range(50):
        fresh = [JID.parse(f"user{batch}-{n}@example.org") for n in range(5)]
        for sender in known + fresh:
            limiter.allow(sender)
            assert len(limiter) <= 10
        known += fresh


def test_refilled_buckets_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, rate=1, burst=5)  # refilled within 5 s
    for sender in users(50):
        limiter.allow(sender)
    clock.advance(5)
    limiter.allow(JID.parse("alice@example.org"))
    clock.advance(5)
    limiter.allow(JID.parse("alice@example.org"))
    assert len(limiter) == 2  # alice's bucket, in each generation


@pytest.mark.parametrize("emptied_at", [n / 4 for n in range(33)])
def test_a_bucket_is_kept_until_it_has_refilled_while_others_come_and_go(
    emptied_at: float,
) -> None:
    clock = Clock()
    alice, bob = JID.parse("alice@example.org"), JID.parse("bob@example.org")
    limiter = RateLimiter(clock, rate=0.25, burst=1)  # refilled within 4 s
    for _ in range(int(emptied_at * 4)):  # bob's traffic makes the turns come
        clock.advance(0.25)
        limiter.allow(bob)
    assert limiter.allow(alice)
    for _ in range(15):
        clock.advance(0.25)
        limiter.allow(bob)
    assert not limiter.allow(alice)  # 0.9375 token since it emptied


@pytest.mark.parametrize(
    ("rate", "burst", "wrong"), [(0, 5, "rate"), (-1, 5, "rate"), (1, 0, "burst")]
)
def test_rate_limiter_refuses_a_rate_or_burst_that_would_refuse_everyone(
    rate: float, burst: int, wrong: str
) -> None:
    with pytest.raises(ValueError, match=wrong):
        RateLimiter(Clock(), rate=rate, burst=burst)


def reference_answers(steps: list[tuple[int, float]], rate: float, burst: int) -> list[bool]:
    """What a token bucket per sender that forgets nothing answers."""
    buckets: dict[int, tuple[float, float]] = {}
    now = 0.0
    answers = []
    for sender, wait in steps:
        now += wait
        tokens, then = buckets.get(sender, (float(burst), now))
        tokens = min(float(burst), tokens + (now - then) * rate)
        answers.append(tokens >= 1)
        buckets[sender] = (tokens - 1 if tokens >= 1 else tokens, now)
    return answers


# Few senders and short waits in quarter seconds (exact in binary): a
# sender often comes back just before, on or after the edge of a turn.
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 4).map(lambda n: n / 4)), max_size=200
    ),
    rate=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    burst=st.integers(1, 4),
)
def test_forgetting_refilled_buckets_never_changes_an_answer(
    steps: list[tuple[int, float]], rate: float, burst: int
) -> None:
    clock = Clock()
    limiter = RateLimiter(clock, rate=rate, burst=burst)
    senders = users(4)
    answers = []
    for sender, wait in steps:
        clock.advance(wait)
        answers.append(limiter.allow(senders[sender]))
    assert answers == reference_answers(steps, rate, burst)


# Actions in flight


def test_iq_over_the_global_in_flight_limit_is_answered_resource_constraint_wait() -> None:
    calls = Calls()
    server = serving(calls, limits=Limits(max_in_flight=2))
    assert server.deliver(forecast_get()) == server.deliver(forecast_get()) == []
    reply = one(server.deliver(forecast_get()))
    assert error_of(reply)[:2] == ("resource-constraint", "wait")
    assert len(calls) == 2


def test_message_over_the_global_in_flight_limit_is_dropped() -> None:
    calls = Calls()
    server = serving(calls, limits=Limits(max_in_flight=2))
    server.deliver(forecast_get())
    server.deliver(chat())
    with capturedLogs():
        assert server.deliver(chat()) == []
    assert len(calls) == 2


def test_once_an_action_finishes_a_new_one_is_admitted() -> None:
    calls = Calls()
    server = serving(calls, limits=Limits(max_in_flight=2))
    server.deliver(forecast_get())
    server.deliver(forecast_get())
    calls.waiting[0].callback(None)
    assert one(server.sent).get("type") == "result"
    server.clear()
    assert server.deliver(forecast_get()) == []
    assert len(calls) == 3
    assert error_of(one(server.deliver(forecast_get())))[0] == "resource-constraint"


def test_an_action_that_timed_out_frees_its_place() -> None:
    calls = Calls()
    server = serving(calls, route={"timeout": 5}, limits=Limits(max_in_flight=1))
    server.deliver(forecast_get())
    with capturedLogs():
        server.advance(5)
    server.clear()
    assert server.deliver(forecast_get()) == []
    assert len(calls) == 2


def test_a_blocking_action_that_timed_out_keeps_its_place_until_its_thread_is_done() -> None:
    threads = Calls()  # the pool: its work ends when the test says so
    server = serving(
        route={"timeout": 5, "blocking": True},
        limits=Limits(threads=1, blocking_queue=0),
        threads=lambda action, stanza: threads(stanza),
    )
    server.deliver(forecast_get())
    with capturedLogs():
        (timed_out,) = server.advance(5)
    assert error_of(timed_out)[0] == "remote-server-timeout"
    # The thread still runs: no room for another action yet.
    assert error_of(one(server.deliver(forecast_get())))[0] == "resource-constraint"
    threads.waiting[0].callback(None)
    server.clear()
    assert server.deliver(forecast_get()) == []  # admitted, and now waiting
    assert len(threads) == 2


class Quota(Handler):
    """One route allows a single action at a time; the other has no limit."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = Calls()

    @iq("get", f"{{{NS_ADMIN}}}status", max_in_flight=1)
    def status(self, stanza: etree._Element) -> object:
        return self.calls(stanza)

    @message("chat", max_in_flight=1)
    def chat(self, stanza: etree._Element) -> object:
        return self.calls(stanza)

    @iq("set", f"{{{NS_ADMIN}}}status")
    def set_status(self, stanza: etree._Element) -> object:
        return self.calls(stanza)


def test_iq_over_the_route_in_flight_limit_is_answered_resource_constraint_wait() -> None:
    quota = Quota()
    server = FakeServer([quota])
    assert server.deliver(ADMIN_GET.format(sender=ALICE)) == []
    reply = one(server.deliver(ADMIN_GET.format(sender=BOB)))
    assert error_of(reply)[:2] == ("resource-constraint", "wait")
    assert len(quota.calls) == 1


def test_route_in_flight_limit_leaves_other_routes_alone() -> None:
    quota = Quota()
    server = FakeServer([quota])
    server.deliver(ADMIN_GET.format(sender=ALICE))
    assert server.deliver(ADMIN_SET.format(sender=ALICE)) == []
    assert server.deliver(ADMIN_SET.format(sender=ALICE)) == []
    assert len(quota.calls) == 3


def test_message_over_the_route_in_flight_limit_is_dropped() -> None:
    quota = Quota()
    server = FakeServer([quota])
    server.deliver(chat())
    with capturedLogs():
        assert server.deliver(chat()) == []
    assert len(quota.calls) == 1


def test_once_the_route_action_finishes_the_route_admits_a_new_one() -> None:
    quota = Quota()
    server = FakeServer([quota])
    server.deliver(ADMIN_GET.format(sender=ALICE))
    quota.calls.waiting[0].callback(None)
    server.clear()
    assert server.deliver(ADMIN_GET.format(sender=ALICE)) == []
    assert len(quota.calls) == 2


def test_a_thread_runner_that_fails_at_once_frees_the_place() -> None:
    def broken_pool(action: object, stanza: object) -> object:
        raise RuntimeError("the pool is stopped")

    server = serving(route={"blocking": True}, limits=Limits(max_in_flight=1), threads=broken_pool)
    with capturedLogs():
        first = one(server.deliver(forecast_get()))
        second = one(server.deliver(forecast_get()))
    assert error_of(first)[0] == error_of(second)[0] == "internal-server-error"
