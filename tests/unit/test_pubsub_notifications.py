"""PubSub notifications: what each change sends to whom, as XEP-0060 says,
in bounded batches; the last item on subscribe; bounces that end a
subscription."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from lxml import etree
from test_pubsub_support import (
    ALICE,
    BOB,
    CAROL,
    ENTRY,
    E,
    ask,
    create,
    events,
    field,
    fired,
    ok,
    publish,
    service,
    subscribe,
)
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from empc import JID, NotConnected, SendQueueFull
from empc.forms import NS_DATA
from empc.pubsub import NS_PUBSUB, Item, NodeConfig, Outcome, PubSub, SqlStore
from empc.pubsub._notifier import Notifier
from empc.storage import Database, InlineRunner
from empc.testing import FakeServer

T = TypeVar("T")


def test_a_publication_notifies_every_subscriber_with_the_payload() -> None:
    server, _ = service()
    create(server)
    ok(subscribe(server))
    ok(subscribe(server, sender=CAROL))
    sent = server.deliver(
        f"<iq type='set' from='{ALICE}'><pubsub xmlns='{NS_PUBSUB}'>"
        f"<publish node='news'><item id='a'>{ENTRY}</item></publish></pubsub></iq>"
    )
    notified = [s for s in sent if s.find(f"{E}event") is not None]
    assert sorted(s.get("to") or "" for s in notified) == [BOB, CAROL]
    assert {s.get("type") for s in notified} == {"headline"}
    item = notified[0].find(f"{E}event/{E}items[@node='news']/{E}item[@id='a']")
    assert item is not None and item.find("{http://www.w3.org/2005/Atom}entry") is not None


def test_the_result_goes_before_the_notifications() -> None:
    server, _ = service()
    create(server)
    ok(subscribe(server))
    sent = server.deliver(
        f"<iq type='set' from='{ALICE}'><pubsub xmlns='{NS_PUBSUB}'>"
        f"<publish node='news'><item>{ENTRY}</item></publish></pubsub></iq>"
    )
    assert [etree.QName(s).localname for s in sent] == ["iq", "message"]


def test_normal_notifications_when_configured() -> None:
    server, _ = service()
    create(server, config=field("notification_type", "normal"))
    ok(subscribe(server))
    sent = server.deliver(
        f"<iq type='set' from='{ALICE}'><pubsub xmlns='{NS_PUBSUB}'>"
        f"<publish node='news'><item>{ENTRY}</item></publish></pubsub></iq>"
    )
    assert [s.get("type") for s in sent if etree.QName(s).localname == "message"] == ["normal"]


def test_without_deliver_payloads_the_item_comes_alone() -> None:
    server, _ = service()
    create(server, config=field("deliver_payloads", "0"))
    ok(subscribe(server))
    server.clear()
    publish(server, item_id="a")
    (event,) = events(server.sent)
    item = event.find(f"{E}items/{E}item")
    assert item is not None and item.get("id") == "a" and len(item) == 0


def test_a_retraction_notifies_subscribers() -> None:
    server, _ = service()
    create(server)
    ok(publish(server, item_id="a"))
    ok(subscribe(server))
    server.clear()
    ok(ask(server, "set", "<retract node='news' notify='true'><item id='a'/></retract>"))
    (event,) = events(server.sent, to=BOB)
    assert event.find(f"{E}items[@node='news']/{E}retract").get("id") == "a"  # type: ignore[union-attr]


def test_a_retraction_is_silent_when_neither_the_request_nor_the_node_asks() -> None:
    server, _ = service()
    create(server, config=field("notify_retract", "0"))
    ok(publish(server, item_id="a"))
    ok(subscribe(server))
    server.clear()
    ok(ask(server, "set", "<retract node='news'><item id='a'/></retract>"))
    assert events(server.sent) == []


def test_a_purge_notifies_subscribers() -> None:
    server, _ = service()
    create(server)
    ok(subscribe(server))
    server.clear()
    ok(ask(server, "set", "<purge node='news'/>", owner=True))
    (event,) = events(server.sent, to=BOB)
    assert event.find(f"{E}purge").get("node") == "news"  # type: ignore[union-attr]


def test_a_deletion_notifies_subscribers_with_the_redirect() -> None:
    server, _ = service()
    create(server)
    ok(subscribe(server))
    server.clear()
    body = "<delete node='news'><redirect uri='xmpp:elsewhere?;node=news'/></delete>"
    ok(ask(server, "set", body, owner=True))
    (event,) = events(server.sent, to=BOB)
    redirect = event.find(f"{E}delete[@node='news']/{E}redirect")
    assert redirect is not None and redirect.get("uri") == "xmpp:elsewhere?;node=news"


def test_a_configuration_change_notifies_subscribers_with_the_form() -> None:
    server, _ = service()
    create(server)
    ok(subscribe(server))
    server.clear()
    form = (
        "<configure node='news'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
        f"<value>{NS_PUBSUB}#node_config</value></field>{field('title', 'Daily')}</x></configure>"
    )
    ok(ask(server, "set", form, owner=True))
    (event,) = events(server.sent, to=BOB)
    x = event.find(f"{E}configuration[@node='news']/{{{NS_DATA}}}x")
    assert x is not None and x.get("type") == "result"


def test_the_last_item_is_sent_on_subscribe_when_configured() -> None:
    server, _ = service()
    create(server, config=field("send_last_published_item", "on_sub"))
    ok(publish(server, item_id="a"))
    ok(publish(server, item_id="b"))
    server.clear()
    ok(subscribe(server))
    (event,) = events(server.sent, to=BOB)
    assert [i.get("id") for i in event.iterfind(f"{E}items/{E}item")] == ["b"]


def test_no_last_item_on_subscribe_by_default() -> None:
    server, _ = service()
    create(server)
    ok(publish(server, item_id="a"))
    server.clear()
    ok(subscribe(server))
    assert events(server.sent) == []


def test_an_owner_removing_a_subscription_tells_the_subscriber() -> None:
    server, _ = service()
    create(server)
    ok(subscribe(server))
    server.clear()
    entry = f"<subscription jid='{BOB}' subscription='none'/>"
    ok(ask(server, "set", f"<subscriptions node='news'>{entry}</subscriptions>", owner=True))
    (event,) = events(server.sent, to=BOB)
    assert event.find(f"{E}subscription").get("subscription") == "none"  # type: ignore[union-attr]


def five_subscribers(**config: Any) -> tuple[FakeServer, PubSub]:
    """A service whose node ``news`` has five subscribers, nothing sent yet."""
    server, pubsub = service(**config)
    fired(pubsub.create_node("news"))
    for n in range(5):
        fired(pubsub.subscribe("news", JID.parse(f"user{n}@example.org")))
    server.clear()
    return server, pubsub


def test_notifications_go_in_bounded_batches() -> None:
    server, pubsub = five_subscribers(batch_size=2)
    fired(pubsub.publish("news", etree.fromstring(ENTRY)))
    assert len(server.sent) == 0  # the first batch waits for the next turn
    server.clock.advance(0)
    # Clock.advance runs what the turn scheduled too: every batch went.
    assert len(events(server.sent)) == 5
    assert pubsub.notifier.queued == 0


def test_a_batch_is_at_most_batch_size_messages() -> None:
    server, pubsub = five_subscribers(batch_size=2)
    fired(pubsub.publish("news", etree.fromstring(ENTRY)))
    # The notifier's next turn (the outbox's look-out is another call).
    (call,) = [c for c in server.clock.getDelayedCalls() if c.getTime() == server.clock.seconds()]
    call.func()  # one turn's batch, without the turns it schedules
    assert len(server.sent) == 2
    assert pubsub.notifier.queued == 3


def test_too_many_waiting_notifications_drop_the_new_one_with_a_log_line() -> None:
    server, pubsub = five_subscribers(max_queued_bytes=len(ENTRY))
    with capturedLogs() as logged:
        fired(pubsub.publish("news", etree.fromstring(ENTRY)))
        server.clock.advance(0)
    assert events(server.sent) == []
    assert any("dropped a notification" in str(e.get("log_format")) for e in logged)


def test_notifications_wait_while_the_send_queue_is_full() -> None:
    server, pubsub = service(send_retry=2.0)
    fired(pubsub.create_node("news"))
    fired(pubsub.subscribe("news", JID.parse("bob@example.org")))
    server.clear()
    real_send = pubsub.notifier.send
    full = [True]

    def send(stanza: etree._Element) -> None:
        if full[0]:
            raise SendQueueFull("full")
        real_send(stanza)

    pubsub.notifier.send = send
    fired(pubsub.publish("news", etree.fromstring(ENTRY)))
    server.clock.advance(0)
    assert events(server.sent) == []
    full[0] = False
    server.clock.advance(2.0)
    assert len(events(server.sent)) == 1


def test_notifications_are_dropped_when_not_connected() -> None:
    server, pubsub = service()
    fired(pubsub.create_node("news"))
    fired(pubsub.subscribe("news", JID.parse("bob@example.org")))

    def send(stanza: etree._Element) -> None:
        raise NotConnected("down")

    pubsub.notifier.send = send
    with capturedLogs() as logged:
        fired(pubsub.publish("news", etree.fromstring(ENTRY)))
        server.clock.advance(0)
    assert pubsub.notifier.queued == 0
    assert any("not connected" in str(e.get("log_format")) for e in logged)


def bounce(server: object, sender: str = BOB, type: str = "cancel", node: str = "news") -> None:
    server.deliver(  # type: ignore[attr-defined]
        f"<message type='error' from='{sender}'><event xmlns='{NS_PUBSUB}#event'>"
        f"<items node='{node}'/></event><error type='{type}'>"
        "<recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    )


def test_a_subscription_is_dropped_after_bounce_limit_bounces() -> None:
    server, pubsub = service(bounce_limit=2)
    create(server)
    ok(subscribe(server))
    bounce(server)
    assert len(fired(pubsub.subscribers("news"))) == 1
    bounce(server)
    assert fired(pubsub.subscribers("news")) == []


def test_a_wait_bounce_does_not_count() -> None:
    server, pubsub = service(bounce_limit=1)
    create(server)
    ok(subscribe(server))
    bounce(server, type="wait")
    assert len(fired(pubsub.subscribers("news"))) == 1


def test_a_bounce_counts_for_the_node_it_names_only() -> None:
    server, pubsub = service(bounce_limit=1)
    create(server, "a")
    create(server, "b")
    ok(subscribe(server, "a"))
    ok(subscribe(server, "b"))
    bounce(server, node="a")
    assert fired(pubsub.subscribers("a")) == []
    assert len(fired(pubsub.subscribers("b"))) == 1


def test_the_application_publishes_and_subscribers_hear_of_it() -> None:
    server, pubsub = service()
    fired(pubsub.create_node("feed", config=NodeConfig(title="Feed")))
    fired(pubsub.subscribe("feed", JID.parse(CAROL)))
    item_id = fired(pubsub.publish("feed", etree.fromstring(ENTRY), item_id="1"))
    server.clock.advance(0)
    assert item_id == "1"
    (event,) = events(server.sent, to=CAROL)
    assert event.find(f"{E}items/{E}item").get("id") == "1"  # type: ignore[union-attr]


class SlowRunner(InlineRunner):
    """The database's thread, held while ``held`` is set: then each call
    waits until :meth:`release` runs it (a slow database)."""

    def __init__(self) -> None:
        self.held = False
        self.pending: list[tuple[Callable[[], Any], Deferred[Any]]] = []

    def run(self, work: Callable[[], T]) -> Deferred[T]:
        if not self.held:
            return super().run(work)
        outcome: Deferred[T] = Deferred()
        self.pending.append((work, outcome))
        return outcome

    def release(self) -> None:
        self.held = False
        for work, outcome in self.pending:
            maybeDeferred(work).chainDeferred(outcome)
        self.pending.clear()


def test_a_change_committed_after_its_request_timed_out_is_notified() -> None:
    runner = SlowRunner()
    server = FakeServer([PubSub()], storage=Database("sqlite://", runner=runner))
    create(server)
    ok(subscribe(server))
    server.clear()
    runner.held = True
    server.deliver(
        f"<iq type='set' id='late' from='{ALICE}'><pubsub xmlns='{NS_PUBSUB}'>"
        f"<publish node='news'><item id='late'>{ENTRY}</item></publish></pubsub></iq>"
    )
    (answer,) = server.advance(30)  # the router's deadline for an action
    assert answer.get("type") == "error"
    runner.release()  # the transaction commits after all
    server.advance(0)
    assert [e.find(f"{E}items/{E}item").get("id") for e in events(server.sent, BOB)] == ["late"]  # type: ignore[union-attr]


def test_waiting_notifications_are_bounded_in_bytes_of_payload_and_recipients() -> None:
    sent: list[etree._Element] = []
    clock = Clock()
    notifier = Notifier(clock, sent.append, max_queued_bytes=2 * 65_536)
    payload = etree.fromstring(f"<big xmlns='urn:example'>{'x' * 65_000}</big>")
    size = len(etree.tostring(payload)) + len(BOB)
    notifier.notify(payload, "headline", [BOB])
    notifier.notify(payload, "headline", [BOB])
    with capturedLogs() as logged:
        notifier.notify(payload, "headline", [BOB])  # a third would pass the bound
    assert notifier.queued == 2 and notifier.queued_bytes == 2 * size
    assert ["dropped a notification" in str(e.get("log_format")) for e in logged] == [True]
    clock.advance(0)
    assert len(sent) == 2 and notifier.queued_bytes == 0


def test_a_failing_notification_is_logged_and_the_committed_change_still_answers() -> None:
    pubsub = PubSub()
    server = FakeServer([pubsub])
    create(server)
    ok(subscribe(server))

    def broken(notification: object) -> None:
        raise RuntimeError("cannot notify")

    pubsub._notify = broken  # type: ignore[method-assign]
    with capturedLogs() as logged:
        answer = server.deliver(
            f"<iq type='set' from='{ALICE}'><pubsub xmlns='{NS_PUBSUB}'>"
            f"<publish node='news'><item id='kept'>{ENTRY}</item></publish></pubsub></iq>"
        )
    assert [a.get("type") for a in answer if etree.QName(a).localname == "iq"] == ["result"]
    assert [e["log_failure"].type for e in logged if "log_failure" in e] == [RuntimeError]
    assert [item.id for item in fired(pubsub.items("news")).items] == ["kept"]


def test_a_change_s_committed_callback_runs_after_its_notifications_and_gives_the_value() -> None:
    pubsub = PubSub()
    server = FakeServer([pubsub])
    create(server)
    ok(subscribe(server))
    queued: list[int] = []

    def publish(store: SqlStore) -> Outcome[str]:
        item = Item("direct", ENTRY)
        return Outcome("direct", pubsub.model.publish(store, "news", None, item).notifications)

    def committed(value: str) -> str:
        queued.append(pubsub.notifier.queued)
        return value.upper()

    assert fired(pubsub.change("direct", publish, committed=committed)) == "DIRECT"
    assert queued == [1]  # the subscriber's event was queued first
