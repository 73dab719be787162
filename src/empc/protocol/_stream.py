"""XMPP streams as sans-IO state machines: what they share, and the
XEP-0114 component stream.

Theory of operation
-------------------

:class:`XmppStream` holds what every stream shares: the restricted-XML
parser and its limits, the queue of bytes to send, stream errors, and the
closing handshake. :class:`ComponentStream` adds the XEP-0114 handshake;
an account's stream (``_client.ClientStream``) adds TLS, SASL, resource
binding and stream management. Both are driven the same way.

:class:`ComponentStream` knows no sockets and no clock. The caller feeds it
the bytes it reads with :meth:`~ComponentStream.receive`, which returns
events, and writes whatever :meth:`~ComponentStream.data_to_send` returns
after every call. All state transitions live in this module::

    IDLE --open()--> OPENING --server header--> HANDSHAKING
    HANDSHAKING --<handshake/>--> READY
    READY --close()--> CLOSING --server's </stream:stream>--> CLOSED
    READY --server's </stream:stream>, its stream error,
            or its breach of the protocol--> DRAINING
    DRAINING --close()--> CLOSED (the server has closed its side)
                       or CLOSING (it has not: we wait for it)
    before READY: a stream error or a breach --> CLOSING at once

In OPENING the component has sent its stream header to its domain in the
``jabber:component:accept`` namespace. When the server's header arrives
with a stream id, the handshake (lowercase hex SHA-1 of the id followed by
the secret) goes out, and an empty ``<handshake/>`` answers success.

When a READY stream ends from the server's side, the stanzas that came
before the end have been delivered, and the caller still owes them their
replies. So the stream waits in DRAINING, where :meth:`send` still works
and further input is ignored, until the caller calls :meth:`close`: only
then do our stream error (if we found a breach) and our
``</stream:stream>`` go out, after the replies, as RFC 6120 §4.4 allows.
Stanzas received in CLOSING, after our own close, are still delivered;
nothing is, in any state, after a stream error from the server or a breach
of the protocol.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from typing import ClassVar
from xml.sax.saxutils import quoteattr

from lxml import etree

from ._errors import (
    NS_STREAM_ERRORS,
    STREAM_ERRORS,
    BadFormat,
    InvalidNamespace,
    LocalProtocolError,
    RestrictedContent,
    StreamError,
    UndefinedCondition,
    UnsupportedStanzaType,
)
from ._jid import JID, in_domain
from ._parser import StreamFooter, StreamHeader, StreamParser
from ._xml import new_element

NS_COMPONENT = "jabber:component:accept"
NS_STREAMS = "http://etherx.jabber.org/streams"

_HEADER_TAG = f"{{{NS_STREAMS}}}stream"
_ERROR_TAG = f"{{{NS_STREAMS}}}error"
_HANDSHAKE_TAG = f"{{{NS_COMPONENT}}}handshake"
_STANZA_TAGS = frozenset(f"{{{NS_COMPONENT}}}{name}" for name in ("message", "presence", "iq"))
# The same kinds of stanza, built without a namespace: they inherit the
# stream's default namespace on the wire.
_BARE_STANZA_TAGS = frozenset(("message", "presence", "iq"))
_CLOSE_TAG = b"</stream:stream>"


def handshake_digest(stream_id: str, secret: str) -> str:
    """The XEP-0114 handshake: lowercase hex SHA-1 of stream id + secret."""
    return hashlib.sha1((stream_id + secret).encode()).hexdigest()


class State(enum.Enum):
    IDLE = "idle"
    OPENING = "opening"
    HANDSHAKING = "handshaking"
    READY = "ready"
    DRAINING = "draining"
    CLOSING = "closing"
    CLOSED = "closed"


class Event:
    """Something that happened on a stream, as :meth:`XmppStream.receive`
    reports it."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class StreamOpened(Event):
    """The server's stream header arrived; the handshake has been sent."""

    stream_id: str


@dataclass(frozen=True, slots=True)
class Authenticated(Event):
    """The stream is READY: the server accepted who we are (the handshake
    of a component; an account's password and resource), stanzas may flow."""


@dataclass(frozen=True, slots=True)
class StanzaReceived(Event):
    """A stanza (message, presence or iq) arrived, as a detached element."""

    stanza: etree._Element


@dataclass(frozen=True, slots=True)
class StreamErrorReceived(Event):
    """The server sent a stream error; the stream is closing (DRAINING, if
    it was READY: :meth:`ComponentStream.close` sends our close tag)."""

    error: StreamError


