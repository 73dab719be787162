"""PubSub's answers to bad input from anyone: defined errors with
XEP-0060's condition, never internal-server-error, never a traceback."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pubsub_support import (
    ALICE,
    BOB,
    ask,
    create,
    publish,
    refusal,
    service,
    unsupported_feature,
)
from twisted.logger import capturedLogs

from empc.pubsub import PubSub

# What may reach the service in an attribute: XML's characters, tabs and
# line ends included (which the wire format allows).
XML_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff").filter(
        lambda c: c in "\t\n\r" or ord(c) >= 0x20
    ),
    max_size=300,
)
SHARED = service()


def attribute(text: str) -> str:
    return quoteattr(text)


def test_a_5000_digit_item_id_is_not_acceptable() -> None:
    server, _ = service()
    create(server)
    assert refusal(publish(server, item_id="9" * 5000)) == ("not-acceptable", None)


def test_a_node_name_with_a_control_character_is_not_acceptable() -> None:
    server, _ = service()
    answer = ask(server, "set", "<create node='a&#9;b'/>")
    assert refusal(answer) == ("not-acceptable", None)


def test_a_node_name_over_the_limit_is_not_acceptable() -> None:
    server, _ = service(max_node_length=10)
    assert refusal(ask(server, "set", f"<create node='{'n' * 11}'/>")) == ("not-acceptable", None)


def test_an_empty_pubsub_is_bad_request() -> None:
    server, _ = service()
    assert refusal(ask(server, "get", "")) == ("bad-request", None)


def test_subscription_options_are_unsupported() -> None:
    server, _ = service()
    answer = ask(server, "get", "<options node='news' jid='a@b'/>")
    assert unsupported_feature(answer) == "subscription-options"


def test_an_unknown_request_is_unsupported() -> None:
    server, _ = service()
    answer = ask(server, "set", "<collections/>", owner=True)
    assert unsupported_feature(answer) == "collections"


def test_a_request_of_the_wrong_type_is_bad_request() -> None:
    server, _ = service()
    assert refusal(ask(server, "get", "<publish node='news'/>")) == ("bad-request", None)


def test_an_unknown_config_key_stops_the_handler() -> None:
    try:
        PubSub({"node_defaults": {"colour": "red"}})
    except ValueError as error:
        assert "colour" in str(error)
    else:
        raise AssertionError("accepted")


def test_a_bad_node_default_stops_the_handler() -> None:
    try:
        PubSub({"node_defaults": {"access_model": "roster"}})
    except ValueError as error:
        assert "access_model" in str(error)
    else:
        raise AssertionError("accepted")


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(node=XML_TEXT, item=XML_TEXT, max_items=XML_TEXT)
def test_any_node_name_item_id_or_max_items_gets_a_defined_answer(
    node: str, item: str, max_items: str
) -> None:
    server, _ = SHARED
    with capturedLogs() as logged:
        answers = [
            ask(server, "set", f"<create node={attribute(node)}/>", ALICE),
            ask(
                server,
                "set",
                f"<publish node={attribute(node)}><item id={attribute(item)}>"
                "<p xmlns='urn:x'/></item></publish>",
            ),
            ask(server, "get", f"<items node={attribute(node)} max_items={attribute(max_items)}/>"),
            ask(
                server, "get", f"<items node={attribute(node)}><item id={attribute(item)}/></items>"
            ),
            ask(server, "set", f"<subscribe node={attribute(node)} jid='{BOB}'/>", BOB),
            ask(server, "set", f"<delete node={attribute(node)}/>", owner=True),
        ]
    for answer in answers:
        if answer.get("type") == "error":
            assert refusal(answer)[0] != "internal-server-error"
    assert not any(event.get("log_failure") for event in logged)


def test_items_of_a_node_name_over_the_limit_are_not_acceptable() -> None:
    server, _ = service()
    answer = ask(server, "get", f"<items node='{'x' * 5000}'/>")
    assert refusal(answer) == ("not-acceptable", None)
