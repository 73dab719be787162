"""PubSub, the publisher's side: publish (ids given or generated, a known
id replacing its item), publish-options preconditions, retract, the
publish model, and the node's kind (persistent, payloads)."""

from __future__ import annotations

from test_pubsub_support import (
    ALICE,
    BOB,
    ENTRY,
    NS,
    P,
    ask,
    create,
    field,
    ok,
    publish,
    publish_items,
    refusal,
    service,
    subscribe,
    unsupported_feature,
)

from empc.pubsub import NS_PUBSUB
from empc.testing import FakeServer


def ids(server: FakeServer, sender: str = ALICE) -> list[str]:
    answer = ok(ask(server, "get", "<items node='news'/>", sender))
    return [str(i) for i in answer.xpath("p:pubsub/p:items/p:item/@id", namespaces=NS)]


def options(*fields: str) -> str:
    return (
        "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
        f"<value>{NS_PUBSUB}#publish-options</value></field>{''.join(fields)}</x></publish-options>"
    )


def test_publishing_answers_the_item_id_given() -> None:
    server, _ = service()
    create(server)
    answer = ok(publish(server, item_id="first"))
    assert answer.find(f"{P}pubsub/{P}publish/{P}item").get("id") == "first"  # type: ignore[union-attr]


def test_publishing_without_an_id_gets_a_generated_one() -> None:
    server, _ = service()
    create(server)
    answer = ok(publish(server))
    generated = answer.find(f"{P}pubsub/{P}publish/{P}item").get("id")  # type: ignore[union-attr]
    assert generated and ids(server) == [generated]


def test_a_known_id_replaces_that_item_and_makes_it_the_newest() -> None:
    server, _ = service()
    create(server)
    ok(publish(server, item_id="a"))
    ok(publish(server, item_id="b"))
    ok(publish(server, item_id="a", payload="<changed xmlns='urn:x'/>"))
    assert ids(server) == ["a", "b"]
    answer = ok(ask(server, "get", "<items node='news'><item id='a'/></items>"))
    assert answer.find(f"{P}pubsub/{P}items/{P}item/{{urn:x}}changed") is not None


def test_a_node_keeps_at_most_max_items() -> None:
    server, _ = service()
    create(server, config=field("max_items", "2"))
    publish_items(server, 3)
    assert ids(server) == ["i2", "i1"]


def test_a_node_that_keeps_no_items_keeps_the_last() -> None:
    server, _ = service()
    create(server, config=field("persist_items", "0"))
    ok(publish(server, item_id="a"))
    ok(publish(server, item_id="b"))
    assert ids(server) == ["b"]


def test_publishing_to_no_node_is_item_not_found() -> None:
    server, _ = service()
    assert refusal(publish(server, "nothing")) == ("item-not-found", None)


def test_only_publishers_publish_by_default() -> None:
    server, _ = service()
    create(server)
    assert refusal(publish(server, sender=BOB)) == ("forbidden", None)


def test_a_publisher_affiliation_may_publish() -> None:
    server, _ = service()
    create(server)
    affiliation = "<affiliation jid='bob@example.org' affiliation='publisher'/>"
    ok(ask(server, "set", f"<affiliations node='news'>{affiliation}</affiliations>", owner=True))
    ok(publish(server, sender=BOB))


def test_the_open_publish_model_lets_anyone_publish() -> None:
    server, _ = service()
    create(server, config=field("publish_model", "open"))
    ok(publish(server, sender=BOB))


def test_the_subscribers_publish_model_lets_subscribers_publish() -> None:
    server, _ = service()
    create(server, config=field("publish_model", "subscribers"))
    assert refusal(publish(server, sender=BOB)) == ("forbidden", None)
    ok(subscribe(server))
    ok(publish(server, sender=BOB))


def test_an_open_publisher_may_not_overwrite_anothers_item() -> None:
    server, _ = service()
    create(server, config=field("publish_model", "open"))
    ok(publish(server, item_id="mine", sender="carol@example.net/x"))
    assert refusal(publish(server, item_id="mine", sender=BOB)) == ("forbidden", None)


def test_two_payloads_are_invalid_payload() -> None:
    server, _ = service()
    create(server)
    answer = publish(server, payload=ENTRY + ENTRY)
    assert refusal(answer) == ("bad-request", "invalid-payload")


