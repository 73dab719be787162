"""The component's own CPU per stanza, in process: no socket, no reactor.

A :class:`~empc._connection.ComponentProtocol` on a transport that only
counts bytes is fed 1,000 pipelined stanzas in 64 KiB reads, after its
handshake; the built-in handlers and ``bench.echo:EchoHandler`` answer them.
What is measured is everything from the bytes read to the bytes written:
parser, stream, router, actions, replies, serialization. The best of
``--rounds`` rounds is kept (CPU time of this process).

Usage::

    python bench/inprocess.py [--rounds N] [--empc-root PATH] [--metrics]

``--empc-root`` measures another checkout (a git worktree of an older
commit, say): its ``src`` is imported instead of the installed empc.
``--metrics`` measures, in the same process and in alternate rounds, a
component without metrics and one counting its traffic as the metrics
listener has it do, and prints both and what counting costs: alternating
keeps the drift of the machine out of the difference.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PING = (
    b"<iq type='get' id='p%d' from='user@localhost/r' to='bench.localhost'>"
    b"<ping xmlns='urn:xmpp:ping'/></iq>"
)
CHAT = (
    b"<message type='chat' id='m%d' from='user@localhost/r' to='bench.localhost'>"
    b"<body>%s</body></message>"
)
_CHUNK = 'O\'Brien said "x < y && y < z" & then: \'a\'<"b"> && more text. '
LARGE_BODY = (
    (_CHUNK * 80)[:4096]
    .replace("&", "&amp;")
    .replace("<", "&lt;")
    .replace(">", "&gt;")
    .replace("'", "&apos;")
    .replace('"', "&quot;")
    .encode()
)
WORKLOADS = ("ping", "chat", "mixed", "large")
STANZAS = 1000
READ_SIZE = 64 * 1024


class CountingTransport:
    """Takes what the component writes, and nothing else."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def registerProducer(self, producer: object, streaming: bool) -> None:
        pass

    def getPeer(self) -> None:
        return None


def stanzas(workload: str) -> bytes:
    """``STANZAS`` stanzas of ``workload``, as the server would send them."""
    if workload == "ping":
        return b"".join(PING % i for i in range(STANZAS))
    if workload == "chat":
        return b"".join(CHAT % (i, b"hello") for i in range(STANZAS))
    if workload == "large":
        return b"".join(CHAT % (i, LARGE_BODY) for i in range(STANZAS))
    return b"".join(PING % i if i % 2 == 0 else CHAT % (i, b"hello") for i in range(STANZAS))


def linked_protocol(metrics: bool) -> Any:
    """A protocol past its handshake, serving the echo and built-in handlers;
    counting its traffic if ``metrics``."""
    from twisted.internet.task import Clock

    from bench.echo import EchoHandler
    from empc import Component
    from empc._connection import ComponentProtocol, LinkSettings
    from empc.handlers import BUILTINS

    clock = Clock()
    handlers = [EchoHandler(), *(cls() for cls in BUILTINS.values())]
    if metrics:
        from empc.routing import Tally

        component = Component("bench.localhost", handlers, clock, tally=Tally())
    else:  # as an empc from before the tally knows it
        component = Component("bench.localhost", handlers, clock)
    quiet = LinkSettings(keepalive_interval=0, ping_interval=0)
    protocol = ComponentProtocol(component, "secret", clock, quiet)
    protocol.makeConnection(CountingTransport())
    protocol.dataReceived(
        b"<stream:stream xmlns='jabber:component:accept'"
        b" xmlns:stream='http://etherx.jabber.org/streams' id='bench'><handshake/>"
    )
    return protocol


def costs(workload: str, rounds: int, variants: tuple[bool, ...]) -> list[float]:
    """Microseconds of CPU per stanza, best of ``rounds``, for a component
    counting its traffic or not (``variants``), their rounds alternated."""
    protocols = [linked_protocol(metrics) for metrics in variants]
    data = stanzas(workload)
    reads = [data[i : i + READ_SIZE] for i in range(0, len(data), READ_SIZE)]
    best = [float("inf")] * len(protocols)
    for _ in range(rounds):
        for index, protocol in enumerate(protocols):
            started = time.process_time()
            for read in reads:
                protocol.dataReceived(read)
            best[index] = min(best[index], time.process_time() - started)
    return [seconds / STANZAS * 1e6 for seconds in best]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds; the best is kept")
    parser.add_argument("--empc-root", type=Path, help="measure the empc of this checkout")
    parser.add_argument("--metrics", action="store_true", help="count the traffic, for metrics")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 1000:
        parser.error("--rounds must be 1 to 1000")
    sys.path.insert(0, str(BENCH_DIR.parent))
    if args.empc_root is not None:
        sys.path.insert(0, str(args.empc_root.resolve() / "src"))
    import empc

    print(f"empc: {empc.__file__}")
    for workload in WORKLOADS:
        if not args.metrics:
            [plain] = costs(workload, args.rounds, (False,))
            print(f"{workload:6} {plain:7.2f} us per stanza")
            continue
        plain, counted = costs(workload, args.rounds, (False, True))
        print(
            f"{workload:6} {plain:7.2f} us per stanza, {counted:7.2f} with metrics "
            f"({(counted / plain - 1) * 100:+.1f}%)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
