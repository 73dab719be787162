"""StreamParser: restricted XML (RFC 6120 §11) for any bytes and any chunking."""

from __future__ import annotations

import itertools
from typing import Any
from xml.sax.saxutils import escape

from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from support import parser_outcome

from empc.protocol import NotWellFormed, RestrictedXML, StreamError, StreamParser

DECLARATION = b"<?xml version='1.0'?>"
STREAM_OPEN = (
    b"<stream:stream xmlns='jabber:component:accept'"
    b" xmlns:stream='http://etherx.jabber.org/streams' id='3BF96D32' from='example.org'>"
)
# With this limit the parser checks sizes every 64 bytes: small streams
# still cross many of its interval boundaries.
LIMIT = 1024
INTERVAL = 64


def parse(*chunks: bytes) -> list[Any]:
    parser = StreamParser(LIMIT)
    events: list[Any] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def test_comment_and_processing_instruction_after_cdata_with_an_ampersand_are_refused() -> None:
    # Regression: '&' inside CDATA was taken for the start of a reference,
    # and what followed reached lxml unchecked.
    stanza = (
        b"<message type='chat' to='c.example.org' from='u@example.org/r'>"
        b"<body><![CDATA[&]]><!--x--><?pi y?></body></message>"
    )
    events = parse(DECLARATION + STREAM_OPEN + stanza)
    assert isinstance(events[-1], RestrictedXML), events
    assert not [e for e in events if isinstance(e, etree._Element)]


def test_doctype_after_the_header_is_not_well_formed() -> None:
    # A document type declaration can only stand in the prolog; later it is
    # an invalid element name.
    events = parse(STREAM_OPEN + b"<message/><!DOCTYPE x>")
    assert isinstance(events[-1], NotWellFormed), events


def test_undeclared_entity_does_not_strip_namespaces_from_later_stanzas() -> None:
    # libxml2 without entity resolution drops an undeclared reference and
    # parses on with namespaces lost; the stream must stop at it instead.
    events = parse(STREAM_OPEN + b"<message>&foo;</message><iq/>")
    assert isinstance(events[-1], RestrictedXML), events
    assert len(events) == 2


# -- strategies ----------------------------------------------------------------------

_TEXT = st.text(st.sampled_from("ab &<>'\"]\u00e9\U0001f600"), max_size=8)
_CDATA_TEXT = st.lists(
    st.sampled_from(["&", "&foo;", "<!", "<!--", "<?", "]]", "]", "x", "<![CDATA[", "-->", "?>"]),
    max_size=5,
).map("".join)


def _escape(text: str) -> bytes:
    return escape(text, {"'": "&apos;", '"': "&quot;"}).encode()


_ALLOWED_CONTENT = st.one_of(
    _TEXT.map(_escape),
    _CDATA_TEXT.map(lambda t: b"<![CDATA[" + t.encode() + b"]]>"),
    st.sampled_from([b"&amp;", b"&lt;", b"&gt;", b"&apos;", b"&quot;", b"&#65;", b"&#x1F600;"]),
    st.just(b"<x xmlns='urn:example'/>"),
)
_ALLOWED_VALUE = st.lists(
    st.one_of(_TEXT.map(_escape), st.sampled_from([b"&amp;", b"&#233;", b"&#xE9;"])),
    max_size=3,
).map(b"".join)

# What RFC 6120 forbids, and what a stream says of it.
_FORBIDDEN_CONTENT = st.sampled_from(
    [
        (b"<!--x-->", RestrictedXML),
        (b"<!---->", RestrictedXML),
        (b"<?pi y?>", RestrictedXML),
        (b"<?xml-stylesheet href='a'?>", RestrictedXML),
        (b"&foo;", RestrictedXML),
        (b"&lol9;", RestrictedXML),
        (b"<?xml version='1.0'?>", NotWellFormed),
        (b"<!DOCTYPE x>", NotWellFormed),
        (b"<!ENTITY a 'b'>", NotWellFormed),
    ]
)


