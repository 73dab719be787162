"""An incremental XMPP stream parser on lxml, restricted to RFC 6120 §11.

Theory of operation
===================

Bytes go through two stages.

1. **The prolog**, everything before the stream header's start tag, is held
   back and checked byte by byte (:func:`_prolog_decided`): an optional UTF-8
   byte order mark, an optional XML declaration (whose encoding, if named,
   must be UTF-8: RFC 6120 §11.6), whitespace, then ``<`` and a byte that
   starts an element name. ``<!`` there (a DOCTYPE or a comment) and ``<?``
   other than the leading declaration are refused as restricted XML; any
   other byte is not well-formed. Only once the header's start tag has begun
   does lxml see a byte, so lxml never sees a document type declaration
   (which can only stand in the prolog; ``<!DOCTYPE`` anywhere later is not
   one, but an invalid element name, which libxml2 reports as not
   well-formed).

2. **Everything after** goes to an :class:`lxml.etree.XMLPullParser` that
   reports ``start``, ``end``, ``comment`` and ``pi`` events in document
   order, each as soon as the ``>`` that completes it has been fed. So:

   - a comment or processing instruction is refused when its event comes,
     which is before the end event of any element around it: a stanza that
     holds one is never yielded;
   - with no DOCTYPE, no entity can be declared, so every entity reference
     but the five predefined ones and character references is an undeclared
     entity, a fatal libxml2 error (``XML_ERR_UNDECLARED_ENTITY``), in text
     and in attribute values alike; libxml2 stops at its first fatal error,
     so nothing after it is reported. (``resolve_entities=False`` would not
     do: libxml2 then drops an undeclared reference silently.) CDATA
     sections need no care: libxml2 itself tells their text from markup;
   - an XML declaration after the prolog is a fatal error (not well-formed).

Every event comes after the bytes that make it, and events are handled in
document order, so the first problem in the document is the one reported,
and nothing after it is yielded, whatever the chunking.

Limits
------

- Depth: a start event deeper than ``max_depth`` (the stanza itself is at
  depth 1) is a policy violation, reported before the element is complete.
- Size: lxml buffers an unfinished start tag internally and reports it only
  once complete, so the count is kept on the bytes fed, at fixed stream
  offsets: lxml is fed in pieces that never cross a multiple of the
  *interval* ``C = max(64, min(4096, max_stanza_size // 16))``. A stanza (or
  the stream header) is the bytes from the first non-whitespace byte after
  the previous stanza's end (at the stream level only whitespace may stand
  between stanzas) up to its own end. At the end of each interval: if a
  stanza ended in it, the count starts again from zero; otherwise the
  interval's bytes of the unfinished stanza are added, and a count over the
  limit is a policy violation. Which interval an end falls in depends on
  the bytes alone, so the outcome does not depend on the chunking. The
  count never exceeds the stanza's real size, and misses at most the bytes
  in the interval where the stanza starts and those in the one where it
  ends: a stanza of at most ``max_stanza_size`` bytes always passes, one of
  ``max_stanza_size + 2 * C`` bytes or more is always refused, before it is
  yielded.

  Whether a non-whitespace byte follows the last end within a piece is
  found without a tokenizer: the piece is fed in two parts, split before
  its last ``>``. An end reported by the second part is at that ``>``, and
  only the bytes after it can start something; an end reported by the first
  part is before it, and that ``>`` already belongs to something new.

Each stanza is copied out as the root of a document of its own (so absolute
XPath works with it as context, and a thread can own it), then dropped from
the stream's document, together with the whitespace before it; whitespace
at the stream level is dropped at every interval end, so the stream's
document never grows.
"""

from __future__ import annotations

import copy
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

_WHITESPACE = b" \t\r\n"
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]*)["']""")
_XML_DECLARATION_MAX = 128
# Legitimate prologs are a declaration and a line break; anything longer
# than this before the header's start tag is refused.
_PROLOG_MAX = 1024
# libxml2 (without XML_PARSE_HUGE) refuses elements deeper than 256 itself;
# the stream root takes one level, and the element one level past the limit
# must still be reported to be refused as a policy violation.
_MAX_DEPTH_LIMIT = 254
# libxml2's XML_ERR_UNDECLARED_ENTITY and XML_WAR_UNDECLARED_ENTITY.
_UNDECLARED_ENTITY = (26, 27)


