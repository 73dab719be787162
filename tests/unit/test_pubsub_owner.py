"""PubSub, the owner's side: create (instant nodes too), configure, the
default configuration, delete, purge, affiliations, subscriptions, and
approving pending subscriptions."""

from __future__ import annotations

import pytest
from lxml import etree
from test_pubsub_support import (
    ALICE,
    BOB,
    CAROL,
    OWNER,
    P,
    ask,
    create,
    events,
    field,
    fired,
    ok,
    publish,
    publish_items,
    refusal,
    service,
    subscribe,
    unsupported_feature,
)

from empc import JID
from empc.forms import NS_DATA
from empc.pubsub import NS_PUBSUB, NodeConfig

X = f"{{{NS_DATA}}}"


def config_values(answer: etree._Element) -> dict[str, str | None]:
    x = answer.find(f"{OWNER}pubsub/*/{X}x")
    assert x is not None, etree.tostring(answer)
    return {f.get("var") or "": f.findtext(f"{X}value") for f in x.iterchildren(f"{X}field")}


def submit(*fields: str, type: str = "submit") -> str:
    form_type = f"<field var='FORM_TYPE'><value>{NS_PUBSUB}#node_config</value></field>"
    x = f"<x xmlns='jabber:x:data' type='{type}'>{form_type}{''.join(fields)}</x>"
    return f"<configure node='news'>{x}</configure>"


def test_creating_a_node_makes_the_creator_its_owner() -> None:
    server, pubsub = service()
    create(server)
    assert fired(pubsub.affiliations("news")) == {"alice@example.org": "owner"}


def test_creating_an_existing_node_is_conflict() -> None:
    server, _ = service()
    create(server)
    assert refusal(ask(server, "set", "<create node='news'/>")) == ("conflict", None)


def test_an_instant_node_gets_a_name() -> None:
    server, pubsub = service()
    answer = ok(ask(server, "set", "<create/>"))
    name = answer.find(f"{P}pubsub/{P}create").get("node")  # type: ignore[union-attr]
    assert name and [node.name for node in fired(pubsub.nodes())] == [name]


def test_only_creators_create_when_the_service_says_so() -> None:
    server, _ = service(creators=["alice@example.org"])
    assert refusal(ask(server, "set", "<create node='x'/>", BOB)) == ("forbidden", None)
    create(server, "x")


def test_create_and_configure_applies_the_form() -> None:
    server, pubsub = service()
    create(server, config=field("max_items", "3") + field("title", "News"))
    config = fired(pubsub.node_config("news"))
    assert (config.max_items, config.title) == (3, "News")


def test_create_with_a_configuration_over_the_limits_is_not_acceptable() -> None:
    server, _ = service(max_items=5)
    form = (
        "<configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
        f"<value>{NS_PUBSUB}#node_config</value></field>{field('max_items', '6')}</x></configure>"
    )
    answer = ask(server, "set", f"<create node='news'/>{form}")
    assert refusal(answer) == ("not-acceptable", None)


def test_the_configuration_form_shows_the_nodes_values() -> None:
    server, _ = service()
    create(server, config=field("access_model", "authorize"))
    values = config_values(ok(ask(server, "get", "<configure node='news'/>", owner=True)))
    assert values["pubsub#access_model"] == "authorize"
    assert values["pubsub#notification_type"] == "headline"
    assert values["FORM_TYPE"] == f"{NS_PUBSUB}#node_config"


def test_the_configuration_is_for_owners_only() -> None:
    server, _ = service()
    create(server)
    answer = ask(server, "get", "<configure node='news'/>", BOB, owner=True)
    assert refusal(answer) == ("forbidden", None)


def test_configuring_without_a_node_is_nodeid_required() -> None:
    server, _ = service()
    answer = ask(server, "get", "<configure/>", owner=True)
    assert refusal(answer) == ("bad-request", "nodeid-required")


def test_configuring_changes_only_the_options_submitted() -> None:
    server, pubsub = service()
    create(server, config=field("title", "News"))
    ok(ask(server, "set", submit(field("max_items", "max")), owner=True))
    config = fired(pubsub.node_config("news"))
    assert (config.max_items, config.title) == (1000, "News")


def test_a_canceled_configuration_changes_nothing() -> None:
    server, pubsub = service()
    create(server)
    ok(ask(server, "set", submit(field("max_items", "3"), type="cancel"), owner=True))
    assert fired(pubsub.node_config("news")).max_items == 10


