"""Throughput / latency / CPU benchmark for empc, against a reference component.

This program plays the *server* side of XEP-0114 on loopback.  For each
component under test (empc under ``twistd``, ``bench/reference.py`` on
asyncio and, on request, ``bench/reference_twisted.py``, the same stream on
Twisted's reactor) and each workload, it starts the component as a child process, accepts its
connection, checks its handshake, then, for each window of a sweep, pipelines
stanzas at it with at most that many stanzas in flight.  Workloads: XEP-0199
pings only (answered with an iq result), small chat messages only (echoed
back), 4 KB escape-heavy chat messages only, and pings and small chat
messages half and half.  Replies are matched by id.

Reported per run: replies per second, p50/p99 latency (send to reply, under
load, so mostly queueing: about window / throughput), and the component's CPU
time per stanza (its process CPU clock, read before and after the measured
phase).  When empc and the reference both ran, the ratios empc / reference
are checked against the project's targets, one verdict per target; the exit
status is 1 if any is missed.  With the Twisted reference, its ratios and a
breakdown of empc's CPU per stanza (asyncio floor, Twisted's own cost,
empc's own cost) follow.  See ``bench/README.md``.

Usage::

    python bench/run.py [--targets] [--workloads ping,chat,large,mixed]
                        [--windows 1,100,1000] [--stanzas N] [--repeat R]
                        [--components empc,empc-metrics,reference,reference-twisted]
                        [--only COMPONENT] [--empc-root PATH] [--warmup N]
                        [--timeout S] [--empc-runner twistd|twist] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import hashlib
import json
import math
import os
import re
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

DOMAIN = "bench.localhost"
SECRET = "benchsecret"
USER_JID = "user@localhost/r"
STREAM_ID = "benchstream0001"

STREAM_NS = "http://etherx.jabber.org/streams"
COMPONENT_NS = "jabber:component:accept"

CONNECT_TIMEOUT = 30.0  # component start-up (imports, twistd) and connect
HANDSHAKE_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0  # each of: peer closes its stream, process exits
MAX_BUFFER = 16 * 1024 * 1024  # unparsed reply bytes; more means a broken peer
RECV_SIZE = 64 * 1024
SAMPLE_EVERY = 997  # deep-check (lxml) one reply in this many, plus the first few

COMPONENT_CONFIG = """\
components:
  - domain: {domain}
    server: "tcp:host=127.0.0.1:port={port}"
    secret: {secret}
    handlers:
      - "bench.echo:EchoHandler"
keepalive:
  interval: 600
  ping_interval: 600
  ping_timeout: 60
"""
# The empc-metrics component: empc with the HTTP listener, counting its traffic.
METRICS_CONFIG = """\
metrics:
  listen: tcp:0:interface=127.0.0.1
"""

# The project's targets: empc's CPU per stanza at most CPU_LIMIT times the
# reference's for each target workload at each target window, and its
# throughput at least THROUGHPUT_FLOOR times the reference's at THROUGHPUT_WINDOW.
TARGET_WORKLOADS = ("ping", "chat", "large")
TARGET_WINDOWS = (1, 100, 1_000)
CPU_LIMIT = 1.5
THROUGHPUT_FLOOR = 0.7
THROUGHPUT_WINDOW = 1_000


def default_stanzas(window: int, workload: Workload) -> int:
    """Measured stanzas per run at *window*, when ``--stanzas`` is not given.

    Fewer at small windows, where every stanza waits for a round trip, and
    fewer for large bodies: each run takes a second or a few, which is enough
    CPU time for the nanosecond process clock to be far more precise than the
    run-to-run noise, and at window 1,000 enough windows for the ramp-up and
    the drain to be small.
    """
    if window < 10:
        count = 4_000
    elif window < 1_000:
        count = 10_000
    else:
        count = 20_000
    return count // workload.divisor


# -- stanzas -------------------------------------------------------------------

SMALL_BODY = "hello"
_LARGE_CHUNK = 'O\'Brien said "x < y && y < z" & then: \'a\'<"b"> && more text. '
LARGE_BODY = (_LARGE_CHUNK * (4096 // len(_LARGE_CHUNK) + 1))[:4096]


def _escape(text: str) -> str:
    return escape(text, {"'": "&apos;", '"': "&quot;"})


PING_HEAD = b"<iq type='get' id='p"
PING_TAIL = f"' from='{USER_JID}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>".encode()
MESSAGE_HEAD = b"<message type='chat' id='m"


def message_tail(body: str) -> bytes:
    return (f"' from='{USER_JID}' to='{DOMAIN}'><body>{_escape(body)}</body></message>").encode()


@dataclasses.dataclass(frozen=True)
class Workload:
    """What a run sends: pings, chat messages with *body*, or both alternately."""

    name: str
    pings: bool
    body: str | None
    description: str
    divisor: int = 1  # default stanza counts are divided by this

    def is_ping(self, i: int) -> bool:
        """Whether stanza *i* (global index) is a ping rather than a chat message."""
        if self.body is None:
            return True
        return self.pings and not i & 1


WORKLOADS = {
    w.name: w
    for w in (
        Workload("ping", True, None, "XEP-0199 pings"),
        Workload("chat", False, SMALL_BODY, "small chat echoes"),
        Workload("large", False, LARGE_BODY, "4 KB escape-heavy chat echoes", 2),
        Workload("mixed", True, SMALL_BODY, "pings and small chat echoes"),
        Workload("mixed-large", True, LARGE_BODY, "pings and 4 KB chat echoes", 2),
    )
}
# ``--body-size`` (kept from the first version of this harness) picks the
# mixed workload with that body.
BODY_SIZE_WORKLOADS = {"small": "mixed", "large": "mixed-large"}


class Stanzas:
    """All the stanzas of one component's connection, as pre-built pieces.

    Each stanza is ``head, id, tail``; its id is ``p<i>`` for a ping and
    ``m<i>`` for a chat message, *i* being its global index.  Tails are
    shared, so 100,000 large messages cost ids, not 100,000 copies of the body.
    """

    def __init__(self, total: int, workload: Workload) -> None:
        mtail = message_tail(workload.body) if workload.body is not None else b""
        parts: list[bytes] = []
        pings = bytearray(total)
        for i in range(total):
            if workload.is_ping(i):
                pings[i] = 1
                parts += (PING_HEAD, b"%d" % i, PING_TAIL)
            else:
                parts += (MESSAGE_HEAD, b"%d" % i, mtail)
        self._parts = parts
        self.pings = bytes(pings)  # 1 where stanza i is a ping

    def serialize(self, start: int, stop: int) -> bytes:
        return b"".join(self._parts[3 * start : 3 * stop])


# -- reply matching --------------------------------------------------------------

# Start tag of an iq or message, optionally prefixed.  Text in replies never
# holds a raw '<', so the next such match is always a real top-level stanza.
START_RE = re.compile(rb"<(?:([A-Za-z_][\w.-]*):)?(iq|message)((?:\s[^>]*)?)>")
ID_RE = re.compile(rb"""\sid\s*=\s*(?:'([^']*)'|"([^"]*)")""")
TYPE_RE = re.compile(rb"""\stype\s*=\s*(?:'([^']*)'|"([^"]*)")""")


