"""The PubSub outbox: notifications kept with the change that caused them,
sent once by the process that committed it, and sent again by any process
once their lease runs out (that process stopped first)."""

from __future__ import annotations

import sqlalchemy as sa
from lxml import etree
from test_pubsub_support import (
    ALICE,
    BOB,
    CAROL,
    ENTRY,
    E,
    create,
    events,
    fired,
    ok,
    service,
    subscribe,
)
from twisted.internet.defer import fail
from twisted.internet.task import Clock

from empc import NotConnected
from empc.pubsub import Item, Message, NodeConfig
from empc.pubsub import _outbox as outbox
from empc.pubsub._model import (
    ApprovalRequested,
    Configured,
    Deleted,
    Notification,
    Published,
    Purged,
    Retracted,
    SubscriptionChanged,
)
from empc.pubsub._notifier import Notifier
from empc.pubsub._store import outbox as outbox_table

NS_SID = "urn:xmpp:sid:0"


def test_every_kind_of_notification_comes_back_from_the_outbox_as_it_went_in() -> None:
    base = {"node": "news", "recipients": (BOB, CAROL)}
    kinds: list[Notification] = [
        Published(**base, items=(Item("a", "<x xmlns='urn:x'/>", BOB, 1.5),), payloads=True),
        Retracted(**base, ids=("a", "b")),
        Purged(**base),
        Deleted(**base, redirect="xmpp:pubsub.example.org?;node=old"),
        Configured(**base, config=NodeConfig(title="News", max_items=5)),
        Configured(**base, config=None),
        SubscriptionChanged(**base, jid=BOB, state="subscribed"),
        ApprovalRequested(**base, jid=CAROL),
        Message(**base, type="chat", sender="a@t.example.org", body="hi", id="tweet-1"),
    ]
    for notification in kinds:
        assert outbox.decode(outbox.encode(notification)) == notification


def rows(pubsub: object) -> list[sa.Row[object]]:
    database = pubsub.component.storage  # type: ignore[attr-defined]
    return fired(
        database.transaction(
            lambda c: c.execute(sa.select(outbox_table.c.key, outbox_table.c.lease)).all(),
            name="rows",
        )
    )


def test_a_notification_leaves_the_outbox_once_its_messages_are_out() -> None:
    server, pubsub = service()
    create(server)
    ok(subscribe(server))
    server.deliver(
        f"<iq type='set' from='{ALICE}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
        f"<publish node='news'><item id='a'>{ENTRY}</item></publish></pubsub></iq>"
    )
    server.advance(0)
    (message,) = [s for s in server.sent if s.find(f"{E}event") is not None]
    key = message.get("id")
    assert message.find(f"{{{NS_SID}}}origin-id").get("id") == key  # type: ignore[union-attr]
    assert len(rows(pubsub)) == 1  # written, settling on the link
    server.advance(2.0)
    assert rows(pubsub) == []


def put_expired(pubsub: object, *notifications: Notification) -> list[str]:
    """Rows a process that stopped left behind, their lease run out."""
    database = pubsub.component.storage  # type: ignore[attr-defined]
    lease = pubsub.component.clock.seconds() - 1  # type: ignore[attr-defined]
    pending = fired(
        database.transaction(
            lambda c: outbox.put(c, outbox_table, list(notifications), lease), name="put"
        )
    )
    return [p.key for p in pending]


def test_what_a_stopped_process_left_unsent_is_sent_by_another_with_the_same_id() -> None:
    server, pubsub = service(outbox_interval=5.0)
    chat = Message(node="news", recipients=(BOB, CAROL), type="chat", sender=None, body="hi")
    (key,) = put_expired(pubsub, chat)
    sent = server.advance(5.0)
    assert sorted(s.get("to") or "" for s in sent) == [BOB, CAROL]
    assert {s.get("id") for s in sent} == {key}
    assert pubsub.resent == 1
    server.advance(2.0)  # settled
    assert rows(pubsub) == []


def test_a_notification_whose_lease_has_not_run_out_is_left_to_its_process() -> None:
    server, pubsub = service(outbox_interval=5.0, outbox_lease=30.0)
    database = pubsub.component.storage
    assert database is not None
    chat = Message(node="news", recipients=(BOB,), body="mine")
    fired(
        database.transaction(
            lambda c: outbox.put(c, outbox_table, [chat], server.clock.seconds() + 30), name="put"
        )
    )
    assert server.advance(5.0) == []
    assert len(rows(pubsub)) == 1
    (message,) = server.advance(30.0)
    assert message.findtext("{jabber:component:accept}body") == "mine"


def test_a_notification_dropped_for_want_of_a_link_stays_in_the_outbox() -> None:
    outcomes: list[bool] = []
    notifier = Notifier(Clock(), lambda stanza: None)
    notifier.notify(etree.Element("x"), "chat", [BOB], done=outcomes.append)
    notifier.stop()
    assert outcomes == [False]


def test_a_published_item_reaches_its_subscribers_once() -> None:
    server, pubsub = service(outbox_interval=1.0, outbox_lease=0.5)
    create(server)
    ok(subscribe(server))
    server.deliver(
        f"<iq type='set' from='{ALICE}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
        f"<publish node='news'><item id='a'>{ENTRY}</item></publish></pubsub></iq>"
    )
    # Its row left the outbox as it went out: the look-out finds nothing.
    assert events(server.advance(1.0)) == []
    assert pubsub.resent == 0


def test_a_notification_whose_link_went_before_it_settled_is_sent_again_after_its_lease() -> None:
    # Written is not received: a process killed with its messages in its
    # buffers leaves them in the outbox, as here one whose link went.
    server, pubsub = service(outbox_interval=5.0, outbox_lease=10.0)
    create(server)
    ok(subscribe(server))
    server.component.settled = lambda delay: fail(NotConnected("gone"))  # type: ignore[method-assign]
    server.deliver(
        f"<iq type='set' from='{ALICE}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
        f"<publish node='news'><item id='a'>{ENTRY}</item></publish></pubsub></iq>"
    )
    server.advance(0)
    assert len(events(server.sent, BOB)) == 1
    assert len(rows(pubsub)) == 1
    server.clear()
    server.advance(15.0)
    (again,) = [s for s in server.sent if s.find(f"{E}event") is not None]
    assert again.find(f"{E}event/{E}items/{E}item[@id='a']") is not None
    assert pubsub.resent == 1
