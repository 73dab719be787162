"""The storage on a real PostgreSQL (Debian's binaries, started by the
``postgresql_server`` fixture): migrations, commits, and a restart of the
server while calls run, in the pool of threads that production uses."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from textwrap import dedent
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from postgres import PostgresServer
from twisted.internet.defer import Deferred
from twisted.logger import LogEvent, Logger, formatEvent
from twisted.python.failure import Failure

from empc.storage import Database, Schema, StorageError, StorageUnavailable

pytestmark = pytest.mark.integration

T = TypeVar("T")
PASSWORD = "Pg-distinctive-5150"
# Bounds for the waits below: generous, a failure is a hang.
WAIT = 30.0

METADATA = sa.MetaData()
ENTRIES = sa.Table(
    "ledger_entries",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("amount", sa.Integer, nullable=False),
)
FIRST = """
    import sqlalchemy as sa
    from alembic import op

    revision = "ledger_1"
    down_revision = None

    def upgrade():
        op.create_table(
            "ledger_entries",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("amount", sa.Integer, nullable=False),
        )
"""


class ThreadedReactor:
    """Just what the pool of threads needs of a reactor: outcomes come back
    through a queue that the test thread runs (:meth:`wait`)."""

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[Callable[..., object], tuple[Any, ...]]] = queue.Queue()

    def callFromThread(self, f: Callable[..., object], *args: Any) -> None:
        self.calls.put((f, args))

    def wait(self, outcome: Deferred[T], timeout: float = WAIT) -> T | Failure:
        """Run what the threads hand back until ``outcome`` has fired."""
        result: list[T | Failure] = []
        outcome.addBoth(result.append)
        deadline = time.monotonic() + timeout
        while not result:
            f, args = self.calls.get(timeout=max(0.0, deadline - time.monotonic()))
            f(*args)
        return result[0]


@pytest.fixture
def schema(tmp_path: Path) -> Schema:
    (tmp_path / "ledger_1.py").write_text(dedent(FIRST))
    return Schema("ledger", METADATA, tmp_path)


@pytest.fixture
def reactor() -> ThreadedReactor:
    return ThreadedReactor()


@pytest.fixture
def database(postgresql_url: str, schema: Schema, reactor: ThreadedReactor) -> Iterator[Database]:
    with sa.create_engine(
        postgresql_url.replace("postgresql:", "postgresql+psycopg:")
    ).begin() as c:
        c.exec_driver_sql("DROP TABLE IF EXISTS ledger_entries, ledger_alembic_version")
    database = Database(postgresql_url, pool_size=2, timeout=3.0, clock=reactor, password=PASSWORD)  # type: ignore[arg-type]
    database.add_schema(schema)
    assert reactor.wait(database.open()) is None
    yield database
    reactor.wait(database.close())


def add(amount: int) -> Callable[[sa.Connection], int]:
    def work(connection: sa.Connection) -> int:
        return int(
            connection.execute(ENTRIES.insert().values(amount=amount)).inserted_primary_key[0]
        )

    return work


def total(connection: sa.Connection) -> int:
    return int(
        connection.execute(
            sa.select(sa.func.coalesce(sa.func.sum(ENTRIES.c.amount), 0))
        ).scalar_one()
    )


def sleep(seconds: float) -> Callable[[sa.Connection], object]:
    return lambda connection: connection.exec_driver_sql(f"SELECT pg_sleep({seconds})").all()


def unavailable(outcome: object) -> StorageUnavailable:
    assert isinstance(outcome, Failure), outcome
    assert isinstance(outcome.value, StorageUnavailable), outcome
    return outcome.value


def test_migrations_run_and_transactions_commit(
    database: Database, reactor: ThreadedReactor
) -> None:
    assert database.revisions == {"ledger": ("ledger_1",)}
    assert reactor.wait(database.transaction(add(5), name="add")) == 1
    assert reactor.wait(database.transaction(add(7), name="add")) == 2
    assert reactor.wait(database.transaction(total, name="total")) == 12


def test_a_rolled_back_transaction_leaves_nothing(
    database: Database, reactor: ThreadedReactor
) -> None:
    def add_then_fail(connection: sa.Connection) -> None:
        add(100)(connection)
        raise ValueError("changed my mind")

    outcome = reactor.wait(database.transaction(add_then_fail, name="add"))
    assert isinstance(outcome, Failure) and outcome.check(ValueError)
    assert reactor.wait(database.transaction(total, name="total")) == 0


def test_a_statement_slower_than_the_timeout_is_unavailable_in_time(
    database: Database, reactor: ThreadedReactor
) -> None:
    started = time.monotonic()
    error = unavailable(reactor.wait(database.transaction(sleep(20), name="slow")))
    assert time.monotonic() - started < 10
    assert "statement timeout" in error.reason
    assert reactor.wait(database.transaction(total, name="total")) == 0


def test_a_restart_fails_calls_in_flight_and_later_ones_succeed(
    database: Database, reactor: ThreadedReactor, postgresql_server: PostgresServer
) -> None:
    events: list[LogEvent] = []
    database.log = Logger(observer=events.append)
    assert reactor.wait(database.transaction(add(1), name="add")) == 1
    in_flight = database.transaction(sleep(2.5), name="slow")
    time.sleep(0.5)  # the statement runs in the server
    postgresql_server.stop()
    started = time.monotonic()
    unavailable(reactor.wait(in_flight))
    # While the server is down: a clear error within the timeout, no hang.
    for _ in range(3):
        unavailable(reactor.wait(database.transaction(total, name="total")))
    assert time.monotonic() - started < 3 * 3.0 + 5
    postgresql_server.start()
    assert reactor.wait(database.transaction(add(2), name="add")) == 2
    assert reactor.wait(database.transaction(total, name="total")) == 3
    logged = [formatEvent(event) for event in events]
    assert len(logged) == 2, logged
    assert logged[0].startswith(f"Storage {database.url} is unavailable (")
    assert logged[1] == f"Storage {database.url} is back"
    assert all(PASSWORD not in line for line in logged)


def test_a_database_newer_than_the_code_is_refused(
    database: Database, reactor: ThreadedReactor, postgresql_url: str, schema: Schema
) -> None:
    def newer(connection: sa.Connection) -> None:
        connection.exec_driver_sql("UPDATE ledger_alembic_version SET version_num = 'ledger_9'")

    reactor.wait(database.transaction(newer, name="newer"))
    again = Database(postgresql_url, clock=reactor)  # type: ignore[arg-type]
    again.add_schema(schema)
    outcome = reactor.wait(again.open())
    assert isinstance(outcome, Failure) and outcome.check(StorageError)
    assert "revision ledger_9, which this code does not know" in str(outcome.value)


def test_a_migration_is_not_bounded_by_the_statement_timeout(
    postgresql_url: str, reactor: ThreadedReactor, tmp_path: Path
) -> None:
    slow = """
        from alembic import op

        revision = "slow_1"
        down_revision = None

        def upgrade():
            op.execute("SELECT pg_sleep(0.6)")
    """
    (tmp_path / "slow_1.py").write_text(dedent(slow))
    with sa.create_engine(
        postgresql_url.replace("postgresql:", "postgresql+psycopg:")
    ).begin() as c:
        c.exec_driver_sql("DROP TABLE IF EXISTS slow_alembic_version")
    database = Database(postgresql_url, timeout=0.3, clock=reactor)  # type: ignore[arg-type]
    database.add_schema(Schema("slow", sa.MetaData(), tmp_path))
    assert reactor.wait(database.open()) is None
    assert database.revisions == {"slow": ("slow_1",)}
    reactor.wait(database.close())
