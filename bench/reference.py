"""Reference XEP-0114 component: the least any Python component must do.

The benchmark harness (``bench/run.py``) runs this program next to empc so
that empc's figures can be read against a floor.  It is a plain asyncio
program that:

* connects to the server, sends the ``jabber:component:accept`` stream
  header and answers the server's header with the SHA-1 ``<handshake/>``;
* feeds every received byte to one lxml ``XMLPullParser`` (start/end events),
  tracking the depth to find each top-level stanza;
* answers an XEP-0199 ping (``<iq type='get'><ping xmlns='urn:xmpp:ping'/>``)
  with an ``iq`` result (to/from swapped, same id), other ``get``/``set``
  IQs with ``service-unavailable``, and echoes a chat message (same id,
  to/from swapped, the ``<body>`` serialized once with lxml);
* writes all the replies produced by one read in one ``transport.write``;
* closes its stream when the server closes its own, and exits.

Minimal but correct: it parses real XML (a malformed stream ends the
connection), keeps the tree from growing and escapes what it writes.  It has
no routing, no JID parsing, no keepalive, no reconnection.

The stream itself is :class:`ReferenceStream`, which knows no event loop
(bytes in, bytes out); ``bench/reference_twisted.py`` runs the same class on
Twisted's reactor, to tell the cost of the reactor from that of empc.

Usage: ``python bench/reference.py --port PORT [--host H] [--domain D]
[--secret S] [--max-seconds T]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from typing import Any

from lxml import etree

STREAM_NS = "http://etherx.jabber.org/streams"
COMPONENT_NS = "jabber:component:accept"
PING_NS = "urn:xmpp:ping"

Q_STREAM = f"{{{STREAM_NS}}}stream"
Q_STREAM_ERROR = f"{{{STREAM_NS}}}error"
Q_HANDSHAKE = f"{{{COMPONENT_NS}}}handshake"
Q_IQ = f"{{{COMPONENT_NS}}}iq"
Q_MESSAGE = f"{{{COMPONENT_NS}}}message"
Q_BODY = f"{{{COMPONENT_NS}}}body"
Q_PING = f"{{{PING_NS}}}ping"

SERVICE_UNAVAILABLE = (
    "<error type='cancel'><service-unavailable "
    "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
)


def _quote(value: str) -> str:
    """Return *value* as a double-quoted, escaped XML attribute value."""
    if "&" in value or "<" in value or '"' in value:
        value = value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    return '"' + value + '"'


class ReferenceStream:
    """The component's side of one stream, without I/O: bytes in, bytes out.

    The event loop's protocol writes :meth:`header` once connected, then
    feeds every read to :meth:`receive` and writes what it returns.  Once
    :attr:`status` is set, the stream is over: the protocol writes what
    :meth:`receive` returned, then closes the connection.
    """

    def __init__(self, domain: str, secret: str) -> None:
        self._domain = domain
        self._secret = secret
        self._parser = etree.XMLPullParser(
            events=("start", "end"), resolve_entities=False, no_network=True
        )
        self._root: Any = None
        self._depth = 0
        self._authenticated = False
        # None while the stream is open; then the exit status: 0 when the
        # server closed its stream, 1 when it broke the protocol.
        self.status: int | None = None

    def header(self) -> bytes:
        """The component's stream header, to write once connected."""
        return (
            b"<stream:stream xmlns='jabber:component:accept' "
            b"xmlns:stream='http://etherx.jabber.org/streams' to="
            + _quote(self._domain).encode()
            + b">"
        )

    def receive(self, data: bytes) -> bytes:
        """Parse *data*; return every reply it calls for, in one string.

        When the server closes its stream, or sends malformed XML or
        something this component does not accept (said on stderr), the
        result ends with ``</stream:stream>`` and :attr:`status` is set;
        nothing is parsed after that.
        """
        if self.status is not None:
            return b""
        out: list[bytes] = []
        try:
            self._parser.feed(data)
            for event, node in self._parser.read_events():
                elem: Any = node
                if event == "start":
                    self._depth += 1
                    if self._depth == 1:
                        self._stream_started(elem, out)
                    continue
                self._depth -= 1
                if self._depth == 1:
                    self._stanza(elem, out)
                    elem.clear()
                    self._root.remove(elem)
                elif self._depth == 0:
                    return self._end(out, 0)
        except (etree.XMLSyntaxError, ProtocolError) as exc:
            print(f"reference: {exc}", file=sys.stderr)
            return self._end(out, 1)
        return b"".join(out)

    def lost(self) -> int:
        """The exit status once the connection is gone: :attr:`status`, or 1
        if the connection went before the stream ended."""
        return 1 if self.status is None else self.status

    def _end(self, out: list[bytes], status: int) -> bytes:
        self.status = status
        out.append(b"</stream:stream>")
        return b"".join(out)

    def _stream_started(self, root: Any, out: list[bytes]) -> None:
        if root.tag != Q_STREAM:
            raise ProtocolError(f"unexpected stream root {root.tag!r}")
        stream_id = root.get("id")
        if not stream_id:
            raise ProtocolError("server stream header has no id")
        self._root = root
        digest = hashlib.sha1((stream_id + self._secret).encode()).hexdigest()
        out.append(b"<handshake>" + digest.encode() + b"</handshake>")

    def _stanza(self, elem: Any, out: list[bytes]) -> None:
        tag = elem.tag
        if not self._authenticated:
            if tag == Q_HANDSHAKE:
                self._authenticated = True
                return
            if tag == Q_STREAM_ERROR:
                raise ProtocolError("stream error during the handshake")
            raise ProtocolError(f"{tag!r} before the handshake succeeded")
        if tag == Q_IQ:
            self._iq(elem, out)
        elif tag == Q_MESSAGE:
            self._message(elem, out)
        elif tag == Q_STREAM_ERROR:
            raise ProtocolError("stream error from the server")

    def _iq(self, iq: Any, out: list[bytes]) -> None:
        kind = iq.get("type")
        sender = iq.get("from")
        if kind not in ("get", "set") or sender is None:
            return
        head = (
            " id="
            + _quote(iq.get("id", ""))
            + " from="
            + _quote(iq.get("to", self._domain))
            + " to="
            + _quote(sender)
        )
        if kind == "get" and len(iq) == 1 and iq[0].tag == Q_PING:
            out.append(('<iq type="result"' + head + "/>").encode())
        else:
            out.append(('<iq type="error"' + head + ">" + SERVICE_UNAVAILABLE + "</iq>").encode())

    def _message(self, message: Any, out: list[bytes]) -> None:
        sender = message.get("from")
        if message.get("type") != "chat" or sender is None:
            return
        body = message.find(Q_BODY)
        if body is None:
            return
        msg_id = message.get("id")
        head = (
            '<message type="chat"'
            + ("" if msg_id is None else " id=" + _quote(msg_id))
            + " from="
            + _quote(message.get("to", self._domain))
            + " to="
            + _quote(sender)
        )
        out.append(head.encode() + b">")
        out.append(etree.tostring(body, with_tail=False))
        out.append(b"</message>")


