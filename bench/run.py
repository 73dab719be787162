"""Throughput / latency / CPU benchmark for empc, against a reference component.

This program plays the *server* side of XEP-0114 on loopback.  For each
component under test (empc under ``twistd``, and ``bench/reference.py``) and
each body size, it starts the component as a child process, accepts its
connection, checks its handshake, then pipelines stanzas at it with a bounded
window of stanzas in flight: XEP-0199 pings (answered with an iq result) and
chat messages (echoed back), half and half.  Replies are matched by id.

Reported per run: replies per second, p50/p99 latency (send to reply, under
load, so mostly queueing: about window / throughput), and the component's CPU
time per stanza, read from ``/proc/<pid>/stat`` (utime + stime) before and
after the measured phase.  See ``bench/README.md``.

Usage::

    python bench/run.py [--stanzas N] [--window W] [--body-size small|large]
                        [--only empc|reference] [--warmup N] [--repeat R]
                        [--timeout S] [--empc-runner twistd|twist] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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

# -- stanzas -------------------------------------------------------------------

SMALL_BODY = "hello"
_LARGE_CHUNK = 'O\'Brien said "x < y && y < z" & then: \'a\'<"b"> && more text. '
LARGE_BODY = (_LARGE_CHUNK * (4096 // len(_LARGE_CHUNK) + 1))[:4096]
BODIES = {"small": SMALL_BODY, "large": LARGE_BODY}


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("'", "&apos;")
        .replace('"', "&quot;")
    )


PING_HEAD = b"<iq type='get' id='p"
PING_TAIL = f"' from='{USER_JID}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>".encode()
MESSAGE_HEAD = b"<message type='chat' id='m"


def message_tail(body: str) -> bytes:
    return (f"' from='{USER_JID}' to='{DOMAIN}'><body>{_escape(body)}</body></message>").encode()


class Stanzas:
    """All the stanzas of a run as pre-built pieces: ``head, id, tail`` each.

    Stanza *i* (global index) is a ping when *i* is even, a chat message when
    odd; its id is ``p<i>`` or ``m<i>``.  Tails are shared, so 100,000 large
    messages cost ids, not 100,000 copies of the body.
    """

    def __init__(self, total: int, body: str) -> None:
        mtail = message_tail(body)
        parts: list[bytes] = []
        for i in range(total):
            if i & 1:
                parts += (MESSAGE_HEAD, b"%d" % i, mtail)
            else:
                parts += (PING_HEAD, b"%d" % i, PING_TAIL)
        self._parts = parts

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

    def __init__(self, base: int, count: int, body: str) -> None:
        self.base = base
        self.count = count
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
            is_ping = not gi & 1
            if not 0 <= k < count or rid[:1] != (b"p" if is_ping else b"m") or not sent_at[k]:
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
            elif k < 4 or k % SAMPLE_EVERY == 0 or b"xmlns" in attrs:
                error = check_reply(buf[m.start() : end], prefix, is_ping, phase.body)
                if error is not None:
                    phase.bad += 1
                    phase.problem(f"id {rid.decode()}: {error}")


def check_reply(raw: bytes, prefix: bytes | None, is_ping: bool, body: str) -> str | None:
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
    component: str
    body: str
    stanzas: int
    window: int
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


CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of *pid*, all threads, from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


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
    if kind == "reference":
        return [
            sys.executable,
            str(BENCH_DIR / "reference.py"),
            "--port",
            str(port),
            "--domain",
            DOMAIN,
            "--secret",
            SECRET,
        ]
    config = workdir / "empc.yaml"
    config.write_text(COMPONENT_CONFIG.format(domain=DOMAIN, port=port, secret=SECRET))
    return [sys.executable, *EMPC_RUNNERS[runner], "empc", "-c", str(config)]


def run_one(kind: str, body_name: str, args: argparse.Namespace) -> Result:
    result = Result(kind, body_name, args.stanzas, args.window)
    body = BODIES[body_name]
    stanzas = Stanzas(args.warmup + args.stanzas, body)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
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
            try:
                sock = accept(listener, proc)
                listener.close()  # a reconnecting component gets refused
                try:
                    measure(sock, proc, stanzas, body, args, result)
                finally:
                    close_stream(sock)
            except (BenchError, OSError) as exc:
                result.error = str(exc)
            finally:
                # The reference exits when its stream ends; empc, a service,
                # would reconnect, so it is stopped at once.
                stop_process(proc, CLOSE_TIMEOUT if kind == "reference" else 0.0)
            if kind == "reference" and proc.returncode != 0 and result.error is None:
                result.problems.append(f"reference exited with {proc.returncode}")
        if result.error is not None or result.bad or result.timed_out:
            tail = log_path.read_bytes()[-3000:].decode(errors="replace")
            print(
                f"--- {kind}/{body_name}: component log (tail) ---\n{tail}",
                file=sys.stderr,
            )
    return result


def measure(
    sock: socket.socket,
    proc: subprocess.Popen[bytes],
    stanzas: Stanzas,
    body: str,
    args: argparse.Namespace,
    result: Result,
) -> None:
    reader = ReplyReader()
    reader.pending = handshake(sock)
    if args.warmup:
        warm = Phase(0, args.warmup, body)
        if not pump(sock, reader, stanzas, warm, args.window, args.timeout):
            raise BenchError(f"warm-up timed out: {warm.replies}/{warm.count} replies")
        if warm.bad:
            result.problems = warm.problems
            raise BenchError(f"{warm.bad} bad replies during warm-up")

    phase = Phase(args.warmup, args.stanzas, body)
    cpu0 = process_cpu_seconds(proc.pid)
    own0 = own_cpu_seconds()
    complete = pump(sock, reader, stanzas, phase, args.window, args.timeout)
    end = time.perf_counter()
    cpu1 = process_cpu_seconds(proc.pid)
    own1 = own_cpu_seconds()

    result.timed_out = not complete
    result.replies = phase.replies
    result.bad = phase.bad
    result.other = phase.other
    result.problems = phase.problems
    last = phase.last_reply if complete else end
    result.wall_s = last - phase.first_send
    if phase.replies and result.wall_s > 0:
        result.rate = phase.replies / result.wall_s
        result.cpu_us = (cpu1 - cpu0) / phase.replies * 1e6
        result.gen_us = (own1 - own0) / phase.replies * 1e6
        result.cpu_pct = (cpu1 - cpu0) / (end - phase.first_send) * 100
    lat = sorted(phase.latencies)
    result.p50_ms = percentile(lat, 0.50) * 1e3
    result.p99_ms = percentile(lat, 0.99) * 1e3


# -- report ----------------------------------------------------------------------


def _fmt(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def print_table(results: list[Result], write: Callable[[str], object]) -> None:
    header = (
        "body",
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
        if r.error is not None:
            rows.append(
                (
                    r.body,
                    r.component,
                    str(r.replies),
                    str(r.bad),
                    "FAILED",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                )
            )
            continue
        replies = str(r.replies)
        if r.replies != r.stanzas:
            replies += f"/{r.stanzas}"
        rows.append(
            (
                r.body,
                r.component,
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
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    write(line(header))
    write(line(["-" * w for w in widths]))
    for row in rows:
        write(line(row))

    for r in results:
        if r.error is not None:
            write(f"! {r.component}/{r.body}: {r.error}")
        if r.timed_out:
            write(f"! {r.component}/{r.body}: timed out, {r.replies} replies in")
        if r.other:
            write(f"! {r.component}/{r.body}: {r.other} stanzas matching no request")
        for p in r.problems:
            write(f"! {r.component}/{r.body}: {p}")

    by_key = {(r.component, r.body): r for r in results}
    for body in BODIES:
        e, ref = by_key.get(("empc", body)), by_key.get(("reference", body))
        if e is None or ref is None or not (e.ok and ref.ok):
            continue
        if not (ref.rate > 0 and ref.cpu_us > 0):
            continue
        write(
            f"{body}: empc/reference  throughput {e.rate / ref.rate:.2f}x"
            f"  cpu per stanza {e.cpu_us / ref.cpu_us:.2f}x"
        )


def summarize(results: list[Result]) -> list[Result]:
    """One result per (component, body): a failed run if any, else the median.

    The median is taken by throughput over the repeated runs.
    """
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.body, r.component), []).append(r)
    chosen: list[Result] = []
    for runs in groups.values():
        failed = [r for r in runs if not r.ok]
        if failed:
            chosen.append(failed[0])
        else:
            chosen.append(sorted(runs, key=lambda r: r.rate)[(len(runs) - 1) // 2])
    return chosen


def print_spread(results: list[Result], write: Callable[[str], object]) -> None:
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        if r.ok:
            groups.setdefault((r.body, r.component), []).append(r)
    write("spread over repeated runs (the table shows the median by stanzas/s):")
    for (body, kind), runs in groups.items():
        rates = [r.rate for r in runs]
        cpus = [r.cpu_us for r in runs]
        write(
            f"  {body} {kind}: {len(runs)} runs, stanzas/s {min(rates):,.0f}"
            f"..{max(rates):,.0f}, cpu us/st {min(cpus):.1f}..{max(cpus):.1f}"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark empc against a reference XEP-0114 component."
    )
    parser.add_argument(
        "--stanzas",
        type=int,
        default=100_000,
        help="stanzas per measured run (default: 100000)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=1_000,
        help="most stanzas in flight (default: 1000)",
    )
    parser.add_argument(
        "--body-size",
        choices=sorted(BODIES),
        help="only this message body size (default: both)",
    )
    parser.add_argument(
        "--only",
        choices=("empc", "reference"),
        help="only this component (default: both)",
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
        help="unmeasured stanzas sent first (default: 1000)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each case this many times, report the median (default: 1)",
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
        help="also write the results as JSON to FILE",
    )
    args = parser.parse_args(argv)
    for name in ("stanzas", "window", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0 or args.timeout <= 0:
        parser.error("--warmup must be >= 0 and --timeout > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = [args.only] if args.only else ["reference", "empc"]
    bodies = [args.body_size] if args.body_size else list(BODIES)
    print(
        f"empc bench: {args.stanzas} stanzas (half pings, half chat echoes), "
        f"window {args.window}, warm-up {args.warmup}, {os.cpu_count()} CPUs; "
        f"bodies: small={len(SMALL_BODY)} chars, large={len(LARGE_BODY)} chars "
        f"({len(_escape(LARGE_BODY).encode())} bytes escaped)",
        flush=True,
    )
    results: list[Result] = []
    for body in bodies:
        for n in range(args.repeat):  # interleaved, so drift hits both alike
            for kind in kinds:
                print(f"running {kind} / {body} ({n + 1}/{args.repeat}) ...", flush=True)
                results.append(run_one(kind, body, args))
    print()
    print_table(summarize(results), print)
    if args.repeat > 1:
        print_spread(results, print)
    if args.json:
        payload: list[dict[str, Any]] = [
            {
                k: None if isinstance(v, float) and math.isnan(v) else v
                for k, v in dataclasses.asdict(r).items()
            }
            for r in results
        ]
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