class Phase:
    """Book-keeping for one load phase: stanzas ``base .. base+count-1``."""

    def __init__(self, base: int, count: int, stanzas: Stanzas, body: str | None) -> None:
        self.base = base
        self.count = count
        self.pings = stanzas.pings
        self.body = body
        self.sent_at = [0.0] * count
        self.replied = bytearray(count)
        self.latencies: list[float] = []
        self.replies = 0
        self.bad = 0
        self.other = 0
        self.problems: list[str] = []
        self.first_send = 0.0
        self.last_reply = 0.0

    def problem(self, text: str) -> None:
        if len(self.problems) < 5 and text not in self.problems:
            self.problems.append(text)


class ReplyReader:
    """Finds replies in the component's byte stream and matches them by id."""

    def __init__(self) -> None:
        self.pending = b""  # bytes after the last complete stanza
        self.phase: Phase | None = None

    def feed(self, data: bytes, now: float) -> None:
        phase = self.phase
        assert phase is not None
        buf = self.pending + data if self.pending else data
        if len(buf) > MAX_BUFFER:
            raise BenchError("over 16 MiB of reply bytes without a complete stanza")
        search = START_RE.search
        sent_at = phase.sent_at
        replied = phase.replied
        latencies = phase.latencies
        base = phase.base
        count = phase.count
        pings = phase.pings
        pos = 0
        while True:  # bounded: pos strictly increases through buf
            m = search(buf, pos)
            if m is None:
                lt = buf.rfind(b"<", pos)
                self.pending = buf[lt:] if lt >= 0 else b""
                return
            prefix, name, attrs = m.group(1, 2, 3)
            if attrs.endswith(b"/"):
                end = m.end()
            else:
                close = b"</" + (prefix + b":" if prefix else b"") + name + b">"
                cpos = buf.find(close, m.end())
                if cpos < 0:
                    self.pending = buf[m.start() :]
                    return
                end = cpos + len(close)
            pos = end

            idm = ID_RE.search(attrs)
            rid = (idm.group(1) or idm.group(2) or b"") if idm else b""
            digits = rid[1:]
            if not digits.isdigit():
                phase.other += 1
                continue
            gi = int(digits)
            k = gi - base
            if not 0 <= k < count or not sent_at[k]:
                phase.other += 1
                continue
            is_ping = pings[gi] == 1  # gi >= base >= 0 and below the phase's end
            if rid[:1] != (b"p" if is_ping else b"m"):
                phase.other += 1
                continue
            if replied[k]:
                phase.bad += 1
                phase.problem(f"duplicate reply for id {rid.decode()}")
                continue
            replied[k] = 1
            phase.replies += 1
            latencies.append(now - sent_at[k])
            phase.last_reply = now

            tm = TYPE_RE.search(attrs)
            kind = (tm.group(1) or tm.group(2)) if tm else None
            if is_ping:
                ok = name == b"iq" and kind == b"result"
            else:
                ok = name == b"message" and kind == b"chat"
            if not ok:
                phase.bad += 1
                phase.problem(
                    f"id {rid.decode()}: got <{name.decode()} type={(kind or b'').decode()!r}>"
                )
            elif k < 4 or k % SAMPLE_EVERY == 0 or unusual_namespaces(prefix, attrs):
                error = check_reply(buf[m.start() : end], prefix, is_ping, phase.body)
                if error is not None:
                    phase.bad += 1
                    phase.problem(f"id {rid.decode()}: {error}")


