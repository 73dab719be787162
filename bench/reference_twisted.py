"""Reference XEP-0114 component on Twisted: the least a Twisted component does.

The same stream as ``bench/reference.py`` (its :class:`ReferenceStream`:
one lxml ``XMLPullParser``, pings answered, chat messages echoed, all the
replies of one read in one write), in a plain Twisted ``Protocol`` on the
default reactor (epoll on Linux), connected with a TCP client endpoint.  Set
against the asyncio reference it shows what Twisted's reactor and transports
cost; set against empc, what empc costs over a Twisted program doing the
least.  Like the asyncio reference, it has no routing, no JID parsing, no
keepalive and no reconnection, and it imports nothing from empc.

It closes its stream when the server closes its own, and exits: with status
0 then, 1 if the server broke the protocol or dropped the connection first,
2 if ``--max-seconds`` passed.

Usage: ``python bench/reference_twisted.py --port PORT [--host H]
[--domain D] [--secret S] [--max-seconds T]``.
"""

from __future__ import annotations

import sys
from typing import Any

# Run as a script, this file's directory comes first on sys.path, so this is
# the asyncio reference beside it, whatever PYTHONPATH says.
from reference import ReferenceStream, parse_args
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure


class TwistedReferenceComponent(Protocol):
    """The Twisted protocol around one :class:`ReferenceStream`.

    *done* fires with the exit status once the connection is gone.
    """

    def __init__(self, stream: ReferenceStream, done: Deferred[int]) -> None:
        self._stream = stream
        self._done = done

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._stream.header())

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        out = self._stream.receive(data)
        if out:
            self.transport.write(out)
        if self._stream.status is not None:
            self.transport.loseConnection()  # after what is buffered is written

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        if not self._done.called:
            self._done.callback(self._stream.lost())


async def _main(reactor: Any, argv: list[str]) -> None:
    """Connect, run the stream until the connection is gone, and exit.

    Raises SystemExit with the status unless it is 0; a failure to connect
    within 10 s fails, which ``task.react`` turns into status 1.
    """
    args = parse_args(argv, __doc__.split("\n\n")[0])
    done: Deferred[int] = Deferred()
    endpoint = TCP4ClientEndpoint(reactor, args.host, args.port, timeout=10)
    component = TwistedReferenceComponent(ReferenceStream(args.domain, args.secret), done)
    await connectProtocol(endpoint, component)
    done.addTimeout(args.max_seconds, reactor)
    try:
        status = await done
    except defer.TimeoutError:
        print("reference-twisted: --max-seconds reached, giving up", file=sys.stderr)
        assert component.transport is not None
        component.transport.abortConnection()  # type: ignore[attr-defined]
        status = 2
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    task.react(_main, [sys.argv[1:]])
