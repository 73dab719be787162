"""An incremental XMPP stream parser on lxml, restricted to RFC 6120 §11.

lxml parses; it does not police. Given a DOCTYPE it would read the internal
subset, keep entity declarations and pass comments and processing
instructions through. So every byte is first shown to
:class:`_RestrictedScanner`, which finds what §11.1 forbids (a DOCTYPE, an
entity reference other than the five predefined ones and character
references, a comment, a processing instruction) before lxml sees it. lxml
itself runs with entity resolution, DTD loading and network access off, as
a second line of defence.

Chunking does not change the outcome: the scanner carries an undecided tail
(such as ``&am`` or ``<![CDA``: at most 64 bytes, or the XML declaration)
over to the next chunk, and the stanza size limit is checked at fixed offsets of the stream,
not at chunk boundaries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lxml import etree

from ._errors import (
    NotWellFormed,
    PolicyViolation,
    RestrictedXML,
    StreamError,
    UnsupportedEncoding,
)

# Matches what may not pass, plus the start of a CDATA section, inside which
# '&' and '<!' are plain text and must not be matched.
_FORBIDDEN = re.compile(
    rb"<!\[CDATA\[|<!|<\?|&(?!(?:amp|lt|gt|apos|quot|#[0-9]{1,60}|#x[0-9a-fA-F]{1,60});)"
)
_CDATA_START = b"<![CDATA["
# How far back an unterminated '&' may still become a valid reference: a
# character reference may carry leading zeros, up to 60 digits (longer ones
# are refused, whatever the chunking).
_REFERENCE_WINDOW = 64
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_XML_DECLARATION_MAX = 128
_WHITESPACE = (b" ", b"\t", b"\r", b"\n")


class _RestrictedScanner:
    """Rejects the XML constructs RFC 6120 §11.1 forbids, chunk by chunk."""

    def __init__(self) -> None:
        self._carry = b""
        self._offset = 0  # stream offset of the first byte of the carry
        self._in_cdata = False

    def scan(self, data: bytes) -> tuple[int, StreamError | None]:
        """Check the next ``data`` of the stream.

        Returns ``(len(data), None)`` when nothing forbidden was found, else
        how many leading bytes of ``data`` come before the forbidden
        construct, and the error to close the stream with.
        """
        carried = len(self._carry)
        buf = self._carry + data if carried else data
        try:
            keep = self._scan(buf)
        except _Forbidden as forbidden:
            return max(0, forbidden.position - carried), forbidden.error
        self._offset += keep
        self._carry = buf[keep:]
        return len(data), None

    def _scan(self, buf: bytes) -> int:
        limit = _decidable_end(buf)
        pos = 0
        while True:
            if self._in_cdata:
                close = buf.find(b"]]>", pos)
                if close < 0:
                    keep = max(pos, len(buf) - 2)
                    break
                pos = close + 3
                self._in_cdata = False
                continue
            if _plainly_allowed(buf, pos, limit):
                # pos may be past limit: a CDATA section ran into the tail.
                keep = max(pos, limit)
                break
            match = _FORBIDDEN.search(buf, pos, limit)
            if match is None:
                keep = max(pos, limit)
                break
            token = match.group()
            if token == _CDATA_START:
                self._in_cdata = True
                pos = match.end()
            elif token == b"<?" and self._offset + match.start() == 0:
                declaration_end = _xml_declaration_end(buf)
                if declaration_end < 0:
                    keep = 0
                    break
                pos = declaration_end
            else:
                error = RestrictedXML(_describe(buf[match.start() : match.start() + 4]))
                raise _Forbidden(match.start(), error)
        return keep


class _Forbidden(Exception):
    def __init__(self, position: int, error: StreamError) -> None:
        self.position = position
        self.error = error


_MARKUP = re.compile(rb"<[!?]")
_NOT_PREDEFINED = re.compile(rb"&(?!amp;|lt;|gt;|quot;|apos;)")


def _plainly_allowed(buf: bytes, start: int, end: int) -> bool:
    """A fast check that ``buf[start:end]`` holds no markup declaration, no
    processing instruction and no reference but the predefined entities.

    False means: ask the full expression, which also knows CDATA sections
    and character references. (A one-byte ``find`` is a memchr; the simple
    patterns here cost a fraction of the full one.)
    """
    if _MARKUP.search(buf, start, end) is not None:
        return False
    ampersand = buf.find(b"&", start, end)
    return ampersand < 0 or _NOT_PREDEFINED.search(buf, ampersand, end) is None


def _decidable_end(buf: bytes) -> int:
    """Where the undecidable tail of ``buf`` starts (``len(buf)`` if none).

    A tail is undecidable when it may still become either an allowed or a
    forbidden construct: ``&am`` (``&amp;`` or ``&amx;``), ``<`` or ``<![CD``
    (a CDATA section or a DOCTYPE).
    """
    end = len(buf)
    amp = buf.rfind(b"&", max(0, end - _REFERENCE_WINDOW))
    if amp >= 0 and buf.find(b";", amp) >= 0:
        amp = -1
    lt = buf.rfind(b"<", max(0, end - len(_CDATA_START)))
    if lt >= 0 and not _CDATA_START.startswith(buf[lt:]):
        lt = -1
    starts = [i for i in (amp, lt) if i >= 0]
    return min(starts) if starts else end


def _xml_declaration_end(buf: bytes) -> int:
    """The offset just past the XML declaration at the start of ``buf``.

    Returns -1 while the declaration is incomplete; raises if the stream
    starts with any other processing instruction.
    """
    if len(buf) < 6:
        if b"<?xml".startswith(buf[:5]):
            return -1
        raise _Forbidden(0, RestrictedXML("processing instruction"))
    if buf[:5] != b"<?xml" or buf[5:6] not in _WHITESPACE:
        raise _Forbidden(0, RestrictedXML("processing instruction"))
    end = buf.find(b"?>")
    if end >= 0:
        # RFC 6120 §11.6: UTF-8 only. Another encoding would also hide
        # restricted constructs from a byte-level check.
        encoding = _ENCODING.search(buf, 0, end)
        if encoding and encoding.group(1).lower() not in (b"utf-8", b"utf8"):
            raise _Forbidden(0, UnsupportedEncoding(encoding.group(1).decode()))
        return end + 2
    if len(buf) > _XML_DECLARATION_MAX:
        raise _Forbidden(0, NotWellFormed("XML declaration too long"))
    return -1


def _describe(token: bytes) -> str:
    if token.startswith(b"<!--"):
        return "comment"
    if token.startswith(b"<!"):
        return "DOCTYPE or markup declaration"
    if token.startswith(b"<?"):
        return "processing instruction"
    return "entity reference"


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """The opening ``<stream:stream>`` tag; ``element`` has its attributes."""

    element: etree._Element


@dataclass(frozen=True, slots=True)
class StreamFooter:
    """The closing ``</stream:stream>`` tag."""


ParserEvent = StreamHeader | StreamFooter | etree._Element | StreamError
"""What :meth:`StreamParser.feed` yields: a top-level stanza is an element."""


class StreamParser:
    """Turns the bytes of one XML stream into headers, stanzas and errors.

    Each top-level child of the stream is yielded as a detached lxml element
    as soon as its end tag has been fed. The first problem ends the parse:
    it is yielded as the last event, a :class:`StreamError`, and later input
    is ignored.

    :param max_stanza_size: bytes one stanza (or the stream header) may take.
        It is checked at fixed stream offsets, every ``max_stanza_size // 16``
        bytes (at most 4 KiB): a stanza within the limit always passes, and
        one over it by more than two such intervals is always refused.
    """

    def __init__(self, max_stanza_size: int = 512 * 1024) -> None:
        self._max_stanza_size = max_stanza_size
        self._checkpoint = max(64, min(4096, max_stanza_size // 16))
        self._scanner = _RestrictedScanner()
        self._lxml = etree.XMLPullParser(
            events=("start", "end"),
            encoding="utf-8",
            resolve_entities=False,
            load_dtd=False,
            no_network=True,
            huge_tree=False,
        )
        self._root: etree._Element | None = None
        self._depth = 0
        self._offset = 0
        self._starts = 0  # elements opened at the stream's top two levels
        self._starts_at_checkpoint = 0
        self._unfinished_bytes = 0
        self._failed = False

    def feed(self, data: bytes) -> list[ParserEvent]:
        """Parse more of the stream and return what it completed."""
        events: list[ParserEvent] = []
        if self._failed:
            return events
        try:
            while data:
                room = self._checkpoint - self._offset % self._checkpoint
                piece, data = data[:room], data[room:]
                allowed, forbidden = self._scanner.scan(piece)
                try:
                    self._lxml.feed(piece[:allowed])
                finally:
                    self._collect(events)
                if forbidden is not None:
                    raise forbidden
                self._offset += len(piece)
                if self._offset % self._checkpoint == 0:
                    self._check_size()
        except etree.XMLSyntaxError as e:
            events.append(NotWellFormed(str(e)))
        except StreamError as e:
            events.append(e)
        if events and isinstance(events[-1], StreamError):
            self._failed = True
        return events

    def _collect(self, events: list[ParserEvent]) -> None:
        element: Any
        for action, element in self._lxml.read_events():
            if action == "start":
                self._depth += 1
                if self._depth <= 2:
                    self._starts += 1
                tag = element.tag
                if tag[0] != "{" and ":" in tag:
                    raise NotWellFormed(f"undeclared namespace prefix in <{tag}>")
                if self._depth == 1:
                    self._root = element
                    events.append(StreamHeader(element))
                continue
            self._depth -= 1
            if self._depth == 1:
                root = self._root
                assert root is not None
                # Detach the stanza so the tree never holds more than one,
                # and drop the whitespace that piles up between stanzas.
                root.remove(element)
                element.tail = None
                root.text = None
                events.append(element)
            elif self._depth == 0:
                events.append(StreamFooter())

    def _check_size(self) -> None:
        # Count only whole checkpoint intervals that one unfinished stanza
        # (or the header) spans: this never overestimates a stanza, so no
        # stanza within the limit is refused.
        same_stanza = self._starts == self._starts_at_checkpoint
        self._starts_at_checkpoint = self._starts
        if self._depth == 1:
            # Between stanzas: drop the text (keepalives) piling up on the root.
            if self._root is not None:
                self._root.text = None
            self._unfinished_bytes = 0
            return
        if not same_stanza:
            self._unfinished_bytes = 0
            return
        self._unfinished_bytes += self._checkpoint
        if self._unfinished_bytes > self._max_stanza_size:
            raise PolicyViolation(f"stanza larger than {self._max_stanza_size} bytes")
