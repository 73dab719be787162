"""StreamParser: incremental parsing, RFC 6120 restricted XML, size limits."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from support import parser_outcome

from empc.protocol import (
    NotWellFormed,
    PolicyViolation,
    RestrictedXML,
    StreamError,
    StreamFooter,
    StreamHeader,
    StreamParser,
)
from empc.protocol._errors import UnsupportedEncoding

NS_COMPONENT = "jabber:component:accept"
DECLARATION = b"<?xml version='1.0'?>"
STREAM_OPEN = (
    b"<stream:stream xmlns='jabber:component:accept'"
    b" xmlns:stream='http://etherx.jabber.org/streams' id='3BF96D32' from='example.org'>"
)
HEADER = DECLARATION + STREAM_OPEN

BILLION_LAUGHS_DTD = (
    b"<!DOCTYPE stream:stream ["
    b'<!ENTITY lol "lol">'
    b'<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
    b'<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">'
    b'<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">'
    b'<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">'
    b'<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">'
    b'<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">'
    b'<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">'
    b"]>"
)


def feed(parser: StreamParser, *chunks: bytes) -> list[Any]:
    events: list[Any] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def parse(*chunks: bytes, max_stanza_size: int = 512 * 1024) -> list[Any]:
    return feed(StreamParser(max_stanza_size), *chunks)


def stanzas(events: list[Any]) -> list[etree._Element]:
    return [e for e in events if isinstance(e, etree._Element)]


def errors(events: list[Any]) -> list[StreamError]:
    return [e for e in events if isinstance(e, StreamError)]


def serialized(events: list[Any]) -> bytes:
    """Everything the events carry, as bytes, to search for leaked data."""
    parts = []
    for event in events:
        if isinstance(event, etree._Element):
            parts.append(etree.tostring(event))
        elif isinstance(event, StreamHeader):
            parts.append(etree.tostring(event.element))
            parts.append(repr(dict(event.element.attrib)).encode())
        else:
            parts.append(repr(event).encode())
    return b"".join(parts)


def body_text(stanza: etree._Element) -> str | None:
    body = stanza.find(f"{{{NS_COMPONENT}}}body")
    assert body is not None
    return body.text


def assert_closed_with(events: list[Any], error_type: type[StreamError]) -> None:
    assert events, "expected a stream error, got no events"
    assert isinstance(events[-1], error_type), events
    assert len(errors(events)) == 1, events


# -- incremental delivery --------------------------------------------------------


def test_header_is_yielded_when_its_start_tag_is_fed() -> None:
    events = parse(HEADER)
    assert len(events) == 1
    assert isinstance(events[0], StreamHeader)
    assert events[0].element.tag == "{http://etherx.jabber.org/streams}stream"
    assert events[0].element.get("id") == "3BF96D32"


def test_stanza_is_yielded_as_soon_as_its_end_tag_is_fed() -> None:
    parser = StreamParser()
    feed(parser, HEADER)
    assert parser.feed(b"<message to='a@example.org'><body>hel") == []
    events = parser.feed(b"lo</body></message>")
    assert len(events) == 1
    assert events[0].tag == f"{{{NS_COMPONENT}}}message"
    assert body_text(events[0]) == "hello"


def test_stanza_is_yielded_detached_from_the_stream_root() -> None:
    (stanza,) = stanzas(parse(HEADER, b"<iq type='get' id='1'/>"))
    assert stanza.getparent() is None


def test_stanza_is_the_root_of_its_own_document() -> None:
    header, stanza = parse(HEADER, b"<message><body>hi</body></message>")
    assert stanza.tag == f"{{{NS_COMPONENT}}}message"
    assert stanza.getroottree().getroot() is stanza
    assert header.element.getroottree().getroot() is not stanza


def test_absolute_xpath_matches_on_a_yielded_stanza() -> None:
    (stanza,) = stanzas(parse(HEADER, b"<message><body>hi</body></message>"))
    (body,) = stanza.xpath("//c:body", namespaces={"c": NS_COMPONENT})
    assert body.text == "hi"


def test_stanza_carries_no_text_that_followed_it_in_the_stream() -> None:
    events = parse(HEADER + b"<message/>junk<iq/>")
    assert [s.tail for s in stanzas(events)] == [None, None]


def test_stream_footer_is_yielded() -> None:
    events = parse(HEADER, b"<message/></stream:stream>")
    assert isinstance(events[-1], StreamFooter)


def test_xml_declaration_is_accepted_at_the_start() -> None:
    events = parse(b"<?xml version='1.0' encoding='UTF-8'?>", STREAM_OPEN, b"<message/>")
    assert not errors(events)
    assert isinstance(events[0], StreamHeader)
    assert len(stanzas(events)) == 1


def test_xml_declaration_split_byte_by_byte_is_accepted() -> None:
    data = HEADER + b"<message/>"
    events = parse(*(data[i : i + 1] for i in range(len(data))))
    assert not errors(events)
    assert len(stanzas(events)) == 1


def test_stream_without_xml_declaration_is_accepted() -> None:
    events = parse(STREAM_OPEN, b"<message/>")
    assert not errors(events)
    assert len(stanzas(events)) == 1


# -- restricted XML (RFC 6120 section 11.1) ----------------------------------------


def test_doctype_without_internal_subset_is_restricted_xml() -> None:
    events = parse(DECLARATION + b"<!DOCTYPE stream:stream>" + STREAM_OPEN)
    assert_closed_with(events, RestrictedXML)
    assert not any(isinstance(e, StreamHeader) for e in events)


def test_doctype_with_entity_declarations_is_restricted_xml() -> None:
    events = parse(
        DECLARATION + b'<!DOCTYPE stream:stream [<!ENTITY foo "bar">]>' + STREAM_OPEN,
        b"<message><body>&foo;</body></message>",
    )
    assert_closed_with(events, RestrictedXML)
    assert b"bar" not in serialized(events)


def test_billion_laughs_in_text_is_restricted_xml() -> None:
    events = parse(
        DECLARATION + BILLION_LAUGHS_DTD + STREAM_OPEN,
        b"<message><body>&lol9;</body></message>",
    )
    assert_closed_with(events, RestrictedXML)
    assert not stanzas(events)


def test_billion_laughs_referenced_from_an_attribute_is_restricted_xml() -> None:
    events = parse(
        DECLARATION + BILLION_LAUGHS_DTD + STREAM_OPEN,
        b"<message id='&lol9;'/>",
    )
    assert_closed_with(events, RestrictedXML)
    assert not stanzas(events)


def test_billion_laughs_reference_without_its_doctype_is_restricted_xml() -> None:
    events = parse(HEADER, b"<message id='&lol9;'><body>&lol9;</body></message>")
    assert_closed_with(events, RestrictedXML)
    assert not stanzas(events)


def test_external_entity_is_restricted_xml_and_never_read(tmp_path: Path) -> None:
    secret = b"S3CRET-MARKER-7c1f0e"
    target = tmp_path / "secret.txt"
    target.write_bytes(secret)
    uri = target.as_uri().encode()
    events = parse(
        DECLARATION
        + b'<!DOCTYPE stream:stream [<!ENTITY xxe SYSTEM "'
        + uri
        + b'">]>'
        + STREAM_OPEN,
        b"<message id='&xxe;'><body>&xxe;</body></message>",
    )
    assert_closed_with(events, RestrictedXML)
    assert secret not in serialized(events)


def test_undefined_entity_reference_is_restricted_xml() -> None:
    events = parse(HEADER, b"<message><body>&foo;</body></message>")
    assert_closed_with(events, RestrictedXML)
    assert not stanzas(events)


def test_undefined_entity_reference_in_an_attribute_is_restricted_xml() -> None:
    events = parse(HEADER, b"<message id='&foo;'/>")
    assert_closed_with(events, RestrictedXML)


def test_entity_reference_in_the_stream_header_is_restricted_xml() -> None:
    events = parse(DECLARATION + STREAM_OPEN.replace(b"3BF96D32", b"&foo;"))
    assert_closed_with(events, RestrictedXML)
    assert not any(isinstance(e, StreamHeader) for e in events)


def test_comment_inside_a_stanza_is_restricted_xml() -> None:
    events = parse(HEADER, b"<message><!-- hidden --><body>x</body></message>")
    assert_closed_with(events, RestrictedXML)
    assert not stanzas(events)


def test_comment_between_stanzas_is_restricted_xml() -> None:
    events = parse(HEADER, b"<message/><!-- hidden --><iq/>")
    assert_closed_with(events, RestrictedXML)
    assert len(stanzas(events)) == 1


def test_comment_before_the_stream_header_is_restricted_xml() -> None:
    events = parse(DECLARATION + b"<!-- hi -->" + STREAM_OPEN)
    assert_closed_with(events, RestrictedXML)


def test_processing_instruction_after_the_header_is_restricted_xml() -> None:
    events = parse(HEADER, b"<?evil instruction?><message/>")
    assert_closed_with(events, RestrictedXML)
    assert not stanzas(events)


def test_processing_instruction_inside_a_stanza_is_restricted_xml() -> None:
    events = parse(HEADER, b"<message><?evil instruction?></message>")
    assert_closed_with(events, RestrictedXML)


def test_second_xml_declaration_after_the_header_is_not_well_formed() -> None:
    events = parse(HEADER, DECLARATION)
    assert_closed_with(events, NotWellFormed)


def test_processing_instruction_instead_of_the_xml_declaration_is_restricted_xml() -> None:
    events = parse(b"<?xml-stylesheet href='a'?>" + STREAM_OPEN)
    assert_closed_with(events, RestrictedXML)


def test_stanzas_before_a_restricted_construct_are_still_yielded() -> None:
    events = parse(HEADER + b"<message id='1'/><presence/><!--x--><iq/>")
    assert [s.tag.split("}")[1] for s in stanzas(events)] == ["message", "presence"]
    assert_closed_with(events, RestrictedXML)


# Text in another encoding hides '<!', '<?' and '&' from a byte-level scanner;
# RFC 6120 section 11.6 allows UTF-8 only.
def _utf7(text: str) -> bytes:
    for char, code in (("<", "+ADw-"), (">", "+AD4-"), ("!", "+ACE-"), ("&", "+ACY-")):
        text = text.replace(char, code)
    return text.encode("ascii")


_STREAM_OPEN_TEXT = STREAM_OPEN.decode()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            (
                "\ufeff<?xml version='1.0' encoding='UTF-16'?>"
                + _STREAM_OPEN_TEXT
                + "<message><!-- hidden --></message>"
            ).encode("utf-16-le"),
            id="utf-16-comment",
        ),
        pytest.param(
            b"<?xml version='1.0' encoding='UTF-7'?>"
            + _utf7(_STREAM_OPEN_TEXT + "<message><!-- hidden --></message>"),
            id="utf-7-comment",
        ),
        pytest.param(
            b"<?xml version='1.0' encoding='UTF-7'?>"
            + _utf7(
                "<!DOCTYPE stream:stream [<!ENTITY foo 'bar'>]>"
                + _STREAM_OPEN_TEXT
                + "<message><body>&foo;</body></message>"
            ),
            id="utf-7-doctype-entity",
        ),
    ],
)
def test_restricted_xml_cannot_be_smuggled_in_another_encoding(data: bytes) -> None:
    events = parse(data)
    assert not stanzas(events), [etree.tostring(s) for s in stanzas(events)]
    assert len(errors(events)) == 1
    assert isinstance(events[-1], StreamError)


def test_non_utf8_encoding_declaration_is_unsupported_encoding() -> None:
    events = parse(b"<?xml version='1.0' encoding='ISO-8859-1'?>" + STREAM_OPEN)
    assert_closed_with(events, UnsupportedEncoding)
    assert not any(isinstance(e, StreamHeader) for e in events)


@pytest.mark.parametrize("name", [b"UTF-8", b"utf-8", b"utf8"])
def test_utf8_encoding_declaration_is_accepted(name: bytes) -> None:
    events = parse(b"<?xml version='1.0' encoding='" + name + b"'?>" + STREAM_OPEN + b"<iq/>")
    assert not errors(events)
    assert len(stanzas(events)) == 1


# -- what restricted XML allows -----------------------------------------------------


def test_predefined_entities_decode_in_text() -> None:
    (stanza,) = stanzas(parse(HEADER, b"<message><body>&amp;&lt;&gt;&apos;&quot;</body></message>"))
    assert body_text(stanza) == "&<>'\""


def test_predefined_entities_decode_in_attributes() -> None:
    (stanza,) = stanzas(parse(HEADER, b"<message id='&amp;&lt;&gt;&apos;&quot;'/>"))
    assert stanza.get("id") == "&<>'\""


def test_decimal_character_references_decode() -> None:
    (stanza,) = stanzas(
        parse(HEADER, b"<message id='&#65;'><body>&#66;&#233;&#128512;</body></message>")
    )
    assert stanza.get("id") == "A"
    assert body_text(stanza) == "B\u00e9\U0001f600"


def test_hex_character_references_decode() -> None:
    (stanza,) = stanzas(
        parse(HEADER, b"<message id='&#x41;'><body>&#x42;&#xE9;&#x1F600;</body></message>")
    )
    assert stanza.get("id") == "A"
    assert body_text(stanza) == "B\u00e9\U0001f600"


def test_character_reference_split_across_chunks_decodes() -> None:
    data = HEADER + b"<message><body>&#x1F600;&amp;</body></message>"
    events = parse(*(data[i : i + 1] for i in range(len(data))))
    assert not errors(events)
    assert body_text(stanzas(events)[0]) == "\U0001f600&"


def test_character_reference_with_leading_zeros_is_accepted_whatever_the_chunking() -> None:
    data = HEADER + b"<message><body>&#0000000000065;</body></message>"
    whole = parse(data)
    assert body_text(stanzas(whole)[0]) == "A"
    split = data.index(b"&#") + 13  # inside the reference, after 13 of its bytes
    events = parse(data[:split], data[split:])
    assert not errors(events), events
    assert body_text(stanzas(events)[0]) == "A"


def test_overlong_character_reference_gives_the_same_outcome_whatever_the_chunking() -> None:
    data = HEADER + b"<message><body>&#" + b"0" * 100 + b"65;</body></message>"
    whole = parse(data)
    split = data.index(b"&#") + 70  # inside the reference, after 70 of its bytes
    events = parse(data[:split], data[split:])
    assert [type(e) for e in events] == [type(e) for e in whole]


def test_cdata_section_with_markup_like_text_passes_as_text() -> None:
    events = parse(
        HEADER, b"<message><body><![CDATA[&foo; <!-- x --> <?pi?> <!DOCTYPE]]></body></message>"
    )
    assert not errors(events)
    assert body_text(stanzas(events)[0]) == "&foo; <!-- x --> <?pi?> <!DOCTYPE"


def test_cdata_section_split_byte_by_byte_passes_as_text() -> None:
    data = HEADER + b"<message><body><![CDATA[&foo; <!--]]]]></body></message>"
    events = parse(*(data[i : i + 1] for i in range(len(data))))
    assert not errors(events)
    assert body_text(stanzas(events)[0]) == "&foo; <!--]]"


def test_comment_after_a_cdata_section_is_restricted_xml() -> None:
    events = parse(HEADER, b"<message><body><![CDATA[ok]]><!-- no --></body></message>")
    assert_closed_with(events, RestrictedXML)


# -- well-formedness ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"<message></iq>", id="mismatched-end-tag"),
        pytest.param(b"<message id='1' id='2'/>", id="duplicate-attribute"),
        pytest.param(b"<message id=1/>", id="unquoted-attribute"),
        pytest.param(b"<message><body>a < b</body></message>", id="bare-less-than"),
        pytest.param(b"<message>&#0;</message>", id="invalid-character-reference"),
        pytest.param(b"<message>\xff\xfe</message>", id="invalid-utf-8"),
        pytest.param(b"<foo:message/>", id="undeclared-prefix"),
        pytest.param(b"<message><foo:body/></message>", id="undeclared-prefix-nested"),
        pytest.param(b"<message foo:bar='1'/>", id="undeclared-attribute-prefix"),
        pytest.param(b"<message><body foo:bar='1'/></message>", id="undeclared-attribute-nested"),
        pytest.param(
            b"<message xmlns:p='urn:a' xmlns:q='urn:a' p:x='1' q:x='2'/>",
            id="namespaced-attribute-twice",
        ),
    ],
)
def test_malformed_xml_is_not_well_formed(data: bytes) -> None:
    events = parse(HEADER, data)
    assert_closed_with(events, NotWellFormed)


def test_content_after_the_stream_footer_is_not_well_formed() -> None:
    events = parse(HEADER, b"</stream:stream><message/>")
    assert isinstance(events[1], StreamFooter)
    assert_closed_with(events, NotWellFormed)


# -- size limit --------------------------------------------------------------------

LIMIT = 1024


def _stanza_of_size(size: int) -> bytes:
    frame = b"<message><body></body></message>"
    stanza = frame.replace(b"<body>", b"<body>" + b"x" * (size - len(frame)))
    assert len(stanza) == size
    return stanza


def test_stanza_over_max_stanza_size_is_a_policy_violation() -> None:
    events = parse(HEADER, _stanza_of_size(4 * LIMIT), max_stanza_size=LIMIT)
    assert_closed_with(events, PolicyViolation)
    assert not stanzas(events)


def test_unfinished_stanza_over_max_stanza_size_is_a_policy_violation() -> None:
    events = parse(HEADER, b"<message><body>", b"x" * (4 * LIMIT), max_stanza_size=LIMIT)
    assert_closed_with(events, PolicyViolation)


def test_stream_header_over_max_stanza_size_is_a_policy_violation() -> None:
    huge_header = STREAM_OPEN.replace(b"id='3BF96D32'", b"id='" + b"a" * (4 * LIMIT) + b"'")
    events = parse(DECLARATION + huge_header, max_stanza_size=LIMIT)
    assert_closed_with(events, PolicyViolation)


@pytest.mark.parametrize("padding", range(0, 64, 7))
def test_stanza_just_under_max_stanza_size_passes(padding: int) -> None:
    # The padding moves the stanza against the parser's fixed checkpoints.
    events = parse(HEADER + b" " * padding, _stanza_of_size(LIMIT - 1), max_stanza_size=LIMIT)
    assert not errors(events)
    assert len(stanzas(events)) == 1


def test_stanza_just_under_max_stanza_size_passes_byte_by_byte() -> None:
    data = HEADER + _stanza_of_size(LIMIT - 1)
    events = parse(*(data[i : i + 1] for i in range(len(data))), max_stanza_size=LIMIT)
    assert not errors(events)
    assert len(stanzas(events)) == 1


def test_back_to_back_small_stanzas_far_over_the_limit_in_total_pass() -> None:
    # Regression: the limit used to apply to the bytes fed, not to one stanza.
    stanza = _stanza_of_size(LIMIT // 5)
    count = 50 * LIMIT // len(stanza)
    events = parse(HEADER, stanza * count, max_stanza_size=LIMIT)
    assert not errors(events)
    assert len(stanzas(events)) == count


def test_back_to_back_stanzas_just_under_the_limit_pass() -> None:
    stanza = _stanza_of_size(LIMIT - 1)
    events = parse(HEADER, stanza * 100, max_stanza_size=LIMIT)
    assert not errors(events)
    assert len(stanzas(events)) == 100


def test_text_between_stanzas_does_not_accumulate_on_the_stream_root() -> None:
    # Character data at stream level hangs on the stream root; it must not
    # grow without limit when no stanza ever follows.
    parser = StreamParser(LIMIT)
    feed(parser, HEADER, b"<message/>")
    root = parser._root
    assert root is not None
    longest = 0
    for _ in range(64):
        parser.feed(b"x" * LIMIT)
        longest = max(longest, len(root.text or ""))
    assert longest <= LIMIT


# -- after an error ----------------------------------------------------------------


def test_parser_yields_nothing_after_the_first_error() -> None:
    parser = StreamParser()
    events = feed(parser, HEADER, b"<!-- x -->")
    assert_closed_with(events, RestrictedXML)
    assert parser.feed(b"<message/>") == []
    assert parser.feed(b"</stream:stream>") == []
    assert parser.feed(b"<!-- again -->") == []


def test_parser_yields_nothing_after_a_policy_violation() -> None:
    parser = StreamParser(LIMIT)
    events = feed(parser, HEADER, _stanza_of_size(4 * LIMIT))
    assert_closed_with(events, PolicyViolation)
    assert parser.feed(b"<message/>") == []


# -- memory ------------------------------------------------------------------------


def test_whitespace_keepalives_do_not_accumulate_on_the_stream_root() -> None:
    parser = StreamParser()
    feed(parser, HEADER, b"<message/>")
    root = parser._root
    assert root is not None
    longest = 0
    for _ in range(10_000):
        assert parser.feed(b" ") == []
        longest = max(longest, len(root.text or ""))
    # Dropped at the parser's checkpoints, at most 4 KiB apart.
    assert longest <= 4096
    assert len(root) == 0


def test_whitespace_between_stanzas_is_dropped_when_the_next_stanza_ends() -> None:
    parser = StreamParser()
    feed(parser, HEADER, b"<message/>")
    for _ in range(10_000):
        parser.feed(b" ")
    (stanza,) = parser.feed(b"<iq/>")
    assert stanza.tail is None
    root = parser._root
    assert root is not None
    assert len(root.text or "") < 100


def test_stream_root_never_holds_more_than_one_stanza() -> None:
    parser = StreamParser()
    feed(parser, HEADER)
    root = parser._root
    assert root is not None
    stanza = b"<message to='a@example.org'><body>hi</body></message>"
    received = 0
    for _ in range(20_000):
        received += len(parser.feed(stanza[:20]))
        assert len(root) <= 1
        received += len(parser.feed(stanza[20:] + b"\n"))
        assert len(root) <= 1
    assert received == 20_000


# -- properties --------------------------------------------------------------------

_NAMES = st.sampled_from(["message", "presence", "iq", "body", "x", "query"])
_ATTR_NAMES = st.sampled_from(["to", "from", "id", "type", "xml:lang"])
_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), include_characters="\t\n"),
    max_size=12,
)
_CHAR_REF_CODEPOINTS = st.one_of(
    st.integers(0x20, 0xD7FF), st.integers(0xE000, 0xFFFD), st.integers(0x10000, 0x10FFFF)
)


def _escape_text(text: str) -> bytes:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").encode()


def _escape_attr(text: str) -> bytes:
    return _escape_text(text).replace(b"'", b"&apos;").replace(b'"', b"&quot;")


_ZEROS = st.integers(0, 3).map(lambda n: b"0" * n)
_CHAR_REF = st.one_of(
    st.tuples(_ZEROS, _CHAR_REF_CODEPOINTS).map(lambda t: b"&#%s%d;" % t),
    st.tuples(_ZEROS, _CHAR_REF_CODEPOINTS).map(lambda t: b"&#x%s%X;" % t),
    st.tuples(_ZEROS, _CHAR_REF_CODEPOINTS).map(lambda t: b"&#x%s%x;" % t),
)
_PREDEFINED = st.sampled_from([b"&amp;", b"&lt;", b"&gt;", b"&apos;", b"&quot;"])
_CDATA = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12).map(
    lambda t: b"<![CDATA[" + t.replace("]]>", "]] >").encode() + b"]]>"
)
_ATTR_VALUE = st.lists(st.one_of(_TEXT.map(_escape_attr), _CHAR_REF, _PREDEFINED), max_size=4).map(
    b"".join
)
_ATTRS = st.dictionaries(_ATTR_NAMES, _ATTR_VALUE, max_size=3).map(
    lambda attrs: b"".join(b" %s='%s'" % (k.encode(), v) for k, v in attrs.items())
)
_CONTENT_LEAF = st.one_of(_TEXT.map(_escape_text), _CHAR_REF, _PREDEFINED, _CDATA)


def _element(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.tuples(_NAMES, _ATTRS, st.lists(children, max_size=4)).map(
        lambda t: (
            b"<%s%s/>" % (t[0].encode(), t[1])
            if not t[2]
            else b"<%s%s>%s</%s>" % (t[0].encode(), t[1], b"".join(t[2]), t[0].encode())
        )
    )


_CONTENT = st.recursive(_CONTENT_LEAF, _element, max_leaves=12)
_STANZA = _element(_CONTENT)
_BAD = st.sampled_from(
    [
        b"<!-- comment -->",
        b"<?pi data?>",
        b"&foo;",
        b"<x>&lol9;</x>",
        b"<!DOCTYPE x>",
        b"<!ENTITY a 'b'>",
        b"</wrong>",
        b"<a><b></a>",
        b"<a x='1' x='2'/>",
        b"&#0;",
        b"<a>\xff</a>",
        b"<![CDATA[never closed",
    ]
)
_KEEPALIVE = st.sampled_from([b" ", b"\n", b"\r\n\t"])


@st.composite
def _streams(draw: st.DrawFn) -> bytes:
    parts = [draw(st.sampled_from([HEADER, STREAM_OPEN]))]
    parts += draw(st.lists(st.one_of(_STANZA, _KEEPALIVE), max_size=6))
    if draw(st.booleans()):
        bad = draw(_BAD)
        if draw(st.booleans()):
            # Inside a stanza rather than between two.
            bad = b"<message>" + bad + b"</message>"
        parts.insert(draw(st.integers(1, len(parts))), bad)
    if draw(st.booleans()):
        parts.append(b"</stream:stream>")
    return b"".join(parts)


@st.composite
def _split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    if draw(st.booleans()):
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=20)))
    else:
        # Single bytes over a stretch, the hardest case for the carry-over.
        start = draw(st.integers(0, len(data)))
        end = draw(st.integers(start, min(len(data), start + 200)))
        cuts = list(range(max(1, start), end))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if a < b]


@settings(deadline=None, max_examples=100)
@given(data=st.data(), stream=_streams(), limit=st.sampled_from([200, 1024, 512 * 1024]))
def test_any_chunking_gives_the_same_events(data: st.DataObject, stream: bytes, limit: int) -> None:
    whole = parser_outcome(parse(stream, max_stanza_size=limit))
    chunks = data.draw(_split(stream))
    assert b"".join(chunks) == stream
    assert parser_outcome(parse(*chunks, max_stanza_size=limit)) == whole


@settings(deadline=None, max_examples=300)
@given(data=st.data(), noise=st.binary(max_size=300))
def test_random_bytes_after_a_header_give_stanzas_and_at_most_one_final_error(
    data: st.DataObject, noise: bytes
) -> None:
    chunks = data.draw(_split(HEADER + noise))
    events = parse(*chunks)
    assert isinstance(events[0], StreamHeader)
    for event in events[1:-1]:
        assert isinstance(event, etree._Element | StreamFooter), events
    found = errors(events)
    assert len(found) <= 1
    if found:
        assert events[-1] is found[0]


def test_cdata_ending_with_an_ampersand_at_a_chunk_end_is_not_rescanned_as_a_reference() -> None:
    # Regression: the tail after '&' inside a closed CDATA section was
    # carried over and scanned again, outside the section.
    body = b"<message><body><![CDATA[&]]></body></message><message><body>&amp;</body></message>"
    split = body.index(b"]]>") + 3
    assert parser_outcome(parse(HEADER + body[:split], body[split:])) == parser_outcome(
        parse(HEADER + body)
    )


def test_distinct_qualified_attributes_pass() -> None:
    events = parse(HEADER, b"<message xmlns:p='urn:a' p:x='1' p:y='2' xml:lang='en'/>")
    stanza = events[-1]
    assert isinstance(stanza, etree._Element)
    assert stanza.get("{urn:a}x") == "1" and stanza.get("{urn:a}y") == "2"


# -- ampersands where they are text or references, split anywhere ------------------


def test_references_and_cdata_ampersands_split_anywhere_pass() -> None:
    data = (
        b"<message><body>&amp;&lt;&#65;&#x42;<![CDATA[ & &amp ]]> x &gt;</body></message>"
        b"<message a='&quot;&#x43;'><body><![CDATA[&]]>&apos;</body></message>"
    )
    for cut in range(1, len(data)):
        events = parse(HEADER, data[:cut], data[cut:])
        assert not errors(events), cut
        assert len([e for e in events if isinstance(e, etree._Element)]) == 2, cut


def test_an_ampersand_in_a_comment_is_still_restricted_xml() -> None:
    data = b"<message><!-- a & b --></message>"
    for cut in range(1, len(data)):
        assert_closed_with(parse(HEADER, data[:cut], data[cut:]), RestrictedXML)