def _prolog_decided(prolog: bytes) -> bool:
    """Check the bytes before the stream header's start tag.

    Returns True once ``prolog`` is known to end with (at least) the first
    two bytes of the header's start tag, so that all of it may go to lxml;
    False while that is still undecided.

    :raises RestrictedXML: for a DOCTYPE, a comment or a processing
        instruction.
    :raises UnsupportedEncoding: for a UTF-16 byte order mark, or an XML
        declaration naming an encoding other than UTF-8.
    :raises NotWellFormed: for anything else before the header.
    :raises PolicyViolation: when it is still undecided after 1 KiB.
    """
    if prolog[:2] in _UTF16_BOMS:
        raise UnsupportedEncoding("UTF-16")
    # Only the first bytes are looked at, so that the outcome does not
    # depend on how many more came in the same chunk.
    head = prolog[:_PROLOG_MAX]
    position = 0
    if head.startswith(_UTF8_BOM):
        position = len(_UTF8_BOM)
    elif _UTF8_BOM.startswith(head):
        return False
    if head.startswith(b"<?xml", position) and len(head) > position + 5:
        if head[position + 5] in _WHITESPACE:
            position = _xml_declaration_end(head, position)
            if position < 0:
                return False
    elif b"<?xml".startswith(head[position:]):
        return False
    while position < len(head) and head[position] in _WHITESPACE:
        position += 1
    if head[position:] in (b"", b"<"):
        if len(prolog) > _PROLOG_MAX:
            raise PolicyViolation(f"more than {_PROLOG_MAX} bytes before the stream header")
        return False
    if head[position] != ord("<"):
        raise NotWellFormed("expected the stream header")
    following = head[position + 1]
    if following == ord("!"):
        raise RestrictedXML("DOCTYPE or comment before the stream header")
    if following == ord("?"):
        raise RestrictedXML("processing instruction before the stream header")
    return True


def _xml_declaration_end(prolog: bytes, start: int) -> int:
    """The offset past the XML declaration at ``start``, -1 while incomplete.

    :raises UnsupportedEncoding: when it names an encoding other than UTF-8
        (which would also hide markup from the checks on the prolog).
    :raises NotWellFormed: when it runs over 128 bytes.
    """
    end = prolog.find(b"?>", start, start + _XML_DECLARATION_MAX)
    if end < 0:
        if len(prolog) - start >= _XML_DECLARATION_MAX:
            raise NotWellFormed("XML declaration too long")
        return -1
    encoding = _ENCODING.search(prolog, start, end)
    if encoding and encoding.group(1).lower() not in (b"utf-8", b"utf8"):
        raise UnsupportedEncoding(encoding.group(1).decode())
    return end + 2