@dataclass(frozen=True, slots=True)
class ProtocolViolation(Event):
    """The server broke the protocol. ``error`` has been sent to it, or,
    if the stream was READY, goes out with :meth:`ComponentStream.close`
    (the stream is DRAINING)."""

    error: StreamError


@dataclass(frozen=True, slots=True)
class ServerClosed(Event):
    """The server closed its side of a READY stream: the stream is DRAINING
    until :meth:`ComponentStream.close` sends our close tag."""


@dataclass(frozen=True, slots=True)
class StreamClosed(Event):
    """Both sides have closed the stream; the connection may be dropped."""


class XmppStream:
    """What every XMPP stream of ours shares, whoever it authenticates as:
    the restricted-XML parser and its limits, the queue of bytes to send,
    stream errors, and the closing handshake (see the module docstring).

    A subclass names its stream's namespace, writes its header, and takes
    the server's header (:meth:`_opened`) and every top-level element that
    is not a stream error (:meth:`_element`) until the stream is READY.
    """

    namespace: ClassVar[str]

    def __init__(self, to: str, *, max_stanza_size: int, max_depth: int) -> None:
        self.to = to
        self._max_stanza_size = max_stanza_size
        self._max_depth = max_depth
        self._parser = StreamParser(max_stanza_size, max_depth)
        self._outbox: list[bytes] = []
        self._close_sent = False
        self._server_closed = False
        # The server ended the stream (its stream error, or a breach we
        # found): nothing it sends afterwards is delivered, in any state.
        self._server_ended = False
        # Set when the rest of what the parser read is not for this stream:
        # it restarts (after SASL), or TLS is to start (after <proceed/>).
        self._discard_rest = False
        self._pending_error: StreamError | None = None  # sent by close() when DRAINING
        self.authenticated = False  # stays True once READY was reached
        self.state = State.IDLE
        self.stream_id: str | None = None

    def __repr__(self) -> str:
        # Secrets stay out of every representation.
        return f"<{type(self).__name__} {self.to} {self.state.value}>"

    def data_to_send(self) -> bytes:
        """The bytes queued for the server since the last call."""
        data = b"".join(self._outbox)
        self._outbox.clear()
        return data

    def open(self) -> None:
        """Queue the stream header; what follows depends on the server's."""
        if self.state is not State.IDLE:
            raise LocalProtocolError(f"cannot open a stream that is {self.state.value}")
        self._outbox.append(self._header_bytes())
        self.state = State.OPENING

    def _header_bytes(self) -> bytes:
        raise NotImplementedError

    def _restart(self) -> None:
        """Open a new stream on the same connection (RFC 6120 §4.3.3): a
        fresh parser, and our header again."""
        self._parser = StreamParser(self._max_stanza_size, self._max_depth)
        self._discard_rest = True
        self._outbox.append(self._header_bytes())
        self.state = State.OPENING

    def send(self, stanza: etree._Element) -> None:
        """Queue a stanza; see the subclasses for what fails."""
        raise NotImplementedError

    def send_result(self, iq_id: str | None, to: str | None, sender: str | None) -> None:
        """Queue an empty IQ ``result``; see the subclasses for what fails."""
        raise NotImplementedError

    def send_whitespace(self) -> None:
        """Queue a single space: a keepalive that costs the server nothing."""
        if self.state is State.READY:
            self._outbox.append(b" ")

    def _check_stanza(self, stanza: etree._Element) -> None:
        """Refuse what no stream may send: the stream is neither READY nor
        DRAINING (replies to what the server sent before it ended the
        stream may still go out), the element is not a stanza, or it holds
        restricted XML."""
        state = self.state  # inline, not _check_state(): every stanza sent passes here
        if state is not State.READY and state is not State.DRAINING:
            raise LocalProtocolError(f"cannot send while the stream is {state.value}")
        tag = stanza.tag
        if tag not in _STANZA_TAGS and tag not in _BARE_STANZA_TAGS:
            raise LocalProtocolError(f"not a stanza: {tag}")
        restricted = next(stanza.iter(*_RESTRICTED_NODES), None)
        if restricted is not None:
            raise RestrictedContent(f"a stanza may not carry {etree.tostring(restricted)!r}")

    def _check_state(self) -> None:
        if self.state is not State.READY and self.state is not State.DRAINING:
            raise LocalProtocolError(f"cannot send while the stream is {self.state.value}")

    def close(self) -> None:
        """Start the closing handshake (RFC 6120 §4.4), or finish it when
        DRAINING: the state is then CLOSED if the server has closed its
        side, CLOSING if we still wait for it."""
        if self.state in (State.CLOSING, State.CLOSED):
            return
        if self.state is State.IDLE:
            self.state = State.CLOSED
            return
        if self._pending_error is not None:
            self._outbox.append(_serialize_error(self._pending_error))
            self._pending_error = None
        self._send_close()
        self.state = State.CLOSED if self._server_closed else State.CLOSING

    def fail(self, error: StreamError) -> None:
        """Send a stream error and close the stream."""
        if self.state is State.CLOSED or self._close_sent:
            return
        if self.state is State.IDLE:
            self.open()
        self._pending_error = None  # this error replaces the one a drain would send
        self._outbox.append(_serialize_error(error))
        self._send_close()
        self.state = State.CLOSED if self._server_closed else State.CLOSING

    def receive(self, data: bytes) -> list[Event]:
        """Process bytes from the server and return what happened."""
        events: list[Event] = []
        if self.state is State.CLOSED or self._server_closed:
            return events
        self._discard_rest = False
        for item in self._parser.feed(data):
            if isinstance(item, StreamFooter):
                self._footer(events)
            elif self._server_ended:
                continue  # only the server's close matters now
            elif isinstance(item, etree._Element):
                if item.tag == _ERROR_TAG:
                    self._error_received(item, events)
                else:
                    self._element(item, events)
            elif isinstance(item, StreamHeader):
                self._header(item.element, events)
            else:
                self._violation(item, events)
            if self._server_closed or self._discard_rest:
                break  # nothing can follow the server's close, or be for a new stream
        return events

    def _footer(self, events: list[Event]) -> None:
        self._server_closed = True
        if self.state is State.READY or self.state is State.DRAINING:
            if self.state is State.READY:
                events.append(ServerClosed())
            self.state = State.DRAINING
            return
        self._send_close()
        self.state = State.CLOSED
        events.append(StreamClosed())

    def _header(self, header: etree._Element, events: list[Event]) -> None:
        if self.state is not State.OPENING:
            return  # closed before the server answered
        if header.tag != _HEADER_TAG or header.nsmap.get(None) != self.namespace:
            self._violation(
                InvalidNamespace(f"expected a {self.namespace} stream, got {header.tag}"),
                events,
            )
            return
        self.stream_id = header.get("id")
        self.state = State.HANDSHAKING
        self._opened(header, events)

    def _opened(self, header: etree._Element, events: list[Event]) -> None:
        """The server's header, in the right namespace, arrived."""

    def _error_received(self, element: etree._Element, events: list[Event]) -> None:
        self._server_ended = True
        events.append(StreamErrorReceived(parse_stream_error(element)))
        if self.state is State.READY:
            self.state = State.DRAINING
        else:
            self._send_close()
            self.state = State.CLOSING

    def _element(self, element: etree._Element, events: list[Event]) -> None:
        """A top-level element other than a stream error."""
        raise NotImplementedError

    def _violation(self, error: StreamError, events: list[Event]) -> None:
        self._server_ended = True
        if self.state is State.READY:
            self._pending_error = error
            self.state = State.DRAINING
        else:
            self.fail(error)
        events.append(ProtocolViolation(error))

    def _send_close(self) -> None:
        if not self._close_sent:
            self._close_sent = True
            self._outbox.append(_CLOSE_TAG)