class ProtocolError(Exception):
    """The server did something this component does not accept."""


class ReferenceComponent(asyncio.Protocol):
    """The asyncio protocol around one :class:`ReferenceStream`."""

    def __init__(self, stream: ReferenceStream, done: asyncio.Future[int]) -> None:
        self._stream = stream
        self._done = done
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._stream.header())

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        out = self._stream.receive(data)
        if out:
            self._transport.write(out)
        if self._stream.status is not None:
            self._transport.close()
            if not self._done.done():
                self._done.set_result(self._stream.status)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(self._stream.lost())


async def _main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    stream = ReferenceStream(args.domain, args.secret)
    transport, _ = await asyncio.wait_for(
        loop.create_connection(lambda: ReferenceComponent(stream, done), args.host, args.port),
        timeout=10,
    )
    try:
        return await asyncio.wait_for(done, timeout=args.max_seconds)
    except TimeoutError:
        print("reference: --max-seconds reached, giving up", file=sys.stderr)
        return 2
    finally:
        transport.close()


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    """The options of both reference programs (this one and its Twisted twin)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--domain", default="bench.localhost")
    parser.add_argument("--secret", default="benchsecret")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=900.0,
        help="exit after this long whatever happens (default: 900)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_main(parse_args(argv, __doc__.split("\n\n")[0])))


if __name__ == "__main__":
    sys.exit(main())
