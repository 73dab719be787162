"""The storage building block on SQLite, with inline or hand-driven runners:
no threads, no real time (PostgreSQL: tests/integration/test_storage_postgres.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from textwrap import dedent, indent
from typing import Any, ClassVar, TypeVar

import pytest
import sqlalchemy as sa
from support import write_config
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from empc import Handler, StanzaError, iq
from empc.__main__ import main
from empc._config import ConfigError, load_config
from empc._service import StorageService
from empc._tap import build_component, build_database
from empc.storage import (
    Database,
    InlineRunner,
    Schema,
    StorageError,
    StorageUnavailable,
    schemas_of,
)
from empc.testing import FakeServer

T = TypeVar("T")
_trial = SynchronousTestCase()
successResultOf = _trial.successResultOf
failureResultOf = _trial.failureResultOf

PASSWORD = "Pw-distinctive-8812"
NS_NOTES = "urn:example:notes"


def write_migrations(directory: Path, name: str, count: int) -> Path:
    """Revisions ``{name}_1`` to ``{name}_{count}``, each creating a table
    ``{name}_t{i}`` with an id and a text column."""
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(1, count + 1):
        down = "None" if number == 1 else repr(f"{name}_{number - 1}")
        (directory / f"{name}_{number}.py").write_text(
            dedent(f"""
            import sqlalchemy as sa
            from alembic import op

            revision = "{name}_{number}"
            down_revision = {down}
            branch_labels = None
            depends_on = None

            def upgrade():
                op.create_table(
                    "{name}_t{number}",
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("text", sa.String(100), nullable=False),
                )
            """)
        )
    return directory


def make_schema(directory: Path, name: str = "notes", count: int = 1) -> Schema:
    metadata = sa.MetaData()
    for number in range(1, count + 1):
        sa.Table(
            f"{name}_t{number}",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("text", sa.String(100), nullable=False),
        )
    return Schema(name, metadata, write_migrations(directory / name, name, count))


def table(schema: Schema, number: int = 1) -> sa.Table:
    return schema.metadata.tables[f"{schema.name}_t{number}"]


@pytest.fixture
def notes(tmp_path: Path) -> Schema:
    return make_schema(tmp_path / "migrations")


def opened(url: str, *schemas: Schema, **options: Any) -> Database:
    options.setdefault("runner", InlineRunner())
    database = Database(url, **options)
    for schema in schemas:
        database.add_schema(schema)
    successResultOf(database.open())
    return database


@pytest.fixture
def database(notes: Schema) -> Iterator[Database]:
    database = opened("sqlite://", notes)
    yield database
    database.close()


def insert(schema: Schema, text: str) -> Callable[[sa.Connection], int]:
    def work(connection: sa.Connection) -> int:
        result = connection.execute(table(schema).insert().values(text=text))
        return int(result.inserted_primary_key[0])

    return work


def texts(database: Database, schema: Schema) -> list[str]:
    def work(connection: sa.Connection) -> list[str]:
        query = sa.select(table(schema).c.text).order_by(table(schema).c.id)
        return list(connection.execute(query).scalars())

    return successResultOf(database.transaction(work, name="texts"))


def raising(error: BaseException) -> Callable[[sa.Connection], Any]:
    def work(connection: sa.Connection) -> Any:
        raise error

    return work


def insert_then_raise(schema: Schema, error: BaseException) -> Callable[[sa.Connection], None]:
    def work(connection: sa.Connection) -> None:
        insert(schema, "lost")(connection)
        raise error

    return work


def sqlite_error(message: str, code: str) -> sa.exc.OperationalError:
    """What SQLAlchemy raises for a SQLite error with this extended code."""
    orig = sqlite3.OperationalError(message)
    orig.sqlite_errorname = code  # type: ignore[attr-defined]
    return sa.exc.OperationalError("SELECT 1", {}, orig)


def recorded(database: Database) -> list[LogEvent]:
    events: list[LogEvent] = []
    database.log = Logger(namespace="storage", observer=events.append)
    return events


def lines(events: list[LogEvent]) -> list[str]:
    return [f"{event['log_level'].name}: {formatEvent(event)}" for event in events]


# Transactions


def test_a_transaction_fires_with_its_value_once_committed(
    database: Database, notes: Schema
) -> None:
    assert successResultOf(database.transaction(insert(notes, "hi"), name="add")) == 1
    assert texts(database, notes) == ["hi"]


def test_a_stanza_error_rolls_back_and_is_the_outcome(database: Database, notes: Schema) -> None:
    error = StanzaError("conflict", "taken")
    outcome = database.transaction(insert_then_raise(notes, error), name="add")
    assert failureResultOf(outcome, StanzaError).value is error
    assert texts(database, notes) == []


def test_a_bug_in_work_rolls_back_and_is_raised_as_it_is(database: Database, notes: Schema) -> None:
    outcome = database.transaction(insert_then_raise(notes, KeyError("oops")), name="add")
    failureResultOf(outcome, KeyError)
    assert texts(database, notes) == []


def test_a_wrong_statement_is_a_bug_not_an_unavailable_database(database: Database) -> None:
    def work(connection: sa.Connection) -> object:
        return connection.exec_driver_sql("SELECT * FROM no_such_table").all()

    failure = failureResultOf(database.transaction(work, name="bad"), sa.exc.OperationalError)
    assert not failure.check(StorageUnavailable)


def test_a_conflict_of_postgresql_is_run_again_at_most_three_times(database: Database) -> None:
    calls: list[int] = []

    def work(connection: sa.Connection) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise postgresql_error("40001")
        return "done"

    assert successResultOf(database.transaction(work, name="race")) == "done"
    calls.clear()
    always = raising(postgresql_error("40001"))
    outcome = database.transaction(lambda c: (calls.append(1), always(c)), name="race")
    failureResultOf(outcome, StorageUnavailable)  # too busy
    assert len(calls) == 3


def test_before_open_a_transaction_is_a_bug(notes: Schema) -> None:
    database = Database("sqlite://", runner=InlineRunner())
    failureResultOf(database.transaction(insert(notes, "x"), name="add"), RuntimeError)


def test_after_close_a_transaction_is_unavailable(database: Database, notes: Schema) -> None:
    successResultOf(database.close())
    failureResultOf(database.transaction(insert(notes, "x"), name="add"), StorageUnavailable)


def test_a_file_database_keeps_what_was_committed(tmp_path: Path, notes: Schema) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    first = opened(url, notes)
    successResultOf(first.transaction(insert(notes, "kept"), name="add"))
    successResultOf(first.close())
    assert texts(opened(url, notes), notes) == ["kept"]


# The error mapping


@pytest.mark.parametrize(
    "error",
    [
        sqlite_error("database is locked", "SQLITE_BUSY"),
        sqlite_error("disk I/O error", "SQLITE_IOERR_WRITE"),
        sa.exc.TimeoutError("QueuePool limit of size 5 overflow 0 reached"),
        sa.exc.DisconnectionError("connection lost"),
        sa.exc.OperationalError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
    ],
    ids=["busy", "io", "pool-timeout", "disconnection", "invalidated"],
)
def test_a_lost_slow_or_busy_database_is_unavailable(database: Database, error: Exception) -> None:
    failure = failureResultOf(database.transaction(raising(error), name="t"), StorageUnavailable)
    assert failure.value.condition == "resource-constraint"
    assert failure.value.type == "wait"
    assert failure.value.reason.startswith("t: ")


def postgresql_error(state: str) -> sa.exc.OperationalError:
    """What SQLAlchemy raises for a PostgreSQL error of this SQLSTATE."""
    orig = sqlite3.OperationalError(f"error {state}")
    orig.sqlstate = state  # type: ignore[attr-defined]
    return sa.exc.OperationalError("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    ("state", "unavailable"),
    [
        ("08006", True),  # connection failure
        ("53300", True),  # too many connections
        ("57014", True),  # statement timeout
        ("57P01", True),  # the server shuts down
        ("54000", False),  # program limit exceeded (an index entry too big): a bug
        ("55000", False),  # object not in prerequisite state: a bug
    ],
)
def test_a_postgresql_error_is_unavailable_by_its_sqlstate_class(
    database: Database, state: str, unavailable: bool
) -> None:
    outcome = database.transaction(raising(postgresql_error(state)), name="t")
    failure = failureResultOf(outcome, sa.exc.OperationalError, StorageUnavailable)
    assert bool(failure.check(StorageUnavailable)) == unavailable


def test_the_stanza_text_of_unavailable_tells_nothing_of_the_database(database: Database) -> None:
    work = raising(sqlite_error("database is locked at /var/lib/x", "SQLITE_BUSY"))
    error = failureResultOf(database.transaction(work, name="t"), StorageUnavailable).value
    assert "/var/lib" not in (error.text or "")
    assert "/var/lib" in error.reason


# Logged once per incident


def test_an_incident_is_logged_when_it_starts_and_when_it_ends(
    database: Database, notes: Schema
) -> None:
    events = recorded(database)
    busy = raising(sqlite_error("database is locked", "SQLITE_BUSY"))
    for _ in range(3):
        database.transaction(busy, name="add").addErrback(lambda _: None)
    assert lines(events) == [
        "warn: Storage sqlite:// is unavailable (add: database is locked); "
        "requests fail until it is back"
    ]
    successResultOf(database.transaction(insert(notes, "x"), name="add"))
    successResultOf(database.transaction(insert(notes, "y"), name="add"))
    database.transaction(busy, name="again").addErrback(lambda _: None)
    assert lines(events)[1:] == [
        "info: Storage sqlite:// is back",
        "warn: Storage sqlite:// is unavailable (again: database is locked); "
        "requests fail until it is back",
    ]


def test_a_bug_logs_no_incident(database: Database) -> None:
    events = recorded(database)
    database.transaction(raising(KeyError("x")), name="t").addErrback(lambda _: None)
    assert events == []


# Bounded waiting


class HeldRunner:
    """Runs each call when the test says so."""

    def __init__(self) -> None:
        self.held: list[tuple[Callable[[], Any], Deferred[Any]]] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def run(self, work: Callable[[], T]) -> Deferred[T]:
        outcome: Deferred[T] = Deferred()
        self.held.append((work, outcome))
        return outcome

    def finish(self, index: int = 0) -> None:
        work, outcome = self.held.pop(index)
        outcome.callback(work())


def held_database(notes: Schema, runner: HeldRunner, clock: Clock | None = None) -> Database:
    database = Database(
        "sqlite://", pool_size=2, max_waiting=1, runner=runner, clock=clock or Clock(), timeout=5
    )
    database.add_schema(notes)
    opening = database.open()
    runner.finish()
    successResultOf(opening)
    return database


def test_calls_beyond_the_pool_wait_and_beyond_max_waiting_are_refused(notes: Schema) -> None:
    # SQLite has one connection, whatever pool_size says.
    runner = HeldRunner()
    database = held_database(notes, runner)
    first = database.transaction(insert(notes, "1"), name="add")
    second = database.transaction(insert(notes, "2"), name="add")
    assert len(runner.held) == 1  # one connection: the second waits
    failureResultOf(database.transaction(insert(notes, "3"), name="add"), StorageUnavailable)
    runner.finish()
    assert successResultOf(first) == 1
    assert len(runner.held) == 1 and not second.called  # the waiting one started
    runner.finish()
    assert successResultOf(second) == 2


def test_a_waiting_call_canceled_by_its_caller_never_runs(notes: Schema) -> None:
    runner = HeldRunner()
    database = held_database(notes, runner)
    first = database.transaction(insert(notes, "1"), name="add")
    waiting = database.transaction(insert(notes, "2"), name="add")
    waiting.cancel()
    waiting.addErrback(lambda _: None)
    runner.finish()
    successResultOf(first)
    assert runner.held == []
    assert texts_with(runner, database, notes) == ["1"]


def test_a_waiting_call_canceled_by_its_caller_frees_its_place_at_once(notes: Schema) -> None:
    runner, clock = HeldRunner(), Clock()
    database = held_database(notes, runner, clock)  # max_waiting 1
    database.transaction(insert(notes, "1"), name="add")
    waiting = database.transaction(insert(notes, "2"), name="add")
    waiting.cancel()
    failureResultOf(waiting, CancelledError)
    assert clock.getDelayedCalls() == []  # its deadline is gone too
    third = database.transaction(insert(notes, "3"), name="add")
    assert not third.called  # waits in the place the canceled call left
    runner.finish()
    runner.finish()
    assert successResultOf(third) == 2


def test_a_running_call_canceled_by_its_caller_commits_and_keeps_its_connection(
    notes: Schema,
) -> None:
    runner = HeldRunner()
    database = held_database(notes, runner)
    running = database.transaction(insert(notes, "1"), name="add")
    running.cancel()
    failureResultOf(running, CancelledError)
    waiting = database.transaction(insert(notes, "2"), name="add")
    assert len(runner.held) == 1  # the canceled call still has the one connection
    runner.finish()
    assert len(runner.held) == 1  # the waiting call starts once it is done
    runner.finish()
    assert successResultOf(waiting) == 2
    assert texts_with(runner, database, notes) == ["1", "2"]


def test_a_call_waiting_longer_than_the_timeout_is_unavailable(notes: Schema) -> None:
    runner, clock = HeldRunner(), Clock()
    database = held_database(notes, runner, clock)
    running = database.transaction(insert(notes, "1"), name="add")
    waiting = database.transaction(insert(notes, "2"), name="add")
    clock.advance(4.9)
    assert not waiting.called
    clock.advance(0.1)
    error = failureResultOf(waiting, StorageUnavailable).value
    assert error.reason == "add: no connection free in 5 s"
    runner.finish()
    assert successResultOf(running) == 1
    assert runner.held == [] and texts_with(runner, database, notes) == ["1"]


def test_closing_twice_while_a_call_runs_fires_both_once_closed(notes: Schema) -> None:
    runner = HeldRunner()
    database = held_database(notes, runner)
    database.transaction(insert(notes, "1"), name="add")
    first, second = database.close(), database.close()
    runner.finish()  # the running call
    runner.finish()  # closing the connections
    assert runner.held == []
    successResultOf(first)
    successResultOf(second)
    successResultOf(database.close())


def texts_with(runner: HeldRunner, database: Database, schema: Schema) -> list[str]:
    outcome = database.transaction(
        lambda c: list(c.execute(sa.select(table(schema).c.text)).scalars()), name="t"
    )
    runner.finish()
    return successResultOf(outcome)


def test_close_waits_for_running_calls_and_refuses_waiting_ones(notes: Schema) -> None:
    runner = HeldRunner()
    database = held_database(notes, runner)
    running = database.transaction(insert(notes, "1"), name="add")
    waiting = database.transaction(insert(notes, "2"), name="add")
    closed = database.close()
    failureResultOf(waiting, StorageUnavailable)
    assert not closed.called
    runner.finish()  # the running call
    assert successResultOf(running) == 1
    runner.finish()  # closing the connections
    successResultOf(closed)


# Migrations


def test_two_schemas_in_one_database_are_migrated_to_their_heads(tmp_path: Path) -> None:
    notes = make_schema(tmp_path, "notes", 2)
    tags = make_schema(tmp_path, "tags", 1)
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    database = opened(url, notes, tags)
    assert database.revisions == {"notes": ("notes_2",), "tags": ("tags_1",)}
    successResultOf(database.transaction(insert(tags, "t"), name="tag"))
    assert texts(database, tags) == ["t"]
    inspector_tables = successResultOf(
        database.transaction(lambda c: sorted(sa.inspect(c).get_table_names()), name="tables")
    )
    assert inspector_tables == [
        "notes_alembic_version", "notes_t1", "notes_t2", "tags_alembic_version", "tags_t1",
    ]  # fmt: skip


def test_a_later_start_runs_only_the_new_revisions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    first = opened(url, make_schema(tmp_path / "v1", "notes", 1))
    successResultOf(first.transaction(insert(first.schemas[0], "kept"), name="add"))
    successResultOf(first.close())
    newer = make_schema(tmp_path / "v2", "notes", 2)
    events: list[LogEvent] = []
    database = Database(url, runner=InlineRunner())
    database.log = Logger(observer=events.append)
    database.add_schema(newer)
    successResultOf(database.open())
    assert lines(events) == [
        f"info: Storage {database.url}: schema notes upgraded from notes_1 to notes_2"
    ]
    assert texts(database, newer) == ["kept"]


def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    successResultOf(opened(url, make_schema(tmp_path / "v2", "notes", 2)).close())
    older = Database(url, runner=InlineRunner())
    older.add_schema(make_schema(tmp_path / "v1", "notes", 1))
    error = failureResultOf(older.open(), StorageError).value
    assert "schema notes: the database is at revision notes_2, which this code does not know" in (
        str(error)
    )
    failureResultOf(older.transaction(insert(older.schemas[0], "x"), name="add"))


def test_another_schema_s_revisions_in_the_database_are_not_a_newer_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    notes, tags = make_schema(tmp_path, "notes"), make_schema(tmp_path, "tags")
    successResultOf(opened(url, notes, tags).close())
    assert opened(url, notes).revisions == {"notes": ("notes_1",)}


def test_a_failing_migration_stops_the_open_with_the_schema_named(tmp_path: Path) -> None:
    broken = make_schema(tmp_path, "broken")
    path = broken.migrations / "broken_1.py"
    path.write_text(path.read_text().replace("op.create_table(\n", 'op.execute("NONSENSE")\n    ('))
    database = Database("sqlite://", runner=InlineRunner())
    database.add_schema(broken)
    error = failureResultOf(database.open(), StorageError).value
    assert "schema broken cannot be migrated" in str(error)


def test_two_schemas_of_one_name_are_refused(tmp_path: Path) -> None:
    database = Database("sqlite://", runner=InlineRunner())
    database.add_schema(make_schema(tmp_path / "a"))
    with pytest.raises(ValueError, match="two schemas are named notes"):
        database.add_schema(make_schema(tmp_path / "b"))


@pytest.mark.parametrize("name", ["Notes", "1notes", "no-tes", ""])
def test_a_schema_name_is_a_lowercase_label(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="schema name"):
        Schema(name, sa.MetaData(), tmp_path)


# Urls and the password


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("postgresql+psycopg2://u@h/db", "unsupported driver 'psycopg2'"),
        ("not a url", "not a database url"),
    ],
)
def test_an_unsupported_url_is_refused(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        Database(url)


def test_the_password_never_shows_in_url_repr_or_reasons(database: Database) -> None:
    pg = Database("postgresql://empc@db.example.org:5432/empc", password=PASSWORD)
    assert pg.dialect == "postgresql"
    assert PASSWORD not in pg.url + pg.safe_url + repr(pg)
    inline = Database(f"postgresql://empc:{PASSWORD}@db.example.org/empc")
    assert PASSWORD not in inline.url + repr(inline)
    error = sa.exc.OperationalError("SELECT 1", {}, Exception(f"bad password {PASSWORD}"))
    assert PASSWORD not in inline._reason(error)


# Config


STORAGE_CONFIG = """
components:
  - domain: notes.example.org
    secret: s3cret
    handlers: [{handlers}]