# A start tag that declares the stream's default namespace, and nothing else:
# ``xmlns`` appears in it once, in exactly this form (either quote).
USUAL_DECLARATIONS = (
    b" xmlns='" + COMPONENT_NS.encode() + b"'",
    b' xmlns="' + COMPONENT_NS.encode() + b'"',
)


def unusual_namespaces(prefix: bytes | None, attrs: bytes) -> bool:
    """Whether a reply's start tag has a prefix or declares other than the usual.

    Such replies are checked in full; the others only one in SAMPLE_EVERY.
    """
    if prefix is not None:
        return True
    count = attrs.count(b"xmlns")
    return count > 1 or (count == 1 and not any(d in attrs for d in USUAL_DECLARATIONS))


def check_reply(raw: bytes, prefix: bytes | None, is_ping: bool, body: str | None) -> str | None:
    """Parse one reply with lxml and check it in full; return what is wrong."""
    opening = b"<w xmlns='" + COMPONENT_NS.encode() + b"'"
    if prefix:
        opening += b" xmlns:" + prefix + b"='" + COMPONENT_NS.encode() + b"'"
    try:
        elem = etree.fromstring(opening + b">" + raw + b"</w>")[0]
    except etree.XMLSyntaxError as exc:
        return f"unparsable reply: {exc}"
    ns = f"{{{COMPONENT_NS}}}"
    if elem.tag != ns + ("iq" if is_ping else "message"):
        return f"wrong element or namespace: {elem.tag}"
    if elem.get("to") != USER_JID:
        return f"to={elem.get('to')!r}, expected {USER_JID!r}"
    sender = elem.get("from") or ""
    if sender.split("/")[0].split("@")[-1] != DOMAIN:
        return f"from={sender!r} is not at {DOMAIN}"
    if not is_ping:
        found = elem.find(ns + "body")
        if found is None:
            return "echo has no <body>"
        if (found.text or "") != body:
            return "echoed body differs from the one sent"
    return None


# -- one run ---------------------------------------------------------------------


class BenchError(Exception):
    """A run could not be completed."""


@dataclasses.dataclass
class Result:
    """One measured phase: one component, one workload, one window."""

    component: str
    workload: str
    window: int
    stanzas: int
    repeat: int = 1
    replies: int = 0
    bad: int = 0
    other: int = 0
    timed_out: bool = False
    wall_s: float = 0.0
    rate: float = 0.0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    cpu_us: float = math.nan
    cpu_pct: float = math.nan
    gen_us: float = math.nan
    error: str | None = None
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and not self.timed_out
            and self.bad == 0
            and self.replies == self.stanzas
        )


class ProcessCpuClock:
    """CPU time of a child process, all its threads, dead ones included.

    Read from the process's POSIX CPU clock (``clock_getcpuclockid``), which
    counts nanoseconds; ``/proc/<pid>/stat`` counts 10 ms ticks, and is only
    the fallback where that clock is not available.
    """

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._clock: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            clock = ctypes.c_int()
            if libc.clock_getcpuclockid(pid, ctypes.byref(clock)) == 0:
                time.clock_gettime(clock.value)  # raises if it cannot be read
                self._clock = clock.value

    @property
    def precise(self) -> bool:
        return self._clock is not None

    def seconds(self) -> float:
        if self._clock is not None:
            try:
                return time.clock_gettime(self._clock)
            except OSError as exc:
                raise BenchError(f"cannot read the component's CPU clock: {exc}") from None
        with open(f"/proc/{self._pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def accept(listener: socket.socket, proc: subprocess.Popen[bytes]) -> socket.socket:
    deadline = time.monotonic() + CONNECT_TIMEOUT
    listener.settimeout(0.25)
    while time.monotonic() < deadline:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if proc.poll() is not None:
                raise BenchError(
                    f"component exited with status {proc.returncode} before connecting"
                ) from None
            continue
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn
    raise BenchError(f"component did not connect within {CONNECT_TIMEOUT:.0f} s")


def read_until(
    sock: socket.socket, buf: bytes, pattern: re.Pattern[bytes], deadline: float
) -> tuple[re.Match[bytes], bytes]:
    for _ in range(10_000):
        m = pattern.search(buf)
        if m is not None:
            return m, buf
        remaining = deadline - time.monotonic()
        if remaining <= 0 or len(buf) > 65536:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            raise BenchError(f"component closed the connection after {buf[:200]!r}")
        buf += chunk
    raise BenchError(f"handshake: timed out waiting; the component sent {buf[:200]!r}")


STREAM_HEADER_RE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?stream(?:\s[^>]*)?>")
HANDSHAKE_RE = re.compile(
    rb"<handshake(?:\s[^>]*)?>\s*([0-9A-Fa-f]*)\s*</handshake>|<handshake\s*/>"
)
SERVER_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
    f" xmlns='jabber:component:accept' from='{DOMAIN}' id='{STREAM_ID}'>"
).encode()


