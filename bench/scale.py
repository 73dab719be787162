"""The example microblog scaled out: throughput, latency and CPU per post
with 1, 2 and 3 tweeter workers for one domain behind one ejabberd.

Everything runs on this machine, on loopback: a PostgreSQL cluster of its
own in a temporary directory, a private ejabberd, the tweeter workers
(``twistd -n empc``, each connected to ejabberd for tweeter.localhost,
which spreads the domain's stanzas over the connections at random, stanza
by stanza) and the users, slixmpp clients in this process (one thread and
event loop each). Those are the integration tests' own: this script puts
``tests/integration`` and ``tests`` on ``sys.path`` and imports
``EjabberdServer`` (servers.py), ``PostgresServer`` (postgres.py),
``Workers`` and ``fresh_database`` (workers.py, which start
``ComponentProcess`` es) and ``XmppClient`` (client.py).

For each worker count of ``--workers`` (``--repeat`` times, interleaved), on
a fresh database: the workers are started, the ``--users`` users (online
throughout) follow one another by chat, post ``--warmup`` unmeasured posts
each, then ``--posts`` measured ones each ("post <text>" chat messages to
tweeter.localhost), each user's next post sent as soon as the last one is
answered: a chat command is one user's at a time (the tweeter refuses a
second one with "still working on your last message"), so ``--users`` is
the number of posts in flight. A post is answered by the worker that got it ("Posted
#n to 3 follower(s).") and reaches each of the author's followers as a chat
message whose body is its text, sent through the PubSub outbox. The run
ends once every acknowledged post reached every follower, or after
``--timeout`` seconds.

Measured, per run: posts acknowledged per second (from the first post sent
to the last answer); the latency from a post's sending to its answer and
to each follower's delivery (median, p95); the CPU seconds, per post
acknowledged, of ejabberd (its beam process, all threads), PostgreSQL (the
postmaster and its sessions), each worker (all threads) and this process
(the clients; one GIL for all of them); the whole machine's busy and
stolen time (/proc/stat); and, sampled every 0.1 s, how many of the
database's sessions were active and how many of those waited for a lock.

Usage::

    python bench/scale.py [--workers 1,2,3] [--users 4] [--posts 200]
                          [--warmup 10] [--repeat 1]
                          [--timeout 300] [--keep]

Everything started is stopped at the end, on an error or on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "integration"), str(ROOT / "tests")]

import psycopg  # noqa: E402
import pytest  # noqa: E402
from client import CLIENT_NS, XmppClient  # noqa: E402
from postgres import PostgresServer  # noqa: E402
from servers import EjabberdServer  # noqa: E402
from slixmpp.xmlstream import StanzaBase  # noqa: E402
from workers import TWEETER, Workers, fresh_database  # noqa: E402

from bench.pubsub import ServerClock, percentile, print_table  # noqa: E402
from bench.run import ProcessCpuClock  # noqa: E402

POSTED = re.compile(r"Posted #(\d+) to (\d+) follower\(s\)\.")
RESENT = "PubSub: sending again"  # a worker's log line: outbox rows sent again
OUTBOX_SETTLE = 2.0  # seconds after a drive before the outbox is looked at again
COMMAND_TIMEOUT = 15.0  # seconds for the answer to a follow command
WAIT_STEP = 0.2  # seconds the driver waits for news before looking again
SAMPLE_INTERVAL = 0.1  # seconds between two looks at the database's sessions
SESSIONS = """
SELECT count(*) FILTER (WHERE state = 'active'),
       count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock'),
       count(*) FILTER (WHERE state = 'idle in transaction')
FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
"""
# The statements the sessions that wait for a lock are running, shortened.
WAITING = """
SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 60) FROM pg_stat_activity
WHERE datname = current_database() AND state = 'active' AND wait_event_type = 'Lock'
"""


# -- what the users receive ------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    user: str
    time: float
    type: str
    body: str


class Inbox:
    """What the users' clients receive during one drive, with the time it
    came: the tweeter's answers (messages from tweeter.localhost itself, by
    id) and the posts holding ``token`` delivered to followers (chat
    messages from an author's address at the tweeter)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.changed = threading.Condition()
        self.answers: dict[str, Answer] = {}
        self.answered: Counter[str] = Counter()  # answers by user
        self.acknowledged = 0  # answers that say the post was made
        self.deliveries: list[tuple[str, str, float]] = []  # follower, text, time
        self.delivered: set[tuple[str, str]] = set()  # follower, text

    def add(self, user: str, now: float, sender: str, kind: str, sid: str, body: str) -> None:
        with self.changed:
            if sender.partition("/")[0] == TWEETER:
                self.answers[sid] = Answer(user, now, kind, body)
                self.answered[user] += 1
                self.acknowledged += POSTED.fullmatch(body) is not None
            elif sender.endswith(f"@{TWEETER}") and body.startswith(self.token):
                self.deliveries.append((user, body, now))
                self.delivered.add((user, body))
            else:
                return
            self.changed.notify_all()

    def answers_beyond(self, count: int) -> bool:
        """Whether more than ``count`` answers came (call with ``changed`` held)."""
        return len(self.answers) > count


class User(XmppClient):
    """A user's client that, while ``inbox`` is set, puts the messages it
    receives there (cheaply: no copy of the stanza), else in its own
    inbox as the tests' client does."""

    def __init__(self, jid: str, password: str, port: int) -> None:
        super().__init__(jid, password, port, available=True)
        self.inbox_of_drive: Inbox | None = None

    def _receive(self, stanza: StanzaBase) -> None:
        inbox = self.inbox_of_drive
        xml = stanza.xml
        if inbox is None or not xml.tag.endswith("}message"):
            super()._receive(stanza)
            return
        body = xml.findtext(f"{{{CLIENT_NS}}}body") or ""
        sender, kind, sid = xml.get("from", ""), xml.get("type", ""), xml.get("id", "")
        inbox.add(self.jid, time.monotonic(), sender, kind, sid, body)


# -- CPU ----------------------------------------------------------------------------------


def machine_jiffies() -> tuple[int, int, int]:
    """The machine's busy, stolen and total time since boot, in clock ticks
    (all cores; /proc/stat's first line)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is in user)
    idle, steal = fields[3] + fields[4], fields[7]
    total = sum(fields[:8])
    return total - idle - steal, steal, total


class CpuMeter:
    """The CPU seconds of each process of a run, by name, between
    :meth:`start` and :meth:`stop`, and the machine's busy and stolen
    shares of that time."""

    def __init__(self, clocks: dict[str, Callable[[], float]]) -> None:
        self.clocks = clocks
        self.seconds: dict[str, float] = {}
        self.busy = self.steal = 0.0  # shares of all cores, 0 to 1
        self.wall = 0.0  # seconds from start to stop
        self._started = 0.0
        self._before: dict[str, float] = {}
        self._machine: tuple[int, int, int] = (0, 0, 0)

    def start(self) -> None:
        self._machine = machine_jiffies()
        self._started = time.monotonic()
        self._before = {name: clock() for name, clock in self.clocks.items()}

    def stop(self) -> None:
        self.seconds = {name: clock() - self._before[name] for name, clock in self.clocks.items()}
        self.wall = time.monotonic() - self._started
        busy, steal, total = (
            after - before for after, before in zip(machine_jiffies(), self._machine, strict=True)
        )
        self.busy, self.steal = busy / max(total, 1), steal / max(total, 1)


def ejabberd_pid(server: EjabberdServer) -> int:
    """The ejabberd VM's process (beam.smp), from the pid file that
    ejabberdctl's config makes it write."""
    return int((server.workdir / "ejabberd.pid").read_text().split()[0])


# -- the database's sessions ----------------------------------------------------------------


class SessionSampler:
    """Looks every SAMPLE_INTERVAL s at the sessions of the database of
    ``url``, until :meth:`stop` or ``deadline``: how many are active, how
    many of those wait for a lock (a row lock held by another's
    transaction, say), and how many are in a transaction but idle (waiting
    for their worker's next statement)."""

    def __init__(self, url: str, deadline: float) -> None:
        self.url = url
        self.deadline = deadline
        self.samples: list[tuple[int, ...]] = []
        self.waiting: Counter[str] = Counter()  # statements seen waiting for a lock
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="sessions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)

    def _sample(self) -> None:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as connection:
            while not self._stopped.wait(SAMPLE_INTERVAL) and time.monotonic() < self.deadline:
                row = connection.execute(SESSIONS).fetchone()
                if row is not None:
                    self.samples.append(tuple(int(value) for value in row))
                self.waiting.update(query for (query,) in connection.execute(WAITING))

    def mean(self, index: int) -> float:
        return statistics.fmean(s[index] for s in self.samples) if self.samples else float("nan")


# -- one drive: the users post, the followers get the posts ------------------------------------


@dataclass
class Drive:
    """The posts of one drive (by message id: author, text, time sent) and
    what came back, with its time bounds."""

    inbox: Inbox
    followers: int
    sent: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    began: float = 0.0
    posted: float = 0.0  # when the last answer came (or posting gave up)
    ended: float = 0.0  # when the last delivery came (or the drive gave up)

    @property
    def acknowledged(self) -> list[str]:
        """The ids of the posts answered with "Posted #n"."""
        answers = self.inbox.answers
        return [i for i in self.sent if i in answers and POSTED.fullmatch(answers[i].body)]

    @property
    def refused(self) -> list[Answer]:
        answers = self.inbox.answers
        return [
            answers[i] for i in self.sent if i in answers and not POSTED.fullmatch(answers[i].body)
        ]

    @property
    def unanswered(self) -> int:
        return sum(i not in self.inbox.answers for i in self.sent)

    def expected(self) -> set[tuple[str, str]]:
        """(follower, text) of every acknowledged post and follower."""
        users = {author for author, _, _ in self.sent.values()}
        return {
            (follower, text)
            for author, text, _ in (self.sent[i] for i in self.acknowledged)
            for follower in users - {author}
        }

    @property
    def repeats(self) -> int:
        return len(self.inbox.deliveries) - len(self.inbox.delivered)

    def answer_latencies(self) -> list[float]:
        answers = self.inbox.answers
        return [answers[i].time - sent for i, (_, _, sent) in self.sent.items() if i in answers]

    def delivery_latencies(self) -> list[float]:
        """Post to follower, first delivery of each (follower, post)."""
        sent_at = {text: sent for _, text, sent in self.sent.values()}
        first: dict[tuple[str, str], float] = {}
        for follower, text, came in self.inbox.deliveries:
            first.setdefault((follower, text), came)
        return [came - sent_at[text] for (_, text), came in first.items() if text in sent_at]

    def answered_posts_per_second(self) -> float:
        return len(self.acknowledged) / max(self.posted - self.began, 1e-9)


def drive(
    users: dict[str, User], posts: int, timeout: float, on_start: Callable[[], None]
) -> Drive:
    """Each user posts ``posts`` times, the next once the last is
    answered; then the followers' deliveries are waited for, the whole
    bounded by ``timeout`` s. ``on_start`` runs just before the first post."""
    token = secrets.token_hex(4)
    inbox = Inbox(token)
    result = Drive(inbox, followers=len(users) - 1)
    sent: Counter[str] = Counter()
    for client in users.values():
        client.inbox_of_drive = inbox
    try:
        on_start()
        result.began = time.monotonic()
        deadline = result.began + timeout
        total = len(users) * posts
        # A turn ends with an answer or after WAIT_STEP s: bounded by both.
        for _ in range(4 * total + int(timeout / WAIT_STEP) + 1):
            for user, client in users.items():
                if sent[user] < posts and sent[user] == inbox.answered[user]:
                    text = f"{token} {user} {sent[user]}"
                    now = time.monotonic()
                    result.sent[client.send_message(TWEETER, f"post {text}")] = (user, text, now)
                    sent[user] += 1
            with inbox.changed:
                seen = len(inbox.answers)
                if (len(result.sent) == total and seen >= total) or time.monotonic() > deadline:
                    break
                inbox.changed.wait_for(functools.partial(inbox.answers_beyond, seen), WAIT_STEP)
        result.posted = max((a.time for a in inbox.answers.values()), default=time.monotonic())
        expected = result.expected()
        with inbox.changed:
            inbox.changed.wait_for(
                lambda: expected <= inbox.delivered, max(0.0, deadline - time.monotonic())
            )
        result.ended = max((t for _, _, t in inbox.deliveries), default=result.posted)
        return result
    finally:
        for client in users.values():
            client.inbox_of_drive = None


# -- a run: N workers on a fresh database -----------------------------------------------------


@dataclass
class Run:
    workers: int
    drive: Drive
    cpu: CpuMeter
    sessions_active: float
    sessions_waiting: float
    sessions_idle_in_transaction: float
    waiting: Counter[str]
    outbox_left: int  # rows of the PubSub outbox still there after the drive
    outbox_settled: int  # and OUTBOX_SETTLE s later
    resends: int  # times a worker logged that it sent outbox rows again


def outbox_rows(url: str) -> int:
    """How many notifications the PubSub outbox of ``url``'s database holds."""
    with psycopg.connect(url, connect_timeout=5) as connection:
        row = connection.execute("SELECT count(*) FROM pubsub_outbox").fetchone()
    return -1 if row is None else int(row[0])


def follow_one_another(users: dict[str, User]) -> None:
    """Each user follows every other one, by chat."""
    for user, client in users.items():
        for other in users:
            if other == user:
                continue
            answer = client.chat(TWEETER, f"follow {other}", timeout=COMMAND_TIMEOUT)
            if answer.body != f"You now follow {other}.":
                raise RuntimeError(f"{user} could not follow {other}: {answer.xml}")


def run_once(
    server: EjabberdServer,
    postgres: PostgresServer,
    users: dict[str, User],
    count: int,
    args: argparse.Namespace,
    workdir: Path,
) -> Run:
    """Start ``count`` workers on a fresh database, drive them, stop them."""
    with fresh_database(postgres.url) as url:
        workdir.mkdir(parents=True)
        workers = Workers(server, url, workdir)
        try:
            running = workers.start(count)
            follow_one_another(users)
            drive(users, args.warmup, args.timeout, lambda: None)
            clocks: dict[str, Callable[[], float]] = {
                "ejabberd": ProcessCpuClock(ejabberd_pid(server)).seconds,
                "postgresql": ServerClock(postgres.data).seconds,
            }
            for index, worker in enumerate(running, 1):
                clocks[f"worker {index}"] = ProcessCpuClock(worker.pid).seconds
            clocks["clients"] = time.process_time
            cpu = CpuMeter(clocks)
            sampler = SessionSampler(url, time.monotonic() + args.timeout)
            sampler.start()
            measured = drive(users, args.posts, args.timeout, cpu.start)
            cpu.stop()
            sampler.stop()
            left = outbox_rows(url)
            time.sleep(OUTBOX_SETTLE)
            settled = outbox_rows(url)
            resends = sum(worker.count(RESENT) for worker in running)
        finally:
            workers.stop_all()
    means = (sampler.mean(0), sampler.mean(1), sampler.mean(2))
    return Run(count, measured, cpu, *means, sampler.waiting, left, settled, resends)


# -- reporting -----------------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value * 1000:.1f}" if value == value else "-"


def others(run: Run) -> float:
    """The machine's busy time not spent in the run's processes, in cores."""
    ours = sum(run.cpu.seconds.values()) / max(run.cpu.wall, 1e-9)
    return run.cpu.busy * (os.cpu_count() or 1) - ours


def report_run(run: Run, ran: int, repeat: int) -> None:
    d = run.drive
    acknowledged = len(d.acknowledged)
    per_post = max(acknowledged, 1)
    wall = d.ended - d.began
    answers, deliveries = d.answer_latencies(), d.delivery_latencies()
    expected = d.expected()
    missing = len(expected - d.inbox.delivered)
    print(
        f"\n{run.workers} worker(s), run {ran} of {repeat}: {len(d.sent)} posts sent, "
        f"{acknowledged} acknowledged, {len(d.refused)} refused, {d.unanswered} unanswered; "
        f"{len(d.inbox.delivered)} of {len(expected)} deliveries ({missing} missing), "
        f"{d.repeats} repeats"
    )
    print(
        f"  {d.answered_posts_per_second():.1f} posts/s acknowledged over "
        f"{d.posted - d.began:.2f} s; last delivery at {wall:.2f} s; "
        f"answer p50 {ms(percentile(answers, 0.5))} ms, p95 {ms(percentile(answers, 0.95))} ms; "
        f"delivery p50 {ms(percentile(deliveries, 0.5))} ms, "
        f"p95 {ms(percentile(deliveries, 0.95))} ms"
    )
    print(
        f"  database sessions: {run.sessions_active:.2f} active on average, "
        f"{run.sessions_waiting:.2f} of them waiting for a lock; "
        f"{run.sessions_idle_in_transaction:.2f} idle in a transaction"
    )
    print(
        f"  outbox: {run.outbox_left} rows left after the drive, {run.outbox_settled} "
        f"{OUTBOX_SETTLE:.0f} s later; "
        f"{run.resends} resends logged by the workers"
    )
    seen = sum(run.waiting.values())
    for query, times in run.waiting.most_common(2):
        print(f"  waiting for a lock in {times / max(seen, 1):.0%} of the cases: {query}")
    for refused in d.refused[:3]:
        print(f"  ! refused ({len(d.refused)} in all): {refused.type} {refused.body!r}")
    rows = []
    seconds = dict(run.cpu.seconds)
    workers = sum(v for k, v in seconds.items() if k.startswith("worker"))
    seconds["workers (all)"] = workers
    seconds["all of the above"] = sum(run.cpu.seconds.values())
    for name, used in seconds.items():
        share = used / max(run.cpu.wall, 1e-9)
        rows.append([name, f"{used:.2f}", f"{used * 1000 / per_post:.2f}", f"{share:.0%}"])
    cores = os.cpu_count() or 1
    rows.append(["machine (busy, all)", "", "", f"{run.cpu.busy * cores:.0%}"])
    rows.append(["other processes", "", "", f"{others(run):.0%}"])
    rows.append(["machine (stolen)", "", "", f"{run.cpu.steal * cores:.0%}"])
    print_table(rows, ["process", "cpu s", "cpu ms/post", "cpu % of a core"])


def report_summary(runs: Sequence[Run]) -> None:
    """One row per worker count: the medians over its runs."""
    print("\nSummary (medians over the runs of each worker count; cpu in ms per post):")
    rows = []
    cores = os.cpu_count() or 1
    for count in sorted({run.workers for run in runs}):
        mine = [run for run in runs if run.workers == count]

        def med(metric: Callable[[Run], float], mine: list[Run] = mine) -> float:
            return statistics.median(metric(run) for run in mine)

        def cpu(run: Run, prefix: str) -> float:
            used = sum(v for k, v in run.cpu.seconds.items() if k.startswith(prefix))
            return used * 1000 / max(len(run.drive.acknowledged), 1)

        rows.append(
            [
                str(count),
                str(len(mine)),
                f"{med(lambda r: r.drive.answered_posts_per_second()):.1f}",
                ms(med(lambda r: percentile(r.drive.answer_latencies(), 0.5))),
                ms(med(lambda r: percentile(r.drive.answer_latencies(), 0.95))),
                ms(med(lambda r: percentile(r.drive.delivery_latencies(), 0.5))),
                ms(med(lambda r: percentile(r.drive.delivery_latencies(), 0.95))),
                *(
                    f"{med(functools.partial(cpu, prefix=prefix)):.2f}"
                    for prefix in ("ejabberd", "postgresql", "worker", "clients")
                ),
                f"{med(lambda r: r.cpu.busy * cores):.0%}",
                f"{med(others):.0%}",
                f"{med(lambda r: r.sessions_waiting):.2f}",
            ]
        )
    header = ["workers", "runs", "posts/s", "ans p50", "ans p95", "dlv p50", "dlv p95"]
    header += ["ejabberd", "postgres", "workers", "clients", "machine", "others", "lock waits"]
    print_table(rows, header)


# -- set-up and main ----------------------------------------------------------------------------


@contextlib.contextmanager
def logged_in(server: EjabberdServer, count: int) -> Iterator[dict[str, User]]:
    """``count`` users of ``server``, logged in and available: its own
    accounts first, then new ones ``posterN``; logged out on exit."""
    accounts = list(server.users)
    for number in range(len(accounts), count):
        name, password = f"poster{number}", secrets.token_hex(8)
        server.run_tool(server.ctl("register", name, server.host, password))
        accounts.append((f"{name}@{server.host}", password))
    users: dict[str, User] = {}
    try:
        for jid, password in accounts[:count]:
            users[jid] = User(jid, password, server.c2s_port)
            users[jid].connect()
        yield users
    finally:
        for client in users.values():
            client.close()


def source_state() -> str:
    """The commit the workers' empc and tweeter come from, and the files
    under src/ and examples/ changed since (the workers run the working tree)."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--", "src", "examples"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.split("\n")
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    files = [line[3:] for line in changed if line.strip()]
    return f"{head}, changed since: {', '.join(files)}" if files else head


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,3", help="worker counts, a list")
    for name, default, what in (
        ("--users", 4, "users, each following the others"),
        ("--posts", 200, "measured posts per user"),
        ("--warmup", 10, "unmeasured posts per user"),
        ("--repeat", 1, "runs per worker count"),
    ):
        parser.add_argument(name, type=int, default=default, help=what)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per drive, at most")
    parser.add_argument("--keep", action="store_true", help="keep the logs' directory")
    args = parser.parse_args(argv)
    args.workers = [int(n) for n in args.workers.split(",")]
    if not (2 <= args.users <= 50 and 1 <= args.posts <= 100_000):
        parser.error("--users must be 2 to 50, --posts 1 to 100000")
    if min(args.workers) < 1 or max(args.workers) > 16 or not 1 <= args.repeat <= 20:
        parser.error("worker counts must be 1 to 16, --repeat 1 to 20")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Also SIGINT: a shell starts a background job with it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="empc-scale-"))
    print(
        f"empc scale-out bench: workers {args.workers}, {args.users} users, {args.posts} posts "
        f"each (warm-up {args.warmup}), repeat {args.repeat}; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; logs in {workdir}"
    )
    print(f"empc and the tweeter from {source_state()}")
    runs: list[Run] = []
    postgres = PostgresServer()
    server = EjabberdServer(workdir / "ejabberd")
    try:
        postgres.start()
        server.start()
        with logged_in(server, args.users) as users:
            for ran in range(1, args.repeat + 1):
                for count in args.workers:
                    run = run_once(
                        server, postgres, users, count, args, workdir / f"run-{ran}-{count}"
                    )
                    runs.append(run)
                    report_run(run, ran, args.repeat)
        report_summary(runs)
        print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    except (Exception, KeyboardInterrupt, pytest.fail.Exception) as error:
        print(f"\n! stopped: {type(error).__name__}: {error}", file=sys.stderr)
        print(f"! logs kept in {workdir}", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        server.stop()
        postgres.remove()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    complete = all(
        not r.drive.refused and r.drive.expected() <= r.drive.inbox.delivered for r in runs
    )
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