@pytest.mark.parametrize(
    ("node", "refused"), [("news", ("forbidden", None)), ("nothing", ("item-not-found", None))]
)
def test_a_canceled_configuration_is_an_owner_s_like_the_form(
    node: str, refused: tuple[str, None]
) -> None:
    server, _ = service()
    create(server)
    body = f"<configure node='{node}'><x xmlns='{NS_DATA}' type='cancel'/></configure>"
    assert refusal(ask(server, "set", body, CAROL, owner=True)) == refused


def test_an_unknown_option_value_is_not_acceptable() -> None:
    server, _ = service()
    create(server)
    answer = ask(server, "set", submit(field("access_model", "roster")), owner=True)
    assert refusal(answer) == ("not-acceptable", None)


def test_lowering_max_items_drops_the_oldest() -> None:
    server, _ = service()
    create(server)
    publish_items(server, 3)
    ok(ask(server, "set", submit(field("max_items", "1")), owner=True))
    answer = ok(ask(server, "get", "<items node='news'/>"))
    assert [i.get("id") for i in answer.iterfind(f"{P}pubsub/{P}items/{P}item")] == ["i2"]


def test_the_default_configuration_is_the_services() -> None:
    server, _ = service(node_defaults={"max_items": 20, "access_model": "whitelist"})
    values = config_values(ok(ask(server, "get", "<default/>", owner=True)))
    assert (values["pubsub#max_items"], values["pubsub#access_model"]) == ("20", "whitelist")


def test_deleting_a_node_removes_it() -> None:
    server, pubsub = service()
    create(server)
    ok(ask(server, "set", "<delete node='news'/>", owner=True))
    assert fired(pubsub.nodes()) == []


def test_deleting_is_for_owners_only() -> None:
    server, _ = service()
    create(server)
    assert refusal(ask(server, "set", "<delete node='news'/>", BOB, owner=True)) == (
        "forbidden",
        None,
    )


def test_deleting_no_node_is_item_not_found() -> None:
    server, _ = service()
    answer = ask(server, "set", "<delete node='news'/>", owner=True)
    assert refusal(answer) == ("item-not-found", None)


def test_purging_removes_every_item() -> None:
    server, pubsub = service()
    create(server)
    ok(publish(server))
    ok(ask(server, "set", "<purge node='news'/>", owner=True))
    assert fired(pubsub.items("news")).items == []


def test_purging_a_node_that_keeps_no_items_is_unsupported() -> None:
    server, _ = service()
    create(server, config=field("persist_items", "0"))
    answer = ask(server, "set", "<purge node='news'/>", owner=True)
    assert unsupported_feature(answer) == "persistent-items"


def test_affiliations_are_listed_and_set() -> None:
    server, _ = service()
    create(server)
    entries = (
        "<affiliation jid='bob@example.org' affiliation='publisher'/>"
        "<affiliation jid='carol@example.net/home' affiliation='member'/>"
    )
    ok(ask(server, "set", f"<affiliations node='news'>{entries}</affiliations>", owner=True))
    answer = ok(ask(server, "get", "<affiliations node='news'/>", owner=True))
    listed = [
        (a.get("jid"), a.get("affiliation"))
        for a in answer.iterfind(f"{OWNER}pubsub/{OWNER}affiliations/{OWNER}affiliation")
    ]
    assert listed == [
        ("alice@example.org", "owner"),
        ("bob@example.org", "publisher"),
        ("carol@example.net", "member"),
    ]


def test_the_last_owner_cannot_leave() -> None:
    server, _ = service()
    create(server)
    entry = "<affiliation jid='alice@example.org' affiliation='none'/>"
    answer = ask(server, "set", f"<affiliations node='news'>{entry}</affiliations>", owner=True)
    assert refusal(answer) == ("not-acceptable", None)


def test_an_unknown_affiliation_is_not_acceptable() -> None:
    server, _ = service()
    create(server)
    entry = "<affiliation jid='bob@example.org' affiliation='king'/>"
    answer = ask(server, "set", f"<affiliations node='news'>{entry}</affiliations>", owner=True)
    assert refusal(answer) == ("not-acceptable", None)


def test_an_outcast_loses_its_subscription_and_may_not_subscribe() -> None:
    server, pubsub = service()
    create(server)
    ok(subscribe(server))
    entry = "<affiliation jid='bob@example.org' affiliation='outcast'/>"
    ok(ask(server, "set", f"<affiliations node='news'>{entry}</affiliations>", owner=True))
    assert fired(pubsub.subscribers("news")) == []
    assert refusal(subscribe(server)) == ("forbidden", None)
    assert refusal(ask(server, "get", "<items node='news'/>", BOB)) == ("forbidden", None)


