"""The PubSub model on a real PostgreSQL (read committed): two changes at
once, driven step by step on two connections, end as if one ran after the
other; and counters past 32 bits.

Each race runs the first change in a transaction left open, then the
second in another thread until it has finished or waits for a lock that
the first holds, then commits the first and lets the second finish.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from empc.protocol import JID
from empc.pubsub import SCHEMA, Item, PubSubError, PubSubModel
from empc.pubsub._model import Outcome, Store, Subscription
from empc.pubsub._store import SqlStore, nodes
from empc.storage import Database, InlineRunner

pytestmark = pytest.mark.integration

T = TypeVar("T")
# Bounds for the waits below: generous, a failure is a hang.
WAIT = 30.0
ALICE, BOB = JID.parse("alice@example.org/phone"), JID.parse("bob@example.org/desk")
ENTRY = "<entry xmlns='http://www.w3.org/2005/Atom'/>"
model = PubSubModel()


@pytest.fixture
def engine(postgresql_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgresql_url.replace("postgresql:", "postgresql+psycopg:"))
    with engine.begin() as connection:
        tables = [*SCHEMA.metadata.tables, SCHEMA.version_table]
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {', '.join(tables)} CASCADE")
    database = Database(postgresql_url, runner=InlineRunner())
    database.add_schema(SCHEMA)
    outcome: list[object] = []
    database.open().addBoth(outcome.append)
    database.close()
    assert outcome == [None], outcome
    yield engine
    engine.dispose()


def run(engine: sa.Engine, change: Callable[[Store], T]) -> T:
    with engine.begin() as connection:
        return change(SqlStore(connection))


def waits_for_a_lock(engine: sa.Engine) -> bool:
    with engine.connect() as connection:  # a transaction of its own: fresh statistics
        waiting = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).scalar_one()
    return bool(waiting)


def race(engine: sa.Engine, first: Callable[[Store], T], second: Callable[[Store], Any]) -> object:
    """What ``second`` returns or raises, run as the module's docstring says."""
    outcome: list[object] = []

    def run_second() -> None:
        try:
            outcome.append(run(engine, second))
        except Exception as error:
            outcome.append(error)

    with engine.begin() as connection:
        first(SqlStore(connection))
        thread = threading.Thread(target=run_second, daemon=True)
        thread.start()
        deadline = time.monotonic() + WAIT
        while not outcome and not waits_for_a_lock(engine):
            assert time.monotonic() < deadline, "the second change neither ended nor waited"
            time.sleep(0.01)
    thread.join(WAIT)
    assert outcome, "the second change did not end once the first committed"
    return outcome[0]


def refusal(outcome: object) -> str:
    assert isinstance(outcome, PubSubError), outcome
    return outcome.condition


def test_two_owners_removing_each_other_leave_one_owner(engine: sa.Engine) -> None:
    run(engine, lambda s: model.create(s, "news", ALICE))
    run(engine, lambda s: model.set_affiliations(s, "news", ALICE, [(BOB, "owner")]))
    outcome = race(
        engine,
        lambda s: model.set_affiliations(s, "news", ALICE, [(BOB, "none")]),
        lambda s: model.set_affiliations(s, "news", BOB, [(ALICE, "none")]),
    )
    assert refusal(outcome) == "forbidden"  # Bob is no owner any more
    assert run(engine, lambda s: s.affiliations("news", 10)) == {"alice@example.org": "owner"}


def test_two_creations_of_one_node_give_conflict_to_the_second(engine: sa.Engine) -> None:
    outcome = race(
        engine,
        lambda s: model.create(s, "news", ALICE),
        lambda s: model.create(s, "news", BOB),
    )
    assert refusal(outcome) == "conflict"
    assert run(engine, lambda s: s.affiliations("news", 10)) == {"alice@example.org": "owner"}


def test_two_subscriptions_of_one_jid_give_the_subscription_to_both(engine: sa.Engine) -> None:
    run(engine, lambda s: model.create(s, "news", ALICE))
    outcome = race(
        engine,
        lambda s: model.subscribe(s, "news", BOB, BOB),
        lambda s: model.subscribe(s, "news", BOB, BOB),
    )
    assert isinstance(outcome, Outcome), outcome
    assert outcome.value == Subscription("news", str(BOB), "subscribed")


def test_a_publication_to_a_node_deleted_meanwhile_is_item_not_found(engine: sa.Engine) -> None:
    run(engine, lambda s: model.create(s, "news", ALICE))
    outcome = race(
        engine,
        lambda s: model.delete(s, "news", ALICE),
        lambda s: model.publish(s, "news", ALICE, Item("first", ENTRY)),
    )
    assert refusal(outcome) == "item-not-found"


def test_items_are_numbered_past_32_bits(engine: sa.Engine) -> None:
    run(engine, lambda s: model.create(s, "news", ALICE))
    with engine.begin() as connection:
        connection.execute(nodes.update().values(last_seq=2**31 - 1))
    run(engine, lambda s: model.publish(s, "news", ALICE, Item("old", ENTRY)))
    run(engine, lambda s: model.publish(s, "news", ALICE, Item("new", ENTRY)))
    assert [item.id for item in run(engine, lambda s: s.page("news", 10)) or []] == ["new", "old"]
