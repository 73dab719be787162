"""PubSub (XEP-0060) publish throughput and notification fan-out, in process.

A :class:`~empc._connection.ComponentProtocol` past its handshake serves the
:class:`~empc.pubsub.PubSub` handler on a real reactor, with a real
:class:`~empc.storage.Database` (its own pool of threads) on SQLite in a
temporary file or on PostgreSQL (a server of its own on a loopback port,
started by the test suite's helper). Publish IQs are fed to the protocol as
the server's reads; what the component writes (the answers and the
notifications) goes to a transport that finds them in the bytes. So every
figure includes the parser, the router, the handler, the database threads
and the serialization, but no socket.

1. Publish throughput: ``--publishes`` IQs to a node with 0 and with 10
   subscribers, at most ``--windows`` of them in flight, until every answer
   and every notification is written: publishes per second, CPU per publish
   (this process, all its threads), answer latency, SQL statements per
   publish and, on PostgreSQL, the server's CPU per publish.
2. Fan-out: ``--rounds`` single publications to a node with
   ``--subscribers`` subscribers: the time to the answer and to the last
   notification written, the CPU, and the longest time the reactor was
   blocked meanwhile (the largest gap between the ticks of a 1 ms
   LoopingCall).

Usage::

    python bench/pubsub.py [--databases sqlite,postgresql] [--publishes N]
                           [--windows 1,10] [--subscribers N] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR.parent), str(BENCH_DIR.parent / "tests")]

from bench.inprocess import CountingTransport  # noqa: E402
from bench.run import ID_RE, TYPE_RE  # noqa: E402

DOMAIN = "bench.localhost"
PUBLISHER = "owner@localhost/bench"
PAYLOAD = (
    "<entry xmlns='http://www.w3.org/2005/Atom'><title>A day at the bench</title>"
    "<summary>Notifications for every subscriber, in bounded batches.</summary>"
    "<published>2024-01-01T00:00:00Z</published></entry>"
)
PUBLISH = (
    "<iq type='set' id='pub%d' from='" + PUBLISHER + "' to='" + DOMAIN + "'>"
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='%s'>"
    "<item>" + PAYLOAD + "</item></publish></pubsub></iq>"
)
IQ_START = re.compile(rb"<iq\s[^>]*>")
PROBE_INTERVAL = 0.001  # seconds between the reactor probe's ticks
IDLE_PROBE = 0.2  # seconds the probe runs idle, for its own jitter
SUBSCRIBE_CONCURRENCY = 5  # subscriptions made at once while setting up


class Wire(CountingTransport):
    """What the component writes: notifications counted, IQ answers found
    by id. ``changed`` is called (in a later reactor turn, never from
    inside the component's write) after a write brought something."""

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self.reactor = reactor
        self.messages = 0
        self.answers: list[tuple[str, str, float]] = []  # id, type, when
        self.changed: Callable[[], None] | None = None
        self._scheduled = False

    def write(self, data: bytes) -> None:
        super().write(data)
        self.messages += data.count(b"<message")
        for tag in IQ_START.findall(data):
            found = ID_RE.search(tag)
            kind = TYPE_RE.search(tag)
            if found is not None:
                self.answers.append(
                    (
                        (found.group(1) or found.group(2)).decode(),
                        (kind.group(1) or kind.group(2)).decode() if kind else "",
                        time.perf_counter(),
                    )
                )
        if self.changed is not None and not self._scheduled:
            self._scheduled = True
            self.reactor.callLater(0, self._tell)

    def _tell(self) -> None:
        self._scheduled = False
        if self.changed is not None:
            self.changed()


class StatementCounter:
    """SQL statements run by every engine of the process (all threads)."""

    def __init__(self) -> None:
        from sqlalchemy import Engine, event

        self._lock = threading.Lock()
        self.count = 0
        event.listen(Engine, "before_cursor_execute", self._executed)

    def _executed(self, *_: object) -> None:
        with self._lock:
            self.count += 1


class ServerClock:
    """CPU seconds of a PostgreSQL server: its postmaster and every
    process it started (the sessions), read from /proc (10 ms ticks)."""

    def __init__(self, data_directory: Path) -> None:
        pid_file = data_directory / "postmaster.pid"
        self._pid = int(pid_file.read_text().split()[0])
        self._tick = os.sysconf("SC_CLK_TCK")

    def seconds(self) -> float:
        ticks = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(entry.name) == self._pid or int(fields[1]) == self._pid:
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / self._tick


@dataclass
class Bench:
    """One component serving PubSub on one database, linked to a Wire."""

    reactor: Any
    database: Any
    component: Any
    protocol: Any
    wire: Wire
    statements: StatementCounter
    server: ServerClock | None
    sent: int = 0  # IQs fed so far, for unique ids

    def feed(self, node: str, count: int) -> list[str]:
        """Feed ``count`` publish IQs in one read; their ids."""
        ids = [f"pub{self.sent + i}" for i in range(count)]
        data = "".join(PUBLISH % (self.sent + i, node) for i in range(count))
        self.sent += count
        self.protocol.dataReceived(data.encode())
        return ids

    def server_cpu(self) -> float:
        return self.server.seconds() if self.server is not None else 0.0


@dataclass
class Run:
    """One measured phase."""

    database: str
    what: str
    publishes: int
    subscribers: int
    window: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    statements: int = 0
    latencies: list[float] = field(default_factory=list)
    notified: int = 0
    max_gap_ms: float = 0.0
    answer_ms: float = 0.0
    errors: list[str] = field(default_factory=list)
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        expected = self.publishes * self.subscribers
        return not self.errors and not self.timed_out and self.notified == expected


class Probe:
    """Ticks every PROBE_INTERVAL on the reactor; the largest gap between
    two ticks is the longest the reactor could not run it."""

    def __init__(self, reactor: Any) -> None:
        from twisted.internet.task import LoopingCall

        self._call = LoopingCall(self._tick)
        self._call.clock = reactor
        self._last = 0.0
        self.max_gap = 0.0

    def start(self) -> None:
        self.max_gap = 0.0
        self._last = time.perf_counter()
        self._call.start(PROBE_INTERVAL, now=False)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.max_gap = max(self.max_gap, now - self._last)
        self._last = now

    def stop(self) -> float:
        self._tick()
        self._call.stop()
        return self.max_gap


async def pipeline(
    bench: Bench, run: Run, node: str, window: int, timeout: float, probe: Probe | None = None
) -> Run:
    """Publish ``run.publishes`` items to ``node``, at most ``window`` in
    flight, until every answer and every notification is written or
    ``timeout`` seconds pass; fill ``run`` with what was measured."""
    from twisted.internet.defer import Deferred

    wire = bench.wire
    messages_before = wire.messages
    expected_messages = run.publishes * run.subscribers
    sent_at: dict[str, float] = {}
    answered = 0
    finished: Deferred[None] = Deferred()

    def fill() -> None:
        nonlocal answered
        for iq_id, kind, when in wire.answers:
            started = sent_at.pop(iq_id, None)
            if started is None:
                continue
            answered += 1
            run.latencies.append(when - started)
            if kind != "result" and len(run.errors) < 5:
                run.errors.append(f"{iq_id}: answered {kind}")
        wire.answers.clear()
        room = min(window - len(sent_at), run.publishes - bench.sent + first)
        if room > 0:
            now = time.perf_counter()
            for iq_id in bench.feed(node, room):
                sent_at[iq_id] = now
        done = answered == run.publishes
        if done and wire.messages - messages_before >= expected_messages and not finished.called:
            finished.callback(None)

    first = bench.sent
    wire.answers.clear()
    wire.changed = fill
    deadline = bench.reactor.callLater(timeout, finished.callback, None)
    server_cpu, statements = bench.server_cpu(), bench.statements.count
    cpu, wall = time.process_time(), time.perf_counter()
    if probe is not None:
        probe.start()
    fill()
    await finished
    run.wall_s = time.perf_counter() - wall
    if probe is not None:
        run.max_gap_ms = probe.stop() * 1000
    run.cpu_s = time.process_time() - cpu
    run.server_cpu_s = bench.server_cpu() - server_cpu
    run.statements = bench.statements.count - statements
    wire.changed = None
    run.notified = wire.messages - messages_before
    run.timed_out = not deadline.active()
    if deadline.active():
        deadline.cancel()
    return run


async def open_bench(
    reactor: Any, url: str, pool_size: int, statements: StatementCounter, server: ServerClock | None
) -> Bench:
    """A PubSub component on the database at ``url``, past its handshake."""
    from empc import Component
    from empc._connection import ComponentProtocol, LinkSettings
    from empc.pubsub import PubSub
    from empc.storage import Database, schemas_of

    pubsub = PubSub({"max_queued_bytes": 2**30})
    database = Database(url, pool_size=pool_size, clock=reactor)
    for schema in schemas_of([pubsub]):
        database.add_schema(schema)
    await database.open()
    component = Component(DOMAIN, [pubsub], reactor, storage=database)
    await component.start()
    quiet = LinkSettings(keepalive_interval=0, ping_interval=0)
    protocol = ComponentProtocol(component, "secret", reactor, quiet)
    wire = Wire(reactor)
    protocol.makeConnection(wire)
    protocol.dataReceived(
        b"<stream:stream xmlns='jabber:component:accept'"
        b" xmlns:stream='http://etherx.jabber.org/streams' id='bench'><handshake/>"
    )
    return Bench(reactor, database, component, protocol, wire, statements, server)


async def close_bench(bench: Bench) -> None:
    await bench.component.stop()
    await bench.database.close()


async def make_node(bench: Bench, name: str, subscribers: int) -> None:
    """Create ``name``, owned by the publisher, with ``subscribers`` subscribers."""
    from twisted.internet.defer import DeferredSemaphore, gatherResults

    from empc.protocol import JID

    pubsub = bench.component.handlers[0]
    await pubsub.create_node(name, owner=JID.parse(PUBLISHER))
    gate = DeferredSemaphore(SUBSCRIBE_CONCURRENCY)
    await gatherResults(
        [
            gate.run(pubsub.subscribe, name, JID.parse(f"sub{i}@localhost/bench"))
            for i in range(subscribers)
        ],
        consumeErrors=True,
    )


async def measure(
    reactor: Any,
    database: str,
    url: str,
    args: Any,
    statements: StatementCounter,
    server: ServerClock | None,
) -> list[Run]:
    """Every phase on one database."""
    bench = await open_bench(reactor, url, args.pool_size, statements, server)
    runs = []
    try:
        for subscribers in (0, 10):
            node = f"throughput-{subscribers}"
            await make_node(bench, node, subscribers)
            warm = Run(database, "warm-up", args.warmup, subscribers)
            await pipeline(bench, warm, node, max(args.windows), args.timeout)
            for window in args.windows:
                run = Run(database, "publish", args.publishes, subscribers, window)
                runs.append(await pipeline(bench, run, node, window, args.timeout))
                if run.timed_out:  # what is still in flight would skew the next runs
                    return runs
        await make_node(bench, "fan-out", args.subscribers)
        probe = Probe(reactor)
        probe.start()
        await settle_for(reactor, IDLE_PROBE)
        idle = probe.stop() * 1000
        print(f"{database}: the probe's largest gap while idle: {idle:.1f} ms")
        for _ in range(args.rounds):
            run = Run(database, "fan-out", 1, args.subscribers, 1)
            runs.append(await pipeline(bench, run, "fan-out", 1, args.timeout, probe))
            if run.timed_out:
                return runs
            run.answer_ms = run.latencies[0] * 1000 if run.latencies else float("nan")
    finally:
        await close_bench(bench)
    return runs


async def settle_for(reactor: Any, seconds: float) -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)