class ComponentStream(XmppStream):
    """One XEP-0114 stream from a component to a server.

    :param domain: the component's domain, such as ``echo.example.org``.
    :param secret: the secret shared with the server.
    :param max_stanza_size: the largest stanza accepted from the server.
    :param max_depth: how deeply a stanza's elements may nest.
    """

    namespace = NS_COMPONENT

    def __init__(
        self, domain: str, secret: str, *, max_stanza_size: int = 512 * 1024, max_depth: int = 64
    ) -> None:
        self.domain = JID.parse(domain).domain
        super().__init__(self.domain, max_stanza_size=max_stanza_size, max_depth=max_depth)
        self._secret = secret

    def _header_bytes(self) -> bytes:
        return (
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept'"
            b" xmlns:stream='http://etherx.jabber.org/streams' to="
            + quoteattr(self.domain).encode()
            + b">"
        )

    def send(self, stanza: etree._Element) -> None:
        """Queue a stanza, stamping the component's domain as ``from``.

        :raises LocalProtocolError: if the stream is neither READY nor
            DRAINING (replies to what the server sent before it ended the
            stream may still go out), the stanza is not a message, presence
            or iq, has no ``to``, or has a ``from`` outside the component's
            domain; :class:`RestrictedContent` if it holds a comment, a
            processing instruction or an entity reference. The stream is
            left untouched.
        """
        self._check_stanza(stanza)
        sender = stanza.get("from")
        self._check_addresses(stanza.get("to"), sender)
        if sender is None:
            stanza.set("from", self.domain)
        self._outbox.append(etree.tostring(stanza, with_tail=False))

    def send_result(self, iq_id: str | None, to: str | None, sender: str | None) -> None:
        """Queue an empty IQ ``result``, the most common answer (to a ping,
        to a set that needs no payload), without building an element.

        The values are attribute values as lxml parsed them (valid XML
        text): they are escaped here. What fails is what fails for
        :meth:`send`.
        """
        state = self.state  # inline: most answers are these
        if state is not State.READY and state is not State.DRAINING:
            raise LocalProtocolError(f"cannot send while the stream is {state.value}")
        self._check_addresses(to, sender)
        assert to is not None
        self._outbox.append(result_bytes(iq_id, to, sender or self.domain))

    def _check_addresses(self, to: str | None, sender: str | None) -> None:
        if not to:
            raise LocalProtocolError("a stanza sent by a component needs a 'to'")
        if sender is not None and not in_domain(sender, self.domain):
            raise LocalProtocolError(
                f"'from' {sender!r} is outside the component's domain {self.domain!r}"
            )

    def _opened(self, header: etree._Element, events: list[Event]) -> None:
        if not self.stream_id:
            self._violation(BadFormat("stream header without an id"), events)
            return
        handshake = new_element(NS_COMPONENT, "handshake")
        handshake.text = handshake_digest(self.stream_id, self._secret)
        self._outbox.append(etree.tostring(handshake))
        events.append(StreamOpened(self.stream_id))

    def _element(self, element: etree._Element, events: list[Event]) -> None:
        tag = element.tag
        if self.state is State.HANDSHAKING and tag == _HANDSHAKE_TAG:
            self.state = State.READY
            self.authenticated = True
            events.append(Authenticated())
        elif tag in _STANZA_TAGS and self.authenticated:
            # Also while CLOSING: a stream that was open still delivers what
            # the server sent before its close (RFC 6120 §4.4).
            events.append(StanzaReceived(element))
        elif self.state is not State.CLOSING:
            self._violation(UnsupportedStanzaType(f"unexpected {tag}"), events)


