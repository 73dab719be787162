"""Micro-benchmark of :meth:`StreamParser.feed`, the hot path of every stanza.

Run ``python bench/parser.py`` for the installed parser, or
``python bench/parser.py --parser path/to/_parser.py`` to measure another
version of the module (say, the one before a change) the same way. It prints
the best of ``--rounds`` rounds, in microseconds of CPU time (the process's,
not the wall clock's, so that other load on the machine counts less) per
stanza, for:

- ``small``: 1,000 pipelined stanzas, half XEP-0199 pings and half chat
  messages with the body ``hello``, fed in 64 KiB reads;
- ``large``: 100 chat messages with a 4,096-character body full of escaped
  ``&amp; &lt; &gt; &apos; &quot;``, fed in 64 KiB reads.

Each round parses a fresh stream (header included), so nothing carries over.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept'"
    b" xmlns:stream='http://etherx.jabber.org/streams' id='benchstream0001'"
    b" from='bench.localhost'>"
)
READ_SIZE = 64 * 1024


def small_stanzas(count: int) -> bytes:
    """``count`` stanzas, pings and short chat messages in turn."""
    stanzas = []
    for i in range(count):
        if i % 2:
            stanzas.append(
                b"<message type='chat' id='m%d' from='user@localhost/r' to='bench.localhost'>"
                b"<body>hello</body></message>" % i
            )
        else:
            stanzas.append(
                b"<iq type='get' id='p%d' from='user@localhost/r' to='bench.localhost'>"
                b"<ping xmlns='urn:xmpp:ping'/></iq>" % i
            )
    return b"".join(stanzas)


def large_stanzas(count: int) -> bytes:
    """``count`` chat messages whose 4,096-character body is mostly escapes."""
    text = ("a & b < c > d ' e \" f " * 200)[:4096]
    escaped = escape(text, {"'": "&apos;", '"': "&quot;"}).encode()
    return b"".join(
        b"<message type='chat' id='m%d' from='user@localhost/r' to='bench.localhost'>"
        b"<body>%s</body></message>" % (i, escaped)
        for i in range(count)
    )


def load_parser_class(path: Path | None) -> Any:
    """``StreamParser`` from the installed package, or from the module at ``path``."""
    if path is None:
        from empc.protocol import StreamParser

        return StreamParser
    # The module imports its siblings relatively: load it inside the package.
    spec = importlib.util.spec_from_file_location("empc.protocol._bench_parser", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.StreamParser


def parse_all(parser_class: Any, data: bytes, expected: int) -> Callable[[], None]:
    """A callable that parses ``data`` in 64 KiB reads and checks the stanza count."""

    def run() -> None:
        parser = parser_class()
        received = 0
        for start in range(0, len(data), READ_SIZE):
            received += len(parser.feed(data[start : start + READ_SIZE]))
        # The header is one event; anything else would be an error.
        if received != expected + 1:
            raise SystemExit(f"expected {expected} stanzas, got {received - 1} events")

    return run


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--parser", type=Path, help="a _parser.py to measure instead")
    options.add_argument("--rounds", type=int, default=7, help="rounds (best is kept)")
    options.add_argument("--repeat", type=int, default=20, help="streams per round")
    arguments = options.parse_args()
    if not 1 <= arguments.rounds <= 100 or not 1 <= arguments.repeat <= 1000:
        raise SystemExit("--rounds must be 1..100 and --repeat 1..1000")
    parser_class = load_parser_class(arguments.parser)
    for name, count, body in (
        ("small", 1000, small_stanzas(1000)),
        ("large", 100, large_stanzas(100)),
    ):
        run = parse_all(parser_class, HEADER + body, count)
        best = min(
            timeit.repeat(
                run, number=arguments.repeat, repeat=arguments.rounds, timer=time.process_time
            )
        )
        per_stanza = best / arguments.repeat / count * 1e6
        print(f"{name}: {per_stanza:.2f} us per stanza ({len(body) // count} bytes each)")


if __name__ == "__main__":
    main()