storage:
{storage}
"""


def config_path(tmp_path: Path, storage: str, handlers: str = "") -> str:
    return write_config(
        tmp_path,
        STORAGE_CONFIG.format(storage=indent(dedent(storage).strip("\n"), "  "), handlers=handlers),
    )


def storage_error(tmp_path: Path, storage: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(config_path(tmp_path, storage), environ or {})
    return str(caught.value)


def test_the_storage_section_is_read(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    storage = f"""
      url: postgresql://empc@127.0.0.1:5432/empc
      password_file: {tmp_path / "pw"}
      pool_size: 3
      timeout: 2.5
      max_waiting: 7
    """
    config = load_config(config_path(tmp_path, storage), {}).storage
    assert config is not None
    assert (config.url, config.pool_size, config.timeout, config.max_waiting) == (
        "postgresql://empc@127.0.0.1:5432/empc", 3, 2.5, 7,
    )  # fmt: skip
    assert config.password is not None and config.password.reveal() == PASSWORD
    assert PASSWORD not in repr(config)


def test_the_password_variable_wins_over_the_file(tmp_path: Path) -> None:
    storage = f"""
      url: postgresql://empc@127.0.0.1/empc
      password_file: {tmp_path / "absent"}
      password_env: DB_PW
    """
    config = load_config(config_path(tmp_path, storage), {"DB_PW": PASSWORD}).storage
    assert config is not None and config.password is not None
    assert config.password.reveal() == PASSWORD


def test_no_storage_section_is_none(tmp_path: Path) -> None:
    path = write_config(tmp_path, "components: [{domain: a.example.org, secret: s}]")
    assert load_config(path, {}).storage is None


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ("  url: mysql://u@h/db", "storage.url (line 6): unsupported database 'mysql'"),
        (
            f"  url: postgresql://u:{PASSWORD}@h/db",
            "storage.url (line 6): holds a password: give it in password_file or password_env",
        ),
        ("  url: sqlite://\n  password_env: DB_PW", "storage.password_env (line 7): a SQLite"),
        (
            "  url: postgresql://u@h/db\n  password_env: DB_PW",
            "storage.password_env (line 7): the environment variable DB_PW is not set",
        ),
        (
            "  url: postgresql://u@h/db\n  password_file: /nonexistent/pw",
            "storage.password_file (line 7): cannot read /nonexistent/pw",
        ),
        ("  pool_size: 0", "storage.pool_size (line 6): must be at least 1"),
        ("  timeout: fast", "storage.timeout (line 6): expected a number"),
        ("  urls: sqlite://", "storage.urls (line 6): unknown key"),
    ],
)
def test_a_bad_storage_section_is_refused_naming_key_and_line(
    tmp_path: Path, storage: str, expected: str
) -> None:
    message = storage_error(tmp_path, storage)
    assert expected in message
    assert PASSWORD not in message


# Handlers, the test kit, the service and the command


class Notes(Handler):
    """Keeps notes: set stores one, get counts them."""

    schemas: ClassVar[list[Schema]] = []

    @iq("set", f"{{{NS_NOTES}}}note")
    def add(self, stanza: Any) -> Deferred[None]:
        schema = self.schemas[0]
        text = stanza[0].text
        assert self.component.storage is not None
        done = self.component.storage.transaction(insert(schema, text), name="add_note")
        return done.addCallback(lambda _: None)


@pytest.fixture
def notes_handler(monkeypatch: pytest.MonkeyPatch, notes: Schema) -> type[Notes]:
    monkeypatch.setattr(Notes, "schemas", [notes])
    return Notes


def test_the_test_kit_gives_a_handler_with_schemas_a_database_in_memory(
    notes_handler: type[Notes], notes: Schema
) -> None:
    server = FakeServer([notes_handler()])
    assert server.storage is not None and server.component.storage is server.storage
    (reply,) = server.deliver(f"<iq type='set'><note xmlns='{NS_NOTES}'>hi</note></iq>")
    assert reply.get("type") == "result"
    assert texts(server.storage, notes) == ["hi"]
    successResultOf(server.stop())
    failureResultOf(server.storage.transaction(insert(notes, "x"), name="add"))


def test_the_test_kit_gives_no_database_without_schemas() -> None:
    assert FakeServer([]).component.storage is None


def test_schemas_of_lists_each_schema_once(notes_handler: type[Notes], notes: Schema) -> None:
    assert schemas_of([notes_handler(), notes_handler(), Handler()]) == [notes]


def test_a_handler_with_schemas_gets_sqlite_in_the_working_directory_by_default(
    tmp_path: Path, notes_handler: type[Notes]
) -> None:
    path = write_config(
        tmp_path, "components: [{domain: a.example.org, secret: s, handlers: [test_storage:Notes]}]"
    )
    config = load_config(path, {})
    component = build_component(config.components[0], config, Clock(), None)
    database = build_database(config, [component], Clock())
    assert database is not None and database.url == "sqlite:///empc.sqlite3"
    assert component.storage is database and database.schemas == notes_handler.schemas


class Child(Service):
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def startService(self) -> None:
        super().startService()
        self.events.append("child started")

    def stopService(self) -> None:
        super().stopService()
        self.events.append("child stopped")


def test_the_service_opens_before_its_children_and_closes_after_them(notes: Schema) -> None:
    events: list[str] = []
    database = Database("sqlite://", runner=InlineRunner())
    database.add_schema(notes)
    service = StorageService(database, lambda: events.append("failed"))
    Child(events).setServiceParent(service)
    service.startService()
    assert events == ["child started"] and database.revisions == {"notes": ("notes_1",)}
    successResultOf(service.stopService())
    assert events == ["child started", "child stopped"]
    failureResultOf(database.transaction(insert(notes, "x"), name="add"), StorageUnavailable)


def test_the_service_starts_no_child_when_the_database_cannot_open(tmp_path: Path) -> None:
    events: list[str] = []
    database = Database(
        f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.sqlite3'}", runner=InlineRunner()
    )
    database.add_schema(make_schema(tmp_path))
    service = StorageService(database, lambda: events.append("failed"))
    Child(events).setServiceParent(service)
    service.startService()
    assert events == ["failed"]


def test_the_migrate_command_runs_the_migrations_and_exits(
    tmp_path: Path, notes_handler: type[Notes], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    path = config_path(tmp_path, f"  url: {url}", handlers="test_storage:Notes")
    assert main(["migrate", "-c", path]) == 0
    assert main(["migrate", "-c", path]) == 0
    assert capsys.readouterr().out == 2 * f"{url}: schema notes at revision notes_1\n"


def test_the_migrate_command_refuses_a_newer_database(
    tmp_path: Path, notes_handler: type[Notes], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    successResultOf(opened(url, make_schema(tmp_path / "v2", "notes", 2)).close())
    path = config_path(tmp_path, f"  url: {url}", handlers="test_storage:Notes")
    assert main(["migrate", "-c", path]) == 1
    assert "revision notes_2, which this code does not know" in capsys.readouterr().err


def test_a_sqlite_file_has_one_connection_whatever_the_pool_size(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'state.sqlite3'}", pool_size=5)
    assert database.pool_size == 1
    assert Database("postgresql://empc@127.0.0.1/empc", pool_size=5).pool_size == 5