@st.composite
def _stanza(draw: st.DrawFn, stanza_id: str, forbidden: bytes | None = None) -> bytes:
    """A message with allowed content, and ``forbidden`` somewhere inside."""
    value = draw(_ALLOWED_VALUE)
    content = draw(st.lists(_ALLOWED_CONTENT, max_size=4))
    if forbidden is not None:
        content.insert(draw(st.integers(0, len(content))), forbidden)
    body = b"<body>" + b"".join(content) + b"</body>"
    return b"<message id='%s' to='c.example.org' a='%s'>%s</message>" % (
        stanza_id.encode(),
        value,
        body,
    )


@st.composite
def _stream(draw: st.DrawFn) -> tuple[bytes, type[StreamError] | None]:
    """A stream of good stanzas, maybe one bad (id 'bad'), and its expected error."""
    count = draw(st.integers(0, 3))
    parts = [draw(_stanza(f"ok{i}")) for i in range(count)]
    expected: type[StreamError] | None = None
    if draw(st.booleans()):
        forbidden, expected = draw(_FORBIDDEN_CONTENT)
        where = draw(st.sampled_from(["text", "attribute", "between"]))
        if where == "attribute" and forbidden.startswith(b"&"):
            bad = b"<message id='bad' a='" + forbidden + b"'/>"
        elif where == "between":
            bad = forbidden + b"<message id='bad'/>"
        else:
            bad = draw(_stanza("bad", forbidden))
        parts.insert(draw(st.integers(0, len(parts))), bad)
    keepalive = draw(st.sampled_from([b"", b" ", b"\n"]))
    prolog = draw(st.sampled_from([b"", DECLARATION, DECLARATION + b"\n"]))
    return prolog + STREAM_OPEN + keepalive.join(parts), expected


@st.composite
def _cuts(draw: st.DrawFn, size: int) -> list[int]:
    kind = draw(st.sampled_from(["intervals", "random", "bytes"]))
    if kind == "intervals":
        # Just before, at and after the parser's own interval boundaries.
        shift = draw(st.integers(-2, 2))
        return [i + shift for i in range(INTERVAL, size, INTERVAL)]
    if kind == "random":
        return sorted(draw(st.sets(st.integers(1, max(1, size - 1)), max_size=12)))
    start = draw(st.integers(0, size))
    return list(range(start, min(size, start + 80)))


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *(c for c in cuts if 0 < c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if a < b]


# -- properties ----------------------------------------------------------------------


@settings(deadline=None, max_examples=40)
@given(stream=_stream())
def test_a_split_at_any_single_offset_gives_the_same_events(
    stream: tuple[bytes, type[StreamError] | None],
) -> None:
    data, _ = stream
    whole = parser_outcome(parse(data))
    for cut in range(1, len(data)):
        assert parser_outcome(parse(data[:cut], data[cut:])) == whole, cut


@settings(deadline=None, max_examples=150)
@given(stream=_stream(), data=st.data())
def test_any_multi_way_split_gives_the_same_events(
    stream: tuple[bytes, type[StreamError] | None], data: st.DataObject
) -> None:
    whole, _ = stream
    chunks = _split(whole, data.draw(_cuts(len(whole))))
    assert b"".join(chunks) == whole
    assert parser_outcome(parse(*chunks)) == parser_outcome(parse(whole))


@settings(deadline=None, max_examples=150)
@given(stream=_stream(), data=st.data())
def test_a_stanza_with_a_forbidden_construct_is_never_yielded(
    stream: tuple[bytes, type[StreamError] | None], data: st.DataObject
) -> None:
    whole, expected = stream
    events = parse(*_split(whole, data.draw(_cuts(len(whole)))))
    assert "bad" not in [e.get("id") for e in events if isinstance(e, etree._Element)]
    if expected is None:
        assert not [e for e in events if isinstance(e, StreamError)], events
    else:
        assert type(events[-1]) is expected, events
