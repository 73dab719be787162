"""StreamParser: the stanza size and depth limits bound every byte."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from empc.protocol import PolicyViolation, StreamError, StreamParser
from empc.protocol._errors import UnsupportedEncoding
from empc.protocol._parser import StreamHeader

STREAM_OPEN = (
    b"<stream:stream xmlns='jabber:component:accept'"
    b" xmlns:stream='http://etherx.jabber.org/streams' id='3BF96D32' from='example.org'>"
)
LIMIT = 4096
INTERVAL = 256  # LIMIT // 16: where the parser checks sizes
SURELY_REFUSED = LIMIT + 2 * INTERVAL


def parse(*chunks: bytes, max_stanza_size: int = LIMIT, max_depth: int = 64) -> list[Any]:
    parser = StreamParser(max_stanza_size, max_depth)
    events: list[Any] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def stanzas(events: list[Any]) -> list[etree._Element]:
    return [e for e in events if isinstance(e, etree._Element)]


def errors(events: list[Any]) -> list[StreamError]:
    return [e for e in events if isinstance(e, StreamError)]


def text_stanza(size: int) -> bytes:
    """A message of ``size`` bytes, mostly body text."""
    frame = b"<message id='big'><body></body></message>"
    return frame.replace(b"<body>", b"<body>" + b"x" * (size - len(frame)))


def start_tag_stanza(size: int) -> bytes:
    """A message of ``size`` bytes, mostly attributes of its start tag."""
    frame = b"<message id='big' a=''/>"
    return frame.replace(b"a=''", b"a='" + b"y" * (size - len(frame)) + b"'")


def attributes_stanza(count: int) -> bytes:
    """A message whose start tag has ``count`` attributes."""
    return b"<message" + b"".join(b" a%d='%d'" % (i, i) for i in range(count)) + b"/>"


# -- size: a huge start tag ------------------------------------------------------------


def test_start_tag_with_many_attributes_is_a_policy_violation() -> None:
    events = parse(STREAM_OPEN, attributes_stanza(20_000))
    assert isinstance(events[-1], PolicyViolation), events
    assert not stanzas(events)


def test_start_tag_is_refused_before_much_more_than_the_limit_is_fed() -> None:
    # libxml2 keeps an unfinished start tag whole: the refusal must come
    # from the bytes fed, long before the tag ends.
    parser = StreamParser(LIMIT)
    assert len(parser.feed(STREAM_OPEN)) == 1
    fed = 0
    events: list[Any] = []
    attribute = 0
    while not events:
        chunk = b" a%d='%s'" % (attribute, b"z" * 50)
        attribute += 1
        fed += len(chunk)
        events = parser.feed(b"<message" + chunk if attribute == 1 else chunk)
        assert fed < SURELY_REFUSED + 100
    assert isinstance(events[-1], PolicyViolation)


def test_whitespace_in_a_start_tag_begun_just_after_a_stanza_counts() -> None:
    # The interval in which a stanza ends resets the count: what begins
    # after that end, in the same interval, must still count.
    padding = INTERVAL - len(STREAM_OPEN) % INTERVAL
    start = b" " * padding + b"<message/><message"
    events = parse(STREAM_OPEN + start, b" " * (4 * LIMIT), b"/>")
    assert isinstance(events[-1], PolicyViolation), events
    assert len(stanzas(events)) == 1


def test_whitespace_in_a_start_tag_after_a_greater_than_sign_in_a_value_counts() -> None:
    events = parse(STREAM_OPEN + b"<message/><message a='>", b" " * (4 * LIMIT), b"'/>")
    assert isinstance(events[-1], PolicyViolation), events


def test_unfinished_comment_after_a_stanza_counts() -> None:
    events = parse(STREAM_OPEN + b"<message/><!-- >", b" " * (4 * LIMIT))
    assert isinstance(events[-1], PolicyViolation), events


def test_whitespace_keepalives_between_stanzas_never_count() -> None:
    parser = StreamParser(LIMIT)
    events = parser.feed(STREAM_OPEN + b"<message/>")
    for _ in range(4 * LIMIT // 100):
        events += parser.feed(b" " * 100)
    events += parser.feed(text_stanza(LIMIT))
    assert not errors(events)
    assert len(stanzas(events)) == 2


# -- size: the guarantee at its edges ---------------------------------------------------

_MAKERS = {"text": text_stanza, "start-tag": start_tag_stanza}


@pytest.mark.parametrize("kind", sorted(_MAKERS))
@pytest.mark.parametrize("before", [b"", b"<iq/>", b"\n \n"])
def test_stanza_of_max_stanza_size_passes_wherever_it_starts(kind: str, before: bytes) -> None:
    stanza = _MAKERS[kind](LIMIT)
    assert len(stanza) == LIMIT
    for padding in range(0, INTERVAL + 1, 3):
        events = parse(STREAM_OPEN + b" " * padding + before + stanza)
        assert not errors(events), (padding, events)
        assert stanzas(events)[-1].get("id") == "big"


@pytest.mark.parametrize("kind", sorted(_MAKERS))
@pytest.mark.parametrize("before", [b"", b"<iq/>", b"\n \n"])
def test_stanza_of_max_stanza_size_plus_two_intervals_is_refused_wherever_it_starts(
    kind: str, before: bytes
) -> None:
    stanza = _MAKERS[kind](SURELY_REFUSED)
    for padding in range(0, INTERVAL + 1, 3):
        events = parse(STREAM_OPEN + b" " * padding + before + stanza)
        assert isinstance(events[-1], PolicyViolation), (padding, events)
        assert "big" not in [s.get("id") for s in stanzas(events)]


def test_stream_header_over_the_limit_is_refused_before_it_is_yielded() -> None:
    header = STREAM_OPEN.replace(b"id='3BF96D32'", b"id='" + b"h" * SURELY_REFUSED + b"'")
    events = parse(header)
    assert isinstance(events[-1], PolicyViolation), events
    assert not [e for e in events if isinstance(e, StreamHeader)]


@settings(deadline=None, max_examples=60)
@given(
    size=st.sampled_from([LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + INTERVAL, SURELY_REFUSED]),
    kind=st.sampled_from(sorted(_MAKERS)),
    padding=st.integers(0, INTERVAL),
    cuts=st.sets(st.integers(1, LIMIT + 3 * INTERVAL), max_size=8),
)
def test_the_size_outcome_does_not_depend_on_the_chunking(
    size: int, kind: str, padding: int, cuts: set[int]
) -> None:
    data = STREAM_OPEN + b" " * padding + b"<iq/>" + _MAKERS[kind](size) + b"<iq/>"
    bounds = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    whole = parse(data)
    split = parse(*chunks)
    assert [type(e) for e in split] == [type(e) for e in whole]
    if size <= LIMIT:
        assert not errors(whole)
    if size >= SURELY_REFUSED:
        assert isinstance(whole[-1], PolicyViolation)


# -- the prolog ------------------------------------------------------------------------


def test_prolog_over_a_kilobyte_is_a_policy_violation() -> None:
    events = parse(b"<?xml version='1.0'?>" + b" " * 2000 + STREAM_OPEN)
    assert isinstance(events[-1], PolicyViolation), events


def test_prolog_of_a_kilobyte_in_one_chunk_or_many_is_accepted() -> None:
    data = b"<?xml version='1.0'?>" + b"\n" * 900 + STREAM_OPEN
    assert isinstance(parse(data)[0], StreamHeader)
    assert isinstance(parse(*(data[i : i + 7] for i in range(0, len(data), 7)))[0], StreamHeader)


def test_utf8_byte_order_mark_is_accepted() -> None:
    events = parse(b"\xef\xbb\xbf", STREAM_OPEN, b"<iq/>")
    assert not errors(events)
    assert len(stanzas(events)) == 1


def test_utf16_byte_order_mark_is_unsupported_encoding() -> None:
    events = parse("\ufeff<stream:stream/>".encode("utf-16-le"))
    assert isinstance(events[-1], UnsupportedEncoding), events


# -- depth ----------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    """A message nested ``depth`` deep, the message itself at depth 1."""
    return b"<message>" + b"<x>" * (depth - 1) + b"</x>" * (depth - 1) + b"</message>"


def test_stanza_at_max_depth_passes() -> None:
    events = parse(STREAM_OPEN, nested(64))
    assert not errors(events)
    assert len(stanzas(events)) == 1


def test_stanza_deeper_than_max_depth_is_a_policy_violation() -> None:
    events = parse(STREAM_OPEN, nested(65))
    assert isinstance(events[-1], PolicyViolation), events
    assert not stanzas(events)


def test_too_deep_start_tag_is_refused_before_the_stanza_ends() -> None:
    events = parse(STREAM_OPEN, b"<message>" + b"<x>" * 3, max_depth=3)
    assert isinstance(events[-1], PolicyViolation), events


def test_depth_beyond_libxml2s_own_limit_is_a_policy_violation() -> None:
    events = parse(STREAM_OPEN, b"<message>" + b"<x>" * 400)
    assert isinstance(events[-1], PolicyViolation), events


def test_largest_max_depth_is_honoured() -> None:
    assert not errors(parse(STREAM_OPEN, nested(254), max_depth=254))
    assert isinstance(parse(STREAM_OPEN, nested(255), max_depth=254)[-1], PolicyViolation)


@pytest.mark.parametrize("max_depth", [0, 255])
def test_max_depth_out_of_range_is_a_value_error(max_depth: int) -> None:
    with pytest.raises(ValueError, match="max_depth"):
        StreamParser(max_depth=max_depth)


def test_max_stanza_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_stanza_size"):
        StreamParser(0)