# What RFC 6120 §11.1 keeps out of a stream, as lxml nodes.
_RESTRICTED_NODES = (etree.Comment, etree.ProcessingInstruction, etree.Entity)
_ATTRIBUTE_SPECIALS = re.compile(r'[&<"\t\n\r]')
_ATTRIBUTE_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
)


def result_bytes(iq_id: str | None, to: str | None, sender: str | None) -> bytes:
    """An empty IQ ``result``, serialized without building an element. The
    values are attribute values as lxml parsed them (valid XML text):
    they are escaped here; a None one is left out."""
    # Inline, not a helper per attribute: most replies are these.
    return (
        b'<iq type="result"'
        + (b"" if iq_id is None else b' id="' + _quote(iq_id) + b'"')
        + (b"" if to is None else b' to="' + _quote(to) + b'"')
        + (b"" if sender is None else b' from="' + _quote(sender) + b'"')
        + b"/>"
    )


def _quote(value: str) -> bytes:
    """``value`` escaped for a double-quoted attribute (the check first:
    most values need no escaping)."""
    if _ATTRIBUTE_SPECIALS.search(value) is not None:
        value = value.translate(_ATTRIBUTE_ESCAPES)
    return value.encode()


def parse_stream_error(element: etree._Element) -> StreamError:
    """The typed :class:`StreamError` that a ``<stream:error/>`` carries."""
    condition, text = None, None
    for child in element:
        name = etree.QName(child)
        if name.namespace != NS_STREAM_ERRORS:
            continue
        if name.localname == "text":
            text = child.text
        elif condition is None:
            condition = name.localname
    return STREAM_ERRORS.get(condition or "", UndefinedCondition)(text)


def _serialize_error(error: StreamError) -> bytes:
    element = etree.Element(_ERROR_TAG, nsmap={"stream": NS_STREAMS})
    new_element(NS_STREAM_ERRORS, error.condition, parent=element)
    if error.text:
        new_element(NS_STREAM_ERRORS, "text", parent=element).text = error.text
    application = error.application_condition()
    if application is not None:
        element.append(application)
    return etree.tostring(element)