def test_two_items_are_invalid_payload() -> None:
    server, _ = service()
    create(server)
    body = f"<publish node='news'><item>{ENTRY}</item><item>{ENTRY}</item></publish>"
    assert refusal(ask(server, "set", body)) == ("bad-request", "invalid-payload")


def test_no_item_on_a_persistent_node_is_item_required() -> None:
    server, _ = service()
    create(server)
    assert refusal(ask(server, "set", "<publish node='news'/>")) == ("bad-request", "item-required")


def test_no_payload_on_a_payload_node_is_payload_required() -> None:
    server, _ = service()
    create(server)
    assert refusal(publish(server, payload="")) == ("bad-request", "payload-required")


def test_an_item_on_a_transient_notification_node_is_item_forbidden() -> None:
    server, _ = service()
    create(server, config=field("persist_items", "0") + field("deliver_payloads", "0"))
    assert refusal(publish(server)) == ("bad-request", "item-forbidden")
    ok(ask(server, "set", "<publish node='news'/>"))


def test_a_payload_over_the_limit_is_payload_too_big() -> None:
    server, _ = service(max_item_size=100)
    create(server)
    big = f"<big xmlns='urn:x'>{'x' * 100}</big>"
    assert refusal(publish(server, payload=big)) == ("not-acceptable", "payload-too-big")


def test_publish_options_that_hold_publish() -> None:
    server, _ = service()
    create(server)
    body = f"<publish node='news'><item>{ENTRY}</item></publish>"
    ok(ask(server, "set", body + options(field("access_model", "open"), field("max_items", "10"))))


def test_publish_options_that_do_not_hold_are_precondition_not_met() -> None:
    server, _ = service()
    create(server)
    body = f"<publish node='news'><item>{ENTRY}</item></publish>"
    answer = ask(server, "set", body + options(field("access_model", "whitelist")))
    assert refusal(answer) == ("conflict", "precondition-not-met")
    assert ids(server) == []


def test_an_unknown_publish_option_is_precondition_not_met() -> None:
    server, _ = service()
    create(server)
    body = f"<publish node='news'><item>{ENTRY}</item></publish>"
    answer = ask(server, "set", body + options(field("roster_groups_allowed", "x")))
    assert refusal(answer) == ("conflict", "precondition-not-met")


def test_publish_options_of_another_form_type_are_invalid_options() -> None:
    server, _ = service()
    create(server)
    body = f"<publish node='news'><item>{ENTRY}</item></publish>"
    form = "<publish-options><x xmlns='jabber:x:data' type='submit'/></publish-options>"
    assert refusal(ask(server, "set", body + form)) == ("bad-request", "invalid-options")


def test_retracting_removes_the_item() -> None:
    server, _ = service()
    create(server)
    ok(publish(server, item_id="a"))
    ok(ask(server, "set", "<retract node='news'><item id='a'/></retract>"))
    assert ids(server) == []


def test_retracting_an_unknown_item_is_item_not_found() -> None:
    server, _ = service()
    create(server)
    answer = ask(server, "set", "<retract node='news'><item id='a'/></retract>")
    assert refusal(answer) == ("item-not-found", None)


def test_retracting_without_an_item_is_item_required() -> None:
    server, _ = service()
    create(server)
    answer = ask(server, "set", "<retract node='news'/>")
    assert refusal(answer) == ("bad-request", "item-required")


def test_retracting_without_a_node_is_nodeid_required() -> None:
    server, _ = service()
    answer = ask(server, "set", "<retract><item id='a'/></retract>")
    assert refusal(answer) == ("bad-request", "nodeid-required")


def test_retracting_anothers_item_is_forbidden() -> None:
    server, _ = service()
    create(server, config=field("publish_model", "open"))
    ok(publish(server, item_id="a"))
    answer = ask(server, "set", "<retract node='news'><item id='a'/></retract>", BOB)
    assert refusal(answer) == ("forbidden", None)


def test_an_open_publisher_retracts_its_own_item() -> None:
    server, _ = service()
    create(server, config=field("publish_model", "open"))
    ok(publish(server, item_id="a", sender=BOB))
    ok(ask(server, "set", "<retract node='news'><item id='a'/></retract>", BOB))


def test_retracting_from_a_node_that_keeps_no_items_is_unsupported() -> None:
    server, _ = service()
    create(server, config=field("persist_items", "0"))
    ok(publish(server, item_id="a"))
    answer = ask(server, "set", "<retract node='news'><item id='a'/></retract>")
    assert unsupported_feature(answer) == "persistent-items"