def handshake(sock: socket.socket) -> bytes:
    """Do the server's half of the XEP-0114 handshake; return unread bytes."""
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    m, buf = read_until(sock, b"", STREAM_HEADER_RE, deadline)
    header = m.group(0)
    try:
        root = etree.fromstring(header[:-1] + b"/>")
    except etree.XMLSyntaxError as exc:
        raise BenchError(f"bad stream header {header!r}: {exc}") from None
    if root.tag != f"{{{STREAM_NS}}}stream" or root.nsmap.get(None) != COMPONENT_NS:
        raise BenchError(f"not a jabber:component:accept stream header: {header!r}")
    if root.get("to") != DOMAIN:
        raise BenchError(f"stream header to={root.get('to')!r}, expected {DOMAIN!r}")
    sock.sendall(SERVER_HEADER)

    m, buf = read_until(sock, buf[m.end() :], HANDSHAKE_RE, deadline)
    expected = hashlib.sha1((STREAM_ID + SECRET).encode()).hexdigest()
    if (m.group(1) or b"").decode().lower() != expected:
        sock.sendall(
            b"<stream:error><not-authorized"
            b" xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            b"</stream:error></stream:stream>"
        )
        raise BenchError(f"wrong handshake {m.group(0)!r}, expected {expected}")
    sock.sendall(b"<handshake/>")
    return buf[m.end() :]


def pump(
    sock: socket.socket,
    reader: ReplyReader,
    stanzas: Stanzas,
    phase: Phase,
    window: int,
    timeout: float,
) -> bool:
    """Pipeline the phase's stanzas with at most *window* in flight.

    Returns True when every reply came in, False on timeout.
    """
    reader.phase = phase
    clock = time.perf_counter
    sock.setblocking(False)
    sent = 0
    out = memoryview(b"")
    start = phase.first_send = clock()
    deadline = start + timeout
    while phase.replies < phase.count:  # bounded by the deadline
        now = clock()
        if now >= deadline:
            return False
        if not out and sent < phase.count:
            room = window - (sent - phase.replies)
            if room > 0:
                stop = min(phase.count, sent + room)
                b0 = phase.base
                out = memoryview(stanzas.serialize(b0 + sent, b0 + stop))
                phase.sent_at[sent:stop] = [now] * (stop - sent)
                sent = stop
                with contextlib.suppress(BlockingIOError):
                    out = out[sock.send(out) :]
        readable, writable, _ = select.select(
            [sock], [sock] if out else [], [], min(1.0, deadline - now)
        )
        if writable:
            with contextlib.suppress(BlockingIOError):
                out = out[sock.send(out) :]
        if readable:
            try:
                data = sock.recv(RECV_SIZE)
            except BlockingIOError:
                continue
            if not data:
                raise BenchError(f"component closed the connection after {phase.replies} replies")
            reader.feed(data, clock())
    return True


