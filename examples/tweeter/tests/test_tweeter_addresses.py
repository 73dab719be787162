"""XEP-0106 escaping, user JIDs, addresses at the component and feed nodes."""

from __future__ import annotations

import pytest
from tweeter.addresses import (
    InvalidUser,
    address_of,
    escape,
    node_of,
    parse_user,
    unescape,
    user_of_address,
    user_of_node,
)

DOMAIN = "tweeter.localhost"


@pytest.mark.parametrize(
    ("plain", "escaped"),
    [
        # XEP-0106 §4.2 and §4.3 examples.
        ("space cadet", "space\\20cadet"),
        ('call me "ishmael"', "call\\20me\\20\\22ishmael\\22"),
        ("at&t guy", "at\\26t\\20guy"),
        ("d'artagnan", "d\\27artagnan"),
        ("/.fanboy", "\\2f.fanboy"),
        ("::foo::", "\\3a\\3afoo\\3a\\3a"),
        ("<foo>", "\\3cfoo\\3e"),
        ("user@host", "user\\40host"),
        ("c:\\net", "c\\3a\\net"),
        ("c:\\\\net", "c\\3a\\\\net"),
        ("c:\\cool stuff", "c\\3a\\cool\\20stuff"),
        ("c:\\5commas", "c\\3a\\5c5commas"),
        ("alice@localhost", "alice\\40localhost"),
    ],
)
def test_escape_follows_xep_0106(plain: str, escaped: str) -> None:
    assert escape(plain) == escaped
    assert unescape(escaped) == plain


@pytest.mark.parametrize(
    "text", ["a\\20b", "\\", "\\\\", "\\5c", "x\\40y@z", "back\\slash", "\\2F", "é@ü"]
)
def test_unescape_undoes_escape(text: str) -> None:
    assert unescape(escape(text)) == text


def test_unescape_accepts_upper_case_hex() -> None:
    assert unescape("alice\\40localhost\\2F") == "alice@localhost/"


@pytest.mark.parametrize(
    ("text", "user"),
    [
        ("alice@localhost", "alice@localhost"),
        ("  Alice@LocalHost  ", "alice@localhost"),
        ("alice@localhost/phone", "alice@localhost"),
        ("alice\\40localhost@tweeter.localhost", "alice@localhost"),
    ],
)
def test_parse_user(text: str, user: str) -> None:
    assert parse_user(text, DOMAIN) == user


@pytest.mark.parametrize(
    "text",
    [
        "",
        "localhost",
        "@localhost",
        "alice@",
        "alice@localhost/",
        "a b@localhost",
        "a:b@localhost",
        'a"b@localhost',
        "a&b@localhost",
        "a'b@localhost",
        "a<b@localhost",
        "a>b@localhost",
        "a@b@localhost",
        "alice@local host",
        "a\\27b\\40localhost@tweeter.localhost",
        "nobody@tweeter.localhost",
        "x\\40tweeter.localhost@tweeter.localhost",
        "tweeter.localhost",
    ],
)
def test_parse_user_refuses(text: str) -> None:
    with pytest.raises(InvalidUser):
        parse_user(text, DOMAIN)


def test_addresses_at_the_component() -> None:
    assert address_of("alice@localhost", DOMAIN) == "alice\\40localhost@tweeter.localhost"
    assert user_of_address("alice\\40localhost@tweeter.localhost", DOMAIN) == "alice@localhost"
    for address in ("tweeter.localhost", "alice@localhost", "bob@tweeter.localhost"):
        with pytest.raises(InvalidUser):
            user_of_address(address, DOMAIN)


def test_nodes() -> None:
    assert node_of("alice@localhost") == "urn:xmpp:microblog:0:alice@localhost"
    assert user_of_node("urn:xmpp:microblog:0:alice@localhost") == "alice@localhost"
    for node in (
        "urn:xmpp:microblog:0",
        "urn:xmpp:microblog:0:",
        "urn:xmpp:microblog:0:localhost",
        "urn:xmpp:microblog:0:Alice@localhost",
        "urn:xmpp:microblog:0:alice@localhost/phone",
        "urn:xmpp:microblog:0:not a jid",
        "urn:xmpp:microblog:0:o'brien@localhost",
        "princely_musings",
    ):
        assert user_of_node(node) is None, node


def test_an_invalid_jid_is_shown_shortened_in_the_error() -> None:
    with pytest.raises(InvalidUser) as caught:
        parse_user("x" * 2000 + " y@localhost")
    assert len(str(caught.value)) < 100