def _syntax_error(error: etree.XMLSyntaxError) -> StreamError:
    # lxml-stubs do not declare the libxml2 error code lxml sets.
    if getattr(error, "code", None) in _UNDECLARED_ENTITY:
        return RestrictedXML(f"entity reference: {error.msg}")
    return NotWellFormed(str(error))


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

    Each top-level child of the stream is yielded, as soon as its end tag
    has been fed, as the root of an lxml document of its own. The first
    problem ends the parse: it is yielded as the last event, a
    :class:`StreamError`, and later input is ignored. The outcome is the
    same whatever the chunking of the bytes.

    :param max_stanza_size: bytes one stanza (or the stream header) may take,
        counted from its first byte to its last. It is checked every ``C =
        max(64, min(4096, max_stanza_size // 16))`` bytes of the stream: a
        stanza within the limit always passes, and one of at least
        ``max_stanza_size + 2 * C`` bytes is always refused (a
        :class:`PolicyViolation`) before it is yielded.
    :param max_depth: how deeply elements may nest in a stanza, the stanza
        itself being at depth 1 (at most 254); a deeper element is a
        :class:`PolicyViolation` as soon as its start tag is fed.
    :raises ValueError: for a limit out of range.
    """

    def __init__(self, max_stanza_size: int = 512 * 1024, max_depth: int = 64) -> None:
        if max_stanza_size < 1:
            raise ValueError(f"max_stanza_size must be positive, not {max_stanza_size}")
        if not 1 <= max_depth <= _MAX_DEPTH_LIMIT:
            raise ValueError(f"max_depth must be 1 to {_MAX_DEPTH_LIMIT}, not {max_depth}")
        self._max_stanza_size = max_stanza_size
        self._max_lxml_depth = max_depth + 1  # the stream root is lxml's depth 1
        self._interval = max(64, min(4096, max_stanza_size // 16))
        self._lxml = etree.XMLPullParser(
            events=("start", "end", "comment", "pi"),
            encoding="utf-8",
            load_dtd=False,
            no_network=True,
            huge_tree=False,
        )
        self._prolog: bytes | None = b""  # None once lxml has the header
        self._root: etree._Element | None = None
        self._depth = 0  # lxml's: the stream root is at depth 1
        self._offset = 0  # bytes fed to lxml
        self._ends = 0  # ends seen: the header's start tag, stanzas, the footer
        self._ends_at_interval_start = 0
        self._started = False  # a non-whitespace byte follows the last end
        self._blank_lead = 0  # the interval's bytes before that byte
        self._counted = 0  # bytes of the unfinished stanza, at interval ends
        self._failed = False

    def feed(self, data: bytes) -> list[ParserEvent]:
        """Parse more of the stream and return what it completed.

        Returns the stream header, the stanzas and the stream footer in the
        order their last byte came, then a :class:`StreamError` if a problem
        was found (after which every call returns an empty list):
        :class:`RestrictedXML` for a comment, a processing instruction, a
        DOCTYPE or an entity reference other than the predefined ones and
        character references; :class:`UnsupportedEncoding` for an encoding
        other than UTF-8; :class:`PolicyViolation` for a stanza over a limit;
        :class:`NotWellFormed` for anything else XML does not allow.
        """
        events: list[ParserEvent] = []
        if self._failed:
            return events
        try:
            if self._prolog is not None:
                data = self._hold_prolog(data)
            interval = self._interval
            while data:
                room = interval - self._offset % interval
                if room < len(data):
                    self._feed_piece(data[:room], events)
                    data = data[room:]
                else:
                    self._feed_piece(data, events)
                    data = b""
                if self._offset % interval == 0:
                    self._end_interval()
        except etree.XMLSyntaxError as e:
            events.append(_syntax_error(e))
        except StreamError as e:
            events.append(e)
        if events and isinstance(events[-1], StreamError):
            self._failed = True
        return events

    def _hold_prolog(self, data: bytes) -> bytes:
        """Keep the prolog until it is decided; then return all of it."""
        assert self._prolog is not None
        prolog = self._prolog + data
        if not _prolog_decided(prolog):
            self._prolog = prolog
            return b""
        self._prolog = None
        return prolog

    def _feed_piece(self, piece: bytes, events: list[ParserEvent]) -> None:
        """Feed bytes that lie within one interval, and note what they held."""
        ends = self._ends
        last_gt = piece.rfind(b">")
        if last_gt > 0:
            self._parse(piece[:last_gt], events)
            ends_before_last_gt = self._ends
            self._parse(piece[last_gt:], events)
        else:
            ends_before_last_gt = ends
            self._parse(piece, events)
        if self._ends != ends_before_last_gt:
            # The last end is at the last '>': only what follows is new.
            self._started = bool(piece[last_gt + 1 :].strip(_WHITESPACE))
        elif self._ends != ends:
            self._started = True  # the last '>' comes after the last end
        elif not self._started:
            rest = piece.lstrip(_WHITESPACE)
            if rest:
                self._started = True
                self._blank_lead = self._offset % self._interval + len(piece) - len(rest)
        self._offset += len(piece)

    def _parse(self, data: bytes, events: list[ParserEvent]) -> None:
        try:
            self._lxml.feed(data)
        finally:
            # The events before an error come first in the document.
            self._collect(events)

    def _collect(self, events: list[ParserEvent]) -> None:
        # The hot loop: one pass per element start and end, on locals.
        depth = self._depth
        max_depth = self._max_lxml_depth
        element: Any
        try:
            for action, element in self._lxml.read_events():
                if action == "start":
                    depth += 1
                    tag = element.tag
                    # libxml2 keeps a name whose prefix is undeclared as it
                    # came ("foo:bar"), where lxml writes a declared one as
                    # "{uri}bar": sent back, it would not be well-formed.
                    if tag[0] != "{" and ":" in tag:
                        raise NotWellFormed(f"undeclared namespace prefix in <{tag}>")
                    names = element.keys()
                    qualified = 0
                    for name in names:
                        if name[0] == "{":
                            qualified += 1
                        elif ":" in name:
                            raise NotWellFormed(f"undeclared namespace prefix in {name}=")
                    # Two prefixes for one namespace can name one attribute twice.
                    if qualified > 1 and len(set(names)) != len(names):
                        raise NotWellFormed(f"an attribute given twice in <{tag}>")
                    if depth > max_depth:
                        raise PolicyViolation(f"elements nested deeper than {max_depth - 1}")
                    if depth == 1:
                        self._root = element
                        self._ends += 1
                        events.append(StreamHeader(element))
                elif action == "end":
                    depth -= 1
                    if depth == 1:
                        self._ends += 1
                        events.append(self._detach(element))
                    elif depth == 0:
                        self._ends += 1
                        events.append(StreamFooter())
                elif action == "comment":
                    raise RestrictedXML("comment")
                else:
                    raise RestrictedXML("processing instruction")
        finally:
            self._depth = depth

    def _detach(self, element: etree._Element) -> etree._Element:
        """A copy of the stanza as a document of its own; the original goes."""
        # lxml copies the whole subtree into a new document either way;
        # copy.copy() skips deepcopy's memo bookkeeping.
        stanza = copy.copy(element)
        stanza.tail = None  # what follows it at the stream level, if parsed yet
        root = self._root
        assert root is not None
        root.remove(element)
        root.text = None
        return stanza

    def _end_interval(self) -> None:
        if self._ends != self._ends_at_interval_start:
            self._ends_at_interval_start = self._ends
            self._counted = 0
        elif self._started:
            self._counted += self._interval - self._blank_lead
            if self._counted > self._max_stanza_size:
                raise PolicyViolation(f"stanza larger than {self._max_stanza_size} bytes")
        self._blank_lead = 0
        if self._depth == 1 and self._root is not None:
            self._root.text = None  # whitespace between stanzas
