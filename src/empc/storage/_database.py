"""One database for the process, used from the reactor without blocking it.

Each call is a named transaction: a function of a connection, run in a
thread (see :class:`~empc.storage.Runner`), inside ``BEGIN``... ``COMMIT``.
Its Deferred fires once the transaction has committed, so an answer sent
from its callback never announces what the database did not keep.

A database that is lost, slow or busy fails calls with
:class:`StorageUnavailable` (a ``wait`` stanza error) instead of making
them hang: pool waits, connection attempts and statements (PostgreSQL's
``statement_timeout``, SQLite's busy timeout) are all bounded by
``timeout``, and at most ``max_waiting`` calls wait for a connection. Such
an incident is logged once, when it starts, and once more when a call
succeeds again. Connections are checked before use (``pool_pre_ping``), so
a restarted PostgreSQL is reconnected to without a restart of empc.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from empc.routing import StanzaError
from empc.storage._runner import Runner, ThreadPoolRunner
from empc.storage._schema import Schema, StorageError, upgrade

T = TypeVar("T")
U = TypeVar("U")

DIALECTS = ("sqlite", "postgresql")
# PostgreSQL's serialization_failure and deadlock_detected: the transaction
# lost a race and may simply be run again.
_RETRY_STATES = ("40001", "40P01")
_ATTEMPTS = 3
# PostgreSQL's classes of SQLSTATE for a server that cannot serve now:
# connection exception, insufficient resources, operator intervention
# (statement timeout, shutdown), and a lost race once the attempts are
# spent (too busy). Any other state is a bug or a bad input.
_UNAVAILABLE_CLASSES = ("08", "53", "57", "40")
# SQLite's codes for a database that is there but cannot serve now.
_SQLITE_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL")


class StorageUnavailable(StanzaError):
    """The database cannot serve now: lost, too slow, or too busy. The
    router answers it as ``resource-constraint`` of type ``wait``; the
    stanza's text says no more than that, ``reason`` (for the log) says why.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(
            "resource-constraint",
            "the service's storage is unavailable; try again later",
            type="wait",
        )
        self.reason = reason


def parse_url(url: str) -> URL:
    """``url`` as a SQLAlchemy URL of a dialect empc supports.

    :raises StorageError: for a url that is not one (without quoting it:
        it may hold a password).
    """
    try:
        parsed = make_url(url)
    except sa.ArgumentError:
        raise StorageError(
            "not a database url: expected sqlite:///path/file.sqlite3 or "
            "postgresql://user@host:port/database"
        ) from None
    if parsed.get_backend_name() not in DIALECTS:
        raise StorageError(
            f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql"
        )
    if parsed.get_driver_name() not in ("pysqlite", "psycopg"):
        raise StorageError(
            f"unsupported driver {parsed.get_driver_name()!r}: empc uses psycopg for "
            "postgresql (write postgresql://...)"
        )
    return parsed