def close_stream(sock: socket.socket) -> None:
    """Send ``</stream:stream>`` and drain until the component closes."""
    deadline = time.monotonic() + CLOSE_TIMEOUT
    try:
        sock.setblocking(True)
        sock.sendall(b"</stream:stream>")
        for _ in range(100_000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            if not sock.recv(RECV_SIZE):
                break
    except OSError:
        pass
    finally:
        sock.close()


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Give *proc* *grace* seconds to exit by itself, then SIGTERM, then SIGKILL."""
    try:
        proc.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        proc.terminate()
    try:
        proc.wait(timeout=CLOSE_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=CLOSE_TIMEOUT)


# How empc is started.  ``python -m twisted`` is the ``twist`` runner, which
# knows neither ``-n`` nor ``--pidfile``; twistd has no ``__main__``, hence
# ``-c``.  Both run the same ``empc`` plugin (twisted/plugins/empc_plugin.py).
EMPC_RUNNERS = {
    "twistd": [
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
    ],
    "twist": ["-m", "twisted", "--log-format=text"],
}


def component_command(kind: str, port: int, workdir: Path, runner: str = "twistd") -> list[str]:
    if kind in REFERENCE_PROGRAMS:
        return [
            sys.executable,
            str(BENCH_DIR / REFERENCE_PROGRAMS[kind]),
            "--port",
            str(port),
            "--domain",
            DOMAIN,
            "--secret",
            SECRET,
        ]
    config = workdir / "empc.yaml"
    text = COMPONENT_CONFIG.format(domain=DOMAIN, port=port, secret=SECRET)
    config.write_text(text + (METRICS_CONFIG if kind == "empc-metrics" else ""))
    return [sys.executable, *EMPC_RUNNERS[runner], "empc", "-c", str(config)]


def component_env(empc_root: Path) -> dict[str, str]:
    """The components' environment: *empc_root*'s empc before any other.

    ``PYTHONPATH`` comes before the virtualenv's editable install, so
    ``empc``, its twistd plugin (``twisted/plugins``) and ``bench.echo`` are
    all taken from *empc_root*; this checkout comes next, for ``bench.echo``
    if *empc_root* has none.
    """
    env = dict(os.environ)
    paths = [str(empc_root / "src"), str(empc_root)]
    if empc_root != REPO_ROOT:
        paths.append(str(REPO_ROOT))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def describe_empc(env: dict[str, str], empc_root: Path) -> str:
    """Say which empc, twistd plugin and commit a component run with *env* gets.

    Raises BenchError if empc cannot be imported, or if it or its plugin is
    not *empc_root*'s (a wrong root would silently give the installed empc).
    Run from an empty directory, as the components are: the current directory
    comes first on ``sys.path``, and its ``twisted/plugins`` would come first.
    """
    code = "import empc, twisted.plugins.empc_plugin as p; print(empc.__file__, p.__file__)"
    with tempfile.TemporaryDirectory(prefix="empc-bench-probe-") as tmp:
        probe = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=CONNECT_TIMEOUT,
            check=False,
        )
    if probe.returncode != 0:
        raise BenchError("cannot import empc: " + (probe.stderr.strip().splitlines() or ["?"])[-1])
    module, plugin = probe.stdout.split()
    for found in (module, plugin):
        if not Path(found).resolve().is_relative_to(empc_root):
            raise BenchError(f"{found} is not under --empc-root {empc_root}")
    describe = ["git", "-C", str(empc_root), "describe", "--always", "--dirty"]
    git = subprocess.run(describe, capture_output=True, text=True, timeout=30, check=False)
    commit = git.stdout.strip() or "not a git checkout"
    return f"{module} (commit {commit}), plugin {plugin}"


def run_connection(
    kind: str,
    workload: Workload,
    plan: Sequence[tuple[int, int]],
    repeat: int,
    args: argparse.Namespace,
    env: dict[str, str],
) -> list[Result]:
    """Start one component, run one phase per ``(window, stanzas)`` of *plan*.

    Returns one result per phase; a phase that could not run carries the error.
    """
    results = [Result(kind, workload.name, w, n, repeat) for w, n in plan]
    reference = kind in REFERENCE_PROGRAMS
    stanzas = Stanzas(args.warmup + sum(n for _, n in plan), workload)
    with tempfile.TemporaryDirectory(prefix=f"empc-bench-{kind}-") as tmp:
        workdir = Path(tmp)
        log_path = workdir / "component.log"
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener,
            open(log_path, "wb") as log,
        ):
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            proc = subprocess.Popen(
                component_command(kind, port, workdir, args.empc_runner),
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            windows = ",".join(str(w) for w, _ in plan)
            print(
                f"running {kind} / {workload.name}, windows {windows}"
                f" ({repeat}/{args.repeat}), pid {proc.pid} ...",
                flush=True,
            )
            try:
                sock = accept(listener, proc)
                listener.close()  # a reconnecting component gets refused
                try:
                    measure(sock, proc, stanzas, workload, args, results)
                finally:
                    close_stream(sock)
            except (BenchError, OSError) as exc:
                for r in results:
                    if r.wall_s == 0 and r.error is None:
                        r.error = str(exc)
            finally:
                # A reference exits when its stream ends; empc, a service,
                # would reconnect, so it is stopped at once.
                stop_process(proc, CLOSE_TIMEOUT if reference else 0.0)
            if reference and proc.returncode != 0 and all(r.ok for r in results):
                results[-1].problems.append(f"{kind} exited with {proc.returncode}")
        if not all(r.ok for r in results):
            tail = log_path.read_bytes()[-3000:].decode(errors="replace")
            print(
                f"--- {kind}/{workload.name}: component log (tail) ---\n{tail}",
                file=sys.stderr,
            )
    return results


def measure(
    sock: socket.socket,
    proc: subprocess.Popen[bytes],
    stanzas: Stanzas,
    workload: Workload,
    args: argparse.Namespace,
    results: Sequence[Result],
) -> None:
    """Do the handshake, warm up, then measure one phase per result, in order.

    Raises BenchError if the warm-up fails or a phase times out (the replies
    still in flight would be mistaken for the next phase's).
    """
    reader = ReplyReader()
    reader.pending = handshake(sock)
    clock = ProcessCpuClock(proc.pid)
    base = 0
    if args.warmup:
        warm = Phase(0, args.warmup, stanzas, workload.body)
        window = max(r.window for r in results)
        if not pump(sock, reader, stanzas, warm, window, args.timeout):
            raise BenchError(f"warm-up timed out: {warm.replies}/{warm.count} replies")
        if warm.bad:
            results[0].problems = warm.problems
            raise BenchError(f"{warm.bad} bad replies during warm-up")
        base = args.warmup

    for result in results:
        phase = Phase(base, result.stanzas, stanzas, workload.body)
        base += result.stanzas
        cpu0 = clock.seconds()
        own0 = time.process_time()
        complete = pump(sock, reader, stanzas, phase, result.window, args.timeout)
        end = time.perf_counter()
        cpu1 = clock.seconds()
        own1 = time.process_time()

        result.timed_out = not complete
        result.replies = phase.replies
        result.bad = phase.bad
        result.other = phase.other
        result.problems = phase.problems
        last = phase.last_reply if complete else end
        result.wall_s = max(last - phase.first_send, 1e-9)
        if phase.replies:
            result.rate = phase.replies / result.wall_s
            result.cpu_us = (cpu1 - cpu0) / phase.replies * 1e6
            result.gen_us = (own1 - own0) / phase.replies * 1e6
            result.cpu_pct = (cpu1 - cpu0) / (end - phase.first_send) * 100
        lat = sorted(phase.latencies)
        result.p50_ms = percentile(lat, 0.50) * 1e3
        result.p99_ms = percentile(lat, 0.99) * 1e3
        if not complete:
            raise BenchError(f"window {result.window} timed out; later windows not run")


# -- report ----------------------------------------------------------------------

# In the order they run and are shown.  The references are programs of this
# checkout, started as ``python bench/<file>``.
COMPONENTS = ("reference", "reference-twisted", "empc", "empc-metrics")
REFERENCE_PROGRAMS = {"reference": "reference.py", "reference-twisted": "reference_twisted.py"}
DEFAULT_COMPONENTS = ("empc", "reference")
# The ratios shown, numerator over denominator, when both ran; the first one
# is what the targets judge.
RATIOS = (
    ("empc", "reference"),
    ("empc", "reference-twisted"),
    ("reference-twisted", "reference"),
    ("empc-metrics", "empc"),  # what counting the traffic for the metrics costs
)


def _fmt(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def print_rows(
    header: Sequence[str], rows: Sequence[Sequence[str]], left: int, write: Callable[[str], object]
) -> None:
    """Print an aligned table: the first *left* columns to the left, the rest right."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    write(line(header))
    write(line(["-" * w for w in widths]))
    for row in rows:
        write(line(row))


def print_table(results: Sequence[Result], write: Callable[[str], object]) -> None:
    header = (
        "workload",
        "window",
        "component",
        "replies",
        "bad",
        "wall s",
        "stanzas/s",
        "p50 ms",
        "p99 ms",
        "cpu us/st",
        "cpu %",
        "gen us/st",
    )
    rows: list[tuple[str, ...]] = []
    for r in results:
        case = (r.workload, str(r.window), r.component)
        if r.error is not None:
            rows.append((*case, str(r.replies), str(r.bad), "FAILED", *[""] * 6))
            continue
        replies = str(r.replies)
        if r.replies != r.stanzas:
            replies += f"/{r.stanzas}"
        rows.append(
            (
                *case,
                replies,
                str(r.bad),
                _fmt(r.wall_s, ".2f"),
                _fmt(r.rate, ",.0f"),
                _fmt(r.p50_ms, ".1f"),
                _fmt(r.p99_ms, ".1f"),
                _fmt(r.cpu_us, ".1f"),
                _fmt(r.cpu_pct, ".0f"),
                _fmt(r.gen_us, ".1f"),
            )
        )
    print_rows(header, rows, 1, write)

    for r in results:
        where = f"{r.component}/{r.workload}/window {r.window}"
        if r.error is not None:
            write(f"! {where}: {r.error}")
        if r.timed_out:
            write(f"! {where}: timed out, {r.replies} replies in")
        if r.other:
            write(f"! {where}: {r.other} stanzas matching no request")
        for p in r.problems:
            write(f"! {where}: {p}")


def pairs(
    results: Sequence[Result], numerator: str = "empc", denominator: str = "reference"
) -> Iterator[tuple[Result, Result]]:
    """``(numerator, denominator)`` results for each workload and window both
    components ran, in order."""
    by_key = {(r.workload, r.window, r.component): r for r in results}
    for r in results:
        if r.component == denominator:
            e = by_key.get((r.workload, r.window, numerator))
            if e is not None:
                yield e, r


def ratio(e: Result, ref: Result, metric: Callable[[Result], float]) -> float:
    """``metric(e) / metric(ref)``, or NaN unless both runs are complete and good."""
    return metric(e) / metric(ref) if e.ok and ref.ok and metric(ref) > 0 else math.nan


def cpu_ratio(e: Result, ref: Result) -> float:
    return ratio(e, ref, lambda r: r.cpu_us)


def throughput_ratio(e: Result, ref: Result) -> float:
    return ratio(e, ref, lambda r: r.rate)


def _times(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"


def print_ratios(results: Sequence[Result], write: Callable[[str], object]) -> None:
    """One table per pair of :data:`RATIOS` that both ran, a blank line between."""
    header = ("workload", "window", "cpu/stanza", "throughput", "p50 latency")
    first = True
    for numerator, denominator in RATIOS:
        rows = [
            (
                e.workload,
                str(e.window),
                _times(cpu_ratio(e, ref)),
                _times(throughput_ratio(e, ref)),
                _times(ratio(e, ref, lambda r: r.p50_ms)),
            )
            for e, ref in pairs(results, numerator, denominator)
        ]
        if rows:
            if not first:
                write("")
            first = False
            write(f"{numerator} / {denominator}:")
            print_rows(header, rows, 1, write)


def print_breakdown(results: Sequence[Result], write: Callable[[str], object]) -> None:
    """Split empc's CPU per stanza in three, where all three components ran:
    the asyncio reference's, what the Twisted reference adds to it (Twisted's
    own floor), and what empc adds to that (empc's own cost).  Prints nothing,
    not even the blank line before the table, if no case has all three."""
    by_key = {(r.workload, r.window, r.component): r for r in results}
    rows = []
    for e, ref in pairs(results):
        tw = by_key.get((e.workload, e.window, "reference-twisted"))
        if tw is None or not (e.ok and ref.ok and tw.ok):
            continue
        twisted = tw.cpu_us - ref.cpu_us
        own = e.cpu_us - tw.cpu_us
        rows.append(
            (
                e.workload,
                str(e.window),
                f"{e.cpu_us:.1f}",
                f"{ref.cpu_us:.1f}",
                f"{twisted:.1f}",
                f"{own:.1f}",
                f"{twisted / e.cpu_us:.0%}",
                f"{own / e.cpu_us:.0%}",
                f"{twisted / (e.cpu_us - ref.cpu_us):.0%}" if e.cpu_us > ref.cpu_us else "-",
            )
        )
    if rows:
        write("")
        header = (
            "workload",
            "window",
            "empc us",
            "asyncio ref us",
            "twisted us",
            "empc own us",
            "twisted %",
            "empc own %",
            "twisted % of excess",
        )
        write("empc's cpu per stanza = asyncio reference + Twisted's own + empc's own:")
        print_rows(header, rows, 1, write)


def verdicts(results: Sequence[Result]) -> list[tuple[bool, str]]:
    """One ``(met, line)`` per target that both components were run for."""
    cases = []
    for e, ref in pairs(results):
        if e.workload not in TARGET_WORKLOADS or e.window not in TARGET_WINDOWS:
            continue
        cpu = cpu_ratio(e, ref)
        cases.append((e, "cpu per stanza", cpu, cpu <= CPU_LIMIT, f"at most {CPU_LIMIT:.2f}x"))
        if e.window == THROUGHPUT_WINDOW:
            rate = throughput_ratio(e, ref)
            floor = f"at least {THROUGHPUT_FLOOR:.2f}x"
            cases.append((e, "throughput", rate, rate >= THROUGHPUT_FLOOR, floor))
    rows: list[tuple[bool, str]] = []
    for e, what, value, met, target in cases:
        if math.isnan(value):
            word = "FAILED"
        elif met:
            word = "OK"
        else:
            word = "OVER" if what == "cpu per stanza" else "UNDER"
        rows.append(
            (
                met,
                f"{word:<6}  {e.workload:<5}  window {e.window:<5}  {what:<14}"
                f"  {_times(value)}  ({target})",
            )
        )
    return rows


def summarize(results: Sequence[Result], workloads: Sequence[str]) -> list[Result]:
    """One result per (workload, window, component): a failed run if any, else
    the medians, metric by metric, of the repeated runs.

    Ordered by workload (as given), window, then component as in COMPONENTS.
    """
    groups: dict[tuple[str, int, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.workload, r.window, r.component), []).append(r)
    chosen: list[Result] = []
    for runs in groups.values():
        failed = [r for r in runs if not r.ok]
        if failed:
            chosen.append(failed[0])
            continue

        def median(metric: Callable[[Result], float], runs: list[Result] = runs) -> float:
            return statistics.median(metric(r) for r in runs)

        chosen.append(
            dataclasses.replace(
                runs[0],
                repeat=len(runs),
                other=sum(r.other for r in runs),
                problems=list(dict.fromkeys(p for r in runs for p in r.problems)),
                wall_s=median(lambda r: r.wall_s),
                rate=median(lambda r: r.rate),
                p50_ms=median(lambda r: r.p50_ms),
                p99_ms=median(lambda r: r.p99_ms),
                cpu_us=median(lambda r: r.cpu_us),
                cpu_pct=median(lambda r: r.cpu_pct),
                gen_us=median(lambda r: r.gen_us),
            )
        )
    chosen.sort(
        key=lambda r: (workloads.index(r.workload), r.window, COMPONENTS.index(r.component))
    )
    return chosen


def print_spread(
    results: Sequence[Result], workloads: Sequence[str], write: Callable[[str], object]
) -> None:
    groups: dict[tuple[str, int, str], list[Result]] = {}
    for r in results:
        if r.ok:
            groups.setdefault((r.workload, r.window, r.component), []).append(r)
    if groups:
        write("spread over the repeated runs (the tables show medians):")
    for (workload, window, kind), runs in sorted(
        groups.items(),
        key=lambda g: (workloads.index(g[0][0]), g[0][1], COMPONENTS.index(g[0][2])),
    ):
        rates = [r.rate for r in runs]
        cpus = [r.cpu_us for r in runs]
        write(
            f"  {workload} window {window} {kind}: {len(runs)} runs, stanzas/s"
            f" {min(rates):,.0f}..{max(rates):,.0f}, cpu us/st {min(cpus):.1f}..{max(cpus):.1f}"
        )


def comma_list(convert: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        return [convert(item) for item in text.split(",") if item.strip()]

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark empc against a reference XEP-0114 component."
    )
    parser.add_argument(
        "--targets",
        action="store_true",
        help="run exactly the target cases (workloads ping,chat,large at windows"
        " 1,100,1000, empc and the reference); this is also what runs by default",
    )
    parser.add_argument(
        "--workloads",
        type=comma_list(str),
        metavar="LIST",
        help="comma-separated, from: "
        + "; ".join(f"{w.name} ({w.description})" for w in WORKLOADS.values())
        + " (default: ping,chat,large)",
    )
    parser.add_argument(
        "--windows",
        type=comma_list(int),
        metavar="LIST",
        help="comma-separated windows: most stanzas in flight (default: 1,100,1000)",
    )
    parser.add_argument("--window", type=int, help="one window: the same as --windows W")
    parser.add_argument(
        "--body-size",
        choices=sorted(BODY_SIZE_WORKLOADS),
        help="the mixed workload (pings and chat) with this body: --workloads mixed or mixed-large",
    )
    parser.add_argument(
        "--stanzas",
        type=int,
        help="stanzas per measured run (default: 4000 at windows under 10,"
        " 10000 under 1000, 20000 from 1000; half that with 4 KB bodies)",
    )
    parser.add_argument(
        "--components",
        type=comma_list(str),
        metavar="LIST",
        help=f"comma-separated, from: {', '.join(COMPONENTS)}"
        f" (default: {','.join(DEFAULT_COMPONENTS)})",
    )
    parser.add_argument(
        "--only",
        choices=COMPONENTS,
        help="only this component: the same as --components COMPONENT",
    )
    parser.add_argument(
        "--empc-root",
        type=Path,
        default=REPO_ROOT,
        metavar="PATH",
        help="run the empc of this checkout, e.g. a git worktree (default: this one)",
    )
    parser.add_argument(
        "--empc-runner",
        choices=sorted(EMPC_RUNNERS),
        default="twistd",
        help="start empc with twistd -n (default) or with twist",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1_000,
        help="unmeasured stanzas sent first on each connection (default: 1000)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="run each case this many times, interleaved, report medians (default: 5)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="give up on a phase after this long, in s (default: 120)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="also write every run as JSON to FILE",
    )
    args = parser.parse_args(argv)
    if args.targets and (
        args.workloads
        or args.windows
        or args.window
        or args.body_size
        or args.only
        or args.components is not None
    ):
        parser.error(
            "--targets runs the target cases: drop --workloads, --window(s), --body-size,"
            " --components and --only"
        )
    if args.components is not None and args.only:
        parser.error("give --components or --only, not both")
    if args.workloads and args.body_size:
        parser.error("--body-size names a workload: give --workloads or --body-size")
    if args.windows and args.window is not None:
        parser.error("give --windows or --window, not both")
    if args.body_size:
        args.workloads = [BODY_SIZE_WORKLOADS[args.body_size]]
    args.workloads = list(dict.fromkeys(args.workloads or TARGET_WORKLOADS))
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}; known: {', '.join(WORKLOADS)}")
    windows = [args.window] if args.window is not None else args.windows or TARGET_WINDOWS
    args.windows = sorted(set(windows))
    if not args.workloads or not args.windows:
        parser.error("no workload or no window to run")
    if min(args.windows) < 1 or args.repeat < 1 or (args.stanzas is not None and args.stanzas < 1):
        parser.error("windows, --stanzas and --repeat must be at least 1")
    if args.warmup < 0 or args.timeout <= 0:
        parser.error("--warmup must be >= 0 and --timeout > 0")
    if args.only:
        chosen = [args.only]
    else:
        chosen = list(DEFAULT_COMPONENTS if args.components is None else args.components)
    unknown = [c for c in chosen if c not in COMPONENTS]
    if unknown:
        parser.error(f"unknown component {unknown[0]!r}; known: {', '.join(COMPONENTS)}")
    if not chosen:
        parser.error("no component to run")
    args.components = [c for c in COMPONENTS if c in chosen]  # in the order they run
    args.empc_root = args.empc_root.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = args.components
    env = component_env(args.empc_root)
    print(
        f"empc bench: workloads {','.join(args.workloads)}; windows"
        f" {','.join(map(str, args.windows))}; warm-up {args.warmup}; {args.repeat} runs each;"
        f" large body {len(LARGE_BODY)} chars ({len(_escape(LARGE_BODY).encode())} bytes"
        f" escaped); components {','.join(kinds)}; {os.cpu_count()} CPUs, load average"
        f" {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    if any(kind.startswith("empc") for kind in kinds):
        try:
            print(f"empc: {describe_empc(env, args.empc_root)}", flush=True)
        except BenchError as exc:
            print(f"! {exc}", file=sys.stderr)
            return 2
    results: list[Result] = []
    for n in range(1, args.repeat + 1):  # interleaved, so drift hits all alike
        for name in args.workloads:
            for kind in kinds:
                workload = WORKLOADS[name]
                plan = [(w, args.stanzas or default_stanzas(w, workload)) for w in args.windows]
                results += run_connection(kind, workload, plan, n, args, env)
    summary = summarize(results, args.workloads)
    print()
    print_table(summary, print)
    print()
    print_ratios(summary, print)
    print_breakdown(summary, print)
    if args.repeat > 1:
        print()
        print_spread(results, args.workloads, print)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    judged = verdicts(summary)
    if judged:
        print()
        for _, line in judged:
            print(line)
        met = sum(ok for ok, _ in judged)
        print(f"targets: {met} of {len(judged)} met")
    if args.json:
        payload: list[dict[str, Any]] = [
            {
                k: None if isinstance(v, float) and math.isnan(v) else v
                for k, v in dataclasses.asdict(r).items()
            }
            for r in results
        ]
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if all(r.ok for r in results) and all(ok for ok, _ in judged) else 1


if __name__ == "__main__":
    sys.exit(main())
