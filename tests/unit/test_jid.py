"""JID parsing (RFC 7622), as far as empc needs it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from empc.protocol import JID, InvalidJID


@pytest.mark.parametrize(
    ("text", "local", "domain", "resource"),
    [
        ("example.org", None, "example.org", None),
        ("user@example.org", "user", "example.org", None),
        ("user@example.org/res", "user", "example.org", "res"),
        ("example.org/res", None, "example.org", "res"),
        ("user@example.org/res/with/slashes", "user", "example.org", "res/with/slashes"),
        ("user@example.org/res@at", "user", "example.org", "res@at"),
        ("localhost", None, "localhost", None),
        ("[::1]", None, "[::1]", None),
    ],
)
def test_parse_splits_local_domain_and_resource(
    text: str, local: str | None, domain: str, resource: str | None
) -> None:
    assert JID.parse(text) == JID(local, domain, resource)


@pytest.mark.parametrize(
    "text",
    [
        "example.org",
        "user@example.org",
        "user@example.org/res",
        "example.org/res",
        "User@example.org/Res/x",
        "\u00fc@\u00e9xample.org/\u0440\u0435\u0441\u0443\u0440\u0441",
    ],
)
def test_str_of_parsed_jid_round_trips(text: str) -> None:
    assert str(JID.parse(text)) == text


def test_parse_of_str_round_trips() -> None:
    jid = JID("user", "example.org", "res")
    assert JID.parse(str(jid)) == jid


def test_domain_is_lower_cased() -> None:
    assert JID.parse("User@Example.ORG/Res").domain == "example.org"


def test_local_part_and_resource_keep_their_case() -> None:
    jid = JID.parse("User@Example.ORG/Res")
    assert jid.local == "User"
    assert jid.resource == "Res"


def test_jids_differing_only_in_domain_case_are_equal() -> None:
    assert JID.parse("user@EXAMPLE.org") == JID.parse("user@example.org")


def test_trailing_dot_of_the_domain_is_dropped() -> None:
    assert JID.parse("user@example.org./res") == JID("user", "example.org", "res")


def test_bare_drops_the_resource() -> None:
    assert JID.parse("user@example.org/res").bare == JID("user", "example.org")


def test_bare_of_a_bare_jid_is_itself() -> None:
    jid = JID.parse("user@example.org")
    assert jid.bare == jid


def test_bare_of_a_domain_jid_with_resource_is_the_domain() -> None:
    assert str(JID.parse("example.org/res").bare) == "example.org"


def test_jid_is_hashable() -> None:
    assert len({JID.parse("a@example.org"), JID.parse("a@EXAMPLE.org")}) == 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "@example.org",
        "user@",
        "user@/res",
        "user@example.org/",
        "example.org/",
        "/res",
        "@",
        ".",
        "user@.",
        "a@b@example.org",
        "exa mple.org",
        "user@exa<mple.org",
        "user@exa&mple.org",
        "user@exa'mple.org",
        'user@exa"mple.org',
        "x" * 1024 + "@example.org",
        "user@" + "x" * 1024,
        "user@example.org/" + "x" * 1024,
    ],
)
def test_invalid_jid_raises_invalid_jid(text: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(text)


def test_invalid_jid_is_a_value_error() -> None:
    assert issubclass(InvalidJID, ValueError)


def test_parts_of_the_maximum_length_are_accepted() -> None:
    jid = JID.parse("a" * 1023 + "@" + "b" * 1023 + "/" + "c" * 1023)
    assert (len(jid.local or ""), len(jid.domain), len(jid.resource or "")) == (1023, 1023, 1023)


_PART = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs")),
    min_size=1,
    max_size=20,
)
_LOCAL = _PART.filter(lambda s: not set(s) & set("@/ \"&':<>"))
_DOMAIN = st.from_regex(r"[a-z0-9-]{1,20}(\.[a-z0-9-]{1,20}){0,3}", fullmatch=True)


@settings(deadline=None, max_examples=200)
@given(local=st.none() | _LOCAL, domain=_DOMAIN, resource=st.none() | _PART)
def test_any_valid_jid_round_trips_through_str(
    local: str | None, domain: str, resource: str | None
) -> None:
    jid = JID(local, domain, resource)
    assert JID.parse(str(jid)) == jid


@pytest.mark.parametrize("char", list(" \"&':<>"))
def test_local_part_with_a_character_rfc_7622_forbids_is_invalid(char: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(f"a{char}b@example.org")