def test_subscriptions_are_listed_and_set() -> None:
    server, _ = service()
    create(server)
    ok(subscribe(server))
    entries = (
        f"<subscription jid='{BOB}' subscription='none'/>"
        f"<subscription jid='{CAROL}' subscription='subscribed'/>"
    )
    ok(ask(server, "set", f"<subscriptions node='news'>{entries}</subscriptions>", owner=True))
    answer = ok(ask(server, "get", "<subscriptions node='news'/>", owner=True))
    listed = [
        (s.get("jid"), s.get("subscription"))
        for s in answer.iterfind(f"{OWNER}pubsub/{OWNER}subscriptions/{OWNER}subscription")
    ]
    assert listed == [(CAROL, "subscribed")]


def test_subscriptions_are_for_owners_only() -> None:
    server, _ = service()
    create(server)
    answer = ask(server, "get", "<subscriptions node='news'/>", BOB, owner=True)
    assert refusal(answer) == ("forbidden", None)


def test_a_whitelist_node_admits_members_only() -> None:
    server, _ = service()
    create(server, config=field("access_model", "whitelist"))
    assert refusal(subscribe(server)) == ("not-allowed", "closed-node")
    entry = "<affiliation jid='bob@example.org' affiliation='member'/>"
    ok(ask(server, "set", f"<affiliations node='news'>{entry}</affiliations>", owner=True))
    ok(subscribe(server))


def test_moving_to_a_whitelist_ends_the_subscriptions_of_others() -> None:
    server, pubsub = service()
    create(server)
    ok(subscribe(server))
    ok(ask(server, "set", submit(field("access_model", "whitelist")), owner=True))
    assert fired(pubsub.subscribers("news")) == []


def test_an_authorize_node_asks_the_owner_who_approves() -> None:
    server, pubsub = service()
    create(server, config=field("access_model", "authorize"))
    sent = server.deliver(
        f"<iq type='set' from='{BOB}'><pubsub xmlns='{NS_PUBSUB}'>"
        f"<subscribe node='news' jid='{BOB}'/></pubsub></iq>"
    )
    answer = next(s for s in sent if etree.QName(s).localname == "iq")
    assert answer.find(f"{P}pubsub/{P}subscription").get("subscription") == "pending"  # type: ignore[union-attr]
    (request,) = [s for s in sent if s.get("to") == "alice@example.org"]
    form = request.find(f"{X}x")
    assert form is not None and form.get("type") == "form"
    approval = (
        f"<message from='{ALICE}'><x xmlns='jabber:x:data' type='submit'>"
        f"<field var='FORM_TYPE'><value>{NS_PUBSUB}#subscribe_authorization</value></field>"
        "<field var='pubsub#node'><value>news</value></field>"
        f"<field var='pubsub#subscriber_jid'><value>{BOB}</value></field>"
        "<field var='pubsub#allow'><value>true</value></field></x></message>"
    )
    told = events(server.deliver(approval), to=BOB)
    assert told[0][0].get("subscription") == "subscribed"
    assert [s.state for s in fired(pubsub.subscribers("news"))] == ["subscribed"]


def test_an_approval_from_another_is_answered_forbidden() -> None:
    server, _ = service()
    create(server, config=field("access_model", "authorize"))
    subscribe(server)
    approval = (
        f"<message from='{CAROL}'><x xmlns='jabber:x:data' type='submit'>"
        f"<field var='FORM_TYPE'><value>{NS_PUBSUB}#subscribe_authorization</value></field>"
        "<field var='pubsub#node'><value>news</value></field>"
        f"<field var='pubsub#subscriber_jid'><value>{BOB}</value></field>"
        "<field var='pubsub#allow'><value>true</value></field></x></message>"
    )
    (answer,) = server.deliver(approval)
    assert refusal(answer) == ("forbidden", None)


def test_the_application_creates_and_configures_nodes() -> None:
    _, pubsub = service()
    assert fired(pubsub.create_node("feed", config=NodeConfig(title="Feed"))) == "feed"
    fired(pubsub.configure_node("feed", NodeConfig(title="Feed", max_items=5)))
    assert fired(pubsub.node_config("feed")).max_items == 5
    assert fired(pubsub.affiliations("feed")) == {}


def test_the_application_creates_a_node_for_an_owner_who_may_not_create_nodes() -> None:
    _, pubsub = service(creators=[])
    alice = JID.parse("alice@example.org/phone")
    assert not pubsub.model.may_create(alice)
    fired(pubsub.create_node("alice-feed", owner=alice))
    assert fired(pubsub.affiliations("alice-feed")) == {"alice@example.org": "owner"}