# -- the table ---------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print(
            "  ".join(
                cell.rjust(w) if i else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def report(runs: list[Run]) -> None:
    throughput = [r for r in runs if r.what == "publish"]
    rows = []
    for r in throughput:
        rows.append(
            [
                r.database,
                str(r.subscribers),
                str(r.window),
                f"{r.publishes}" + ("" if r.ok else " !"),
                f"{r.wall_s:.2f}",
                f"{r.publishes / r.wall_s:,.0f}",
                f"{r.cpu_s / r.publishes * 1e6:,.0f}",
                f"{r.server_cpu_s / r.publishes * 1e6:,.0f}" if r.database != "sqlite" else "-",
                f"{median(r.latencies) * 1000:.2f}",
                f"{percentile(r.latencies, 0.99) * 1000:.2f}",
                f"{r.statements / r.publishes:.1f}",
            ]
        )
    print()
    print("Publish throughput (each IQ answered, each notification written):")
    print_table(
        rows,
        [
            "database",
            "subscribers",
            "window",
            "publishes",
            "wall s",
            "publishes/s",
            "cpu us/pub",
            "server cpu us/pub",
            "p50 ms",
            "p99 ms",
            "sql/pub",
        ],
    )
    rows = []
    for database in dict.fromkeys(r.database for r in runs if r.what == "fan-out"):
        rounds = [r for r in runs if r.what == "fan-out" and r.database == database]
        rows.append(
            [
                database,
                str(rounds[0].subscribers),
                f"{len(rounds)}" + ("" if all(r.ok for r in rounds) else " !"),
                f"{median([r.answer_ms for r in rounds]):.1f}",
                f"{median([r.wall_s * 1000 for r in rounds]):.1f}",
                f"{median([r.cpu_s * 1000 for r in rounds]):.1f}",
                f"{median([r.cpu_s / r.subscribers * 1e6 for r in rounds]):.1f}",
                f"{median([r.max_gap_ms for r in rounds]):.1f}",
                f"{max(r.max_gap_ms for r in rounds):.1f}",
            ]
        )
    print()
    print("Fan-out (one publication; medians over the rounds):")
    print_table(
        rows,
        [
            "database",
            "subscribers",
            "rounds",
            "answer ms",
            "last notification ms",
            "cpu ms",
            "cpu us/notification",
            "max gap ms",
            "worst gap ms",
        ],
    )
    for r in runs:
        if not r.ok:
            expected = r.publishes * r.subscribers
            why = "timed out" if r.timed_out else f"{r.notified}/{expected} notifications"
            print(f"! {r.database} {r.what} ({r.subscribers} subscribers): {why}; {r.errors}")


# -- main --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--publishes", type=int, default=1000, help="per throughput run")
    parser.add_argument("--windows", default="1,10", help="publishes in flight, a list")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured publishes per node")
    parser.add_argument("--subscribers", type=int, default=1000, help="of the fan-out node")
    parser.add_argument("--rounds", type=int, default=5, help="fan-out publications")
    parser.add_argument("--pool-size", type=int, default=5, help="database connections")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run, at most")
    args = parser.parse_args(argv)
    databases = args.databases.split(",")
    if not set(databases) <= {"sqlite", "postgresql"}:
        parser.error("--databases: sqlite, postgresql or both")
    args.windows = [int(w) for w in args.windows.split(",")]
    for name, value, top in (
        ("--publishes", args.publishes, 100_000),
        ("--warmup", args.warmup, 100_000),
        ("--subscribers", args.subscribers, 100_000),
        ("--rounds", args.rounds, 1000),
        ("--pool-size", args.pool_size, 100),
        *(("--windows", w, 1000) for w in args.windows),
    ):
        if not 1 <= value <= top:
            parser.error(f"{name} must be 1 to {top}")

    import empc

    print(f"empc: {empc.__file__}; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="empc-bench-pubsub-") as directory:
        runs = run_all(databases, Path(directory), args)
    report(runs)
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0 if all(r.ok for r in runs) else 1


def run_all(databases: list[str], directory: Path, args: Any) -> list[Run]:
    """Every phase on each database, in one run of the reactor (which
    cannot be started twice)."""
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    server = None
    if "postgresql" in databases:
        from postgres import PostgresServer

        server = PostgresServer()
    runs: list[Run] = []

    async def go(reactor: Any) -> None:
        statements = StatementCounter()
        for database in databases:
            if database == "sqlite":
                url = f"sqlite:///{directory / 'pubsub.sqlite3'}"
                runs.extend(await measure(reactor, database, url, args, statements, None))
            else:
                assert server is not None
                clock = ServerClock(server.data)
                runs.extend(await measure(reactor, database, server.url, args, statements, clock))

    try:
        if server is not None:
            server.start()
        react(lambda reactor: Deferred.fromCoroutine(go(reactor)))
    except SystemExit as exit:
        if exit.code:
            raise
    finally:
        if server is not None:
            server.remove()
    return runs


if __name__ == "__main__":
    sys.exit(main())