class Database:
    """One database for the process: SQLite (default) or PostgreSQL.

    Calls run in a bounded pool of threads of their own, each in a
    transaction committed before its Deferred fires.

    :param url: ``sqlite:///relative/path.sqlite3``, ``sqlite:////absolute``,
        ``sqlite://`` (in memory) or ``postgresql://user@host:port/database``.
    :param pool_size: connections (and threads) at most, on PostgreSQL;
        a SQLite database has one.
    :param timeout: seconds a call may wait for a connection, for a
        connection to be made, or for one statement.
    :param max_waiting: calls that may wait for a connection; more are
        refused at once with :class:`StorageUnavailable`.
    :param clock: the reactor the default runner hands results back
        through (the global reactor if None).
    :param runner: how work runs off the reactor thread; by default a pool
        of ``pool_size`` threads; tests pass an
        :class:`~empc.storage.InlineRunner`.
    :param password: the password, kept apart from the url (config files
        take it from a file or the environment).
    :raises StorageError: for a url of an unsupported kind.
    """

    log = Logger()

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        timeout: float = 10.0,
        max_waiting: int = 100,
        clock: IReactorTime | None = None,
        runner: Runner | None = None,
        password: str | None = None,
    ) -> None:
        parsed = parse_url(url)
        self.url = parsed.render_as_string(hide_password=True)
        self.dialect = parsed.get_backend_name()
        if password is not None:
            parsed = parsed.set(password=password)
        self._secret = parsed.password
        self._url = parsed
        self.timeout = timeout
        self.max_waiting = max_waiting
        self._memory = self.dialect == "sqlite" and parsed.database in (None, "", ":memory:")
        # SQLite lets one transaction write at a time, and makes the others
        # sleep (up to 100 ms a try) for its lock: one connection queues them
        # here instead, at the same throughput and a far shorter tail.
        self.pool_size = 1 if self.dialect == "sqlite" else pool_size
        self._clock = clock
        self._runner = runner
        self._schemas: dict[str, Schema] = {}
        self._engine: Engine | None = None
        self._closed = False
        self._running = 0
        self._waiting: deque[_Waiting] = deque()
        self._idle: Deferred[None] | None = None
        self._closers: list[Deferred[None]] = []
        self._incident = False
        self.revisions: dict[str, tuple[str, ...]] = {}
        """Each schema's revisions once :meth:`open` has migrated it."""

    @property
    def safe_url(self) -> str:
        """The url with its password hidden, for logs and errors."""
        return self.url

    @property
    def schemas(self) -> list[Schema]:
        return list(self._schemas.values())

    @property
    def in_use(self) -> int:
        """How many calls hold a connection now."""
        return self._running

    def add_schema(self, schema: Schema) -> None:
        """Have :meth:`open` migrate ``schema`` too; adding it again is harmless.

        :raises ValueError: for another schema of the same name.
        :raises RuntimeError: once the database is open.
        """
        known = self._schemas.get(schema.name)
        if known is schema:
            return
        if known is not None:
            raise ValueError(f"two schemas are named {schema.name}: {known} and {schema}")
        if self._engine is not None or self._closed:
            raise RuntimeError(f"schema {schema.name} added after the database was opened")
        self._schemas[schema.name] = schema

    def open(self) -> Deferred[None]:
        """Connect, and run every schema's migrations to its head.

        Fails with :class:`StorageError` if the database cannot be reached
        or has a revision newer than the code knows, or a migration fails.
        """
        if self._engine is not None or self._closed:
            return fail(RuntimeError(f"{self.url} was already opened"))
        if self._clock is None:
            from twisted.internet import reactor as default_reactor

            self._clock = default_reactor
        if self._runner is None:
            self._runner = ThreadPoolRunner(self._clock, self.pool_size)
        self._runner.start()
        self._engine = self._create_engine()
        outcome = self._runner.run(self._migrate)
        return outcome.addCallbacks(self._opened, self._open_failed)

    def _migrate(self) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
        assert self._engine is not None
        done = []
        for schema in self._schemas.values():
            try:
                with self._engine.begin() as connection:
                    if self.dialect == "postgresql":
                        # A migration may rewrite a big table: the timeout
                        # bounds requests, not the operator's upgrade.
                        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
                    done.append((schema.name, *upgrade(connection, schema)))
            except StorageError:
                raise
            except sa.SQLAlchemyError as e:
                raise StorageError(
                    f"schema {schema.name} cannot be migrated: {self._reason(e)}"
                ) from None
        return done

    def _opened(self, done: Iterable[tuple[str, tuple[str, ...], tuple[str, ...]]]) -> None:
        for name, before, after in done:
            self.revisions[name] = after
            if before == after:
                self.log.info(
                    "Storage {url}: schema {name} at revision {after}",
                    url=self.url,
                    name=name,
                    after=", ".join(after) or "(none)",
                )
            else:
                self.log.info(
                    "Storage {url}: schema {name} upgraded from {before} to {after}",
                    url=self.url,
                    name=name,
                    before=", ".join(before) or "(empty)",
                    after=", ".join(after),
                )

    def _open_failed(self, failure: Failure) -> Failure:
        engine, self._engine = self._engine, None
        assert engine is not None and self._runner is not None
        engine.dispose()
        self._runner.stop()
        self._closed = True
        return failure

    def close(self) -> Deferred[None]:
        """Refuse new calls, wait for the running ones (each bounded by the
        timeouts), then close the connections and stop the threads. Every
        call of ``close`` fires then, a second one too."""
        self._closed = True
        while self._waiting:
            self._waiting.popleft().refuse(StorageUnavailable("the database is closing"))
        if self._engine is None and not self._closers:
            return succeed(None)
        closed: Deferred[None] = Deferred()
        self._closers.append(closed)
        if len(self._closers) == 1:  # the first close: the others wait with it
            idle: Deferred[None] = succeed(None)
            if self._running:
                idle = self._idle = Deferred()
            idle.addCallback(lambda _: self._dispose()).addBoth(self._closed_down)
        return closed

    def _closed_down(self, outcome: object) -> None:
        closers, self._closers = self._closers, []
        for closed in closers:
            _fire(closed, outcome if isinstance(outcome, Failure) else None)

    def _dispose(self) -> Deferred[None]:
        engine, self._engine = self._engine, None
        assert engine is not None and self._runner is not None
        runner = self._runner
        disposed: Deferred[None] = runner.run(engine.dispose)

        def stop(outcome: object) -> object:
            runner.stop()
            return outcome

        return disposed.addBoth(stop)

    @overload
    def transaction(self, work: Callable[[Connection], T], *, name: str) -> Deferred[T]: ...
    @overload
    def transaction(
        self, work: Callable[[Connection], T], *, name: str, committed: Callable[[T], U]
    ) -> Deferred[U]: ...
    def transaction(
        self,
        work: Callable[[Connection], Any],
        *,
        name: str,
        committed: Callable[[Any], Any] | None = None,
    ) -> Deferred[Any]:
        """Run ``work(connection)`` in a transaction, in a thread.

        The Deferred fires, in the reactor thread, with ``work``'s value
        once the transaction has committed. If ``work`` raises, the
        transaction is rolled back and the Deferred fails with that
        exception (a :class:`~empc.StanzaError` is the answer; anything else
        is a bug, answered ``internal-server-error``). A serialization
        failure or deadlock on PostgreSQL runs ``work`` again (three times
        at most), so ``work`` must do nothing but database work. It fails
        with :class:`StorageUnavailable` if the database is lost, too slow,
        too busy (``max_waiting`` calls already wait) or closed.

        ``work`` runs in another thread: it returns plain values (build
        XML elements from them in the callback, not in ``work``).

        Cancelling the Deferred (a caller that stops waiting) fails it at
        once with ``CancelledError``; a call that waits for a connection
        then never runs, but one that runs goes on to its commit or
        rollback, keeping its connection until then. A call that waits
        longer than ``timeout`` for a connection fails with
        :class:`StorageUnavailable`.

        :param name: what the transaction does, for the log (``get_items``).
        :param committed: what the commit causes (notifications...): called
            in the reactor thread with ``work``'s value once committed,
            even if the caller has stopped waiting; the Deferred fires with
            its value.
        """
        if self._closed:
            return fail(StorageUnavailable("the database is closed"))
        if self._engine is None:
            return fail(RuntimeError(f"{name}: the database {self.url} is not open"))

        def withdraw(_: Deferred[Any]) -> None:
            # A caller that stops waiting frees its place in the queue at
            # once (a running call goes on; see _start).
            if call in self._waiting:
                self._waiting.remove(call)
                if call.deadline is not None and call.deadline.active():
                    call.deadline.cancel()

        answer: Deferred[Any] = Deferred(withdraw)
        call = _Waiting(lambda: self._run(work, name), name, answer, committed)
        if self._running < self.pool_size:
            self._start(call)
            return answer
        if len(self._waiting) >= self.max_waiting:
            return self._observed(
                fail(StorageUnavailable(f"{self.max_waiting} calls already wait")), name
            )
        assert self._clock is not None

        def expire() -> None:
            self._waiting.remove(call)
            call.refuse(StorageUnavailable(f"{name}: no connection free in {self.timeout} s"))

        call.deadline = self._clock.callLater(self.timeout, expire)
        self._waiting.append(call)
        return answer

    def _start(self, call: _Waiting) -> None:
        """Run ``call``; its answer fires with the outcome, unless its
        caller canceled it: the pool's count follows the thread, which
        goes on either way, never the caller."""
        assert self._runner is not None
        self._running += 1
        outcome = self._runner.run(call.run)
        outcome.addBoth(self._finished)
        self._observed(outcome, call.name)
        if call.committed is not None:
            outcome.addCallback(call.committed)
        outcome.addBoth(self._hand_over, call)

    def _hand_over(self, outcome: object, call: _Waiting) -> None:
        if not call.answer.called:
            _fire(call.answer, outcome)
        elif isinstance(outcome, Failure) and not outcome.check(StanzaError):
            self.log.failure(
                "Storage: {name} failed after its caller stopped waiting", outcome, name=call.name
            )

    def _finished(self, outcome: object) -> object:
        self._running -= 1
        while self._waiting and self._running < self.pool_size:
            call = self._waiting.popleft()
            if call.deadline is not None and call.deadline.active():
                call.deadline.cancel()
            if not call.answer.called:  # else canceled by its caller meanwhile
                self._start(call)
        if not self._running and self._idle is not None:
            idle, self._idle = self._idle, None
            idle.callback(None)
        return outcome

    def _observed(self, outcome: Deferred[T], name: str) -> Deferred[T]:
        """Log an incident when it starts and when it ends."""

        def note(result: object) -> object:
            unavailable = isinstance(result, Failure) and result.check(StorageUnavailable)
            if unavailable and not self._incident:
                self._incident = True
                assert isinstance(result, Failure)
                self.log.warn(
                    "Storage {url} is unavailable ({reason}); requests fail until it is back",
                    url=self.url,
                    reason=result.value.reason,  # type: ignore[union-attr]
                )
            elif not unavailable and self._incident and name:
                self._incident = False
                self.log.info("Storage {url} is back", url=self.url)
            return result

        return outcome.addBoth(note)

    def _run(self, work: Callable[[Connection], T], name: str) -> T:
        """In a thread: ``work`` in a transaction, failures sorted out."""
        engine = self._engine
        if engine is None:
            raise StorageUnavailable("the database is closed")
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with engine.connect() as connection, connection.begin():
                    return work(connection)
            except sa.DBAPIError as e:
                state = getattr(e.orig, "sqlstate", None)
                if state in _RETRY_STATES and attempt < _ATTEMPTS:
                    continue
                if self._is_unavailable(e):
                    raise StorageUnavailable(f"{name}: {self._reason(e)}") from None
                raise
            except (sa.TimeoutError, sa.DisconnectionError) as e:
                raise StorageUnavailable(f"{name}: {self._reason(e)}") from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _is_unavailable(self, error: sa.DBAPIError) -> bool:
        if error.connection_invalidated:
            return True
        state = getattr(error.orig, "sqlstate", None)
        if state:
            return str(state)[:2] in _UNAVAILABLE_CLASSES
        if self.dialect == "sqlite":
            code = getattr(error.orig, "sqlite_errorname", "")
            return str(code).startswith(_SQLITE_UNAVAILABLE)
        # psycopg's own, without a state: no connection could be made, or it broke.
        return isinstance(error, sa.OperationalError | sa.InterfaceError)

    def _reason(self, error: Exception) -> str:
        """Why, in one line, without the statement, its parameters or the password."""
        cause = error.orig if isinstance(error, sa.DBAPIError) else error
        lines = str(cause).strip().splitlines() or [type(cause).__name__]
        reason = lines[0]
        if self._secret:
            reason = reason.replace(self._secret, "********")
        return reason

    def _create_engine(self) -> Engine:
        if self.dialect == "postgresql":
            milliseconds = max(1, round(self.timeout * 1000))
            return create_engine(
                self._url.set(drivername="postgresql+psycopg"),
                pool_size=self.pool_size,
                max_overflow=0,
                pool_timeout=self.timeout,
                pool_pre_ping=True,
                hide_parameters=True,
                connect_args={
                    "connect_timeout": max(1, math.ceil(self.timeout)),
                    "options": f"-c statement_timeout={milliseconds}",
                    # Sent data unacknowledged that long: the server is gone.
                    "tcp_user_timeout": milliseconds,
                },
            )
        options: dict[str, Any] = (
            {"poolclass": StaticPool}
            if self._memory
            else {"pool_size": self.pool_size, "max_overflow": 0, "pool_timeout": self.timeout}
        )
        engine = create_engine(
            self._url,
            connect_args={"check_same_thread": False, "timeout": self.timeout},
            hide_parameters=True,
            **options,
        )
        event.listen(engine, "connect", self._set_up_sqlite)
        event.listen(engine, "begin", _begin_immediate)
        return engine

    def _set_up_sqlite(self, connection: Any, record: object) -> None:
        # The driver's own transaction handling off: "begin" below says BEGIN.
        connection.isolation_level = None
        cursor = connection.cursor()
        if not self._memory:
            cursor.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the writer
        cursor.execute(f"PRAGMA busy_timeout={round(self.timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    def __repr__(self) -> str:
        return f"Database({self.url!r})"


class _Waiting:
    """A call of :meth:`Database.transaction`: its work, its name, the
    Deferred its caller holds, what its commit causes, and, while it waits
    for a connection, its deadline."""

    def __init__(
        self,
        run: Callable[[], Any],
        name: str,
        answer: Deferred[Any],
        committed: Callable[[Any], Any] | None,
    ) -> None:
        self.run = run
        self.name = name
        self.answer = answer
        self.committed = committed
        self.deadline: IDelayedCall | None = None

    def refuse(self, error: StorageUnavailable) -> None:
        if self.deadline is not None and self.deadline.active():
            self.deadline.cancel()
        if not self.answer.called:
            self.answer.errback(error)


def _fire(deferred: Deferred[T], outcome: object) -> None:
    """Fire ``deferred`` with ``outcome``, a value or a :class:`Failure`."""
    if isinstance(outcome, Failure):
        deferred.errback(outcome)
    else:
        deferred.callback(outcome)  # type: ignore[arg-type]


def _begin_immediate(connection: Connection) -> None:
    """Take SQLite's write lock up front: a transaction that reads, then
    writes, could otherwise fail at once with "database is locked" (its
    upgrade to writer cannot wait for another writer), busy timeout or not."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")
