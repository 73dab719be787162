"""PubSub discovery: the service's features, its nodes, a node's info with
its meta-data form (XEP-0128), a node's items."""

from __future__ import annotations

from lxml import etree
from test_pubsub_support import BOB, create, field, ok, publish, service

from empc.forms import NS_DATA
from empc.pubsub import FEATURES, NS_PUBSUB

INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"
X = f"{{{NS_DATA}}}"


def disco(
    server: object, namespace: str, node: str | None = None, sender: str = BOB
) -> etree._Element:
    attribute = f" node='{node}'" if node else ""
    (answer,) = server.deliver(  # type: ignore[attr-defined]
        f"<iq type='get' from='{sender}'><query xmlns='{namespace}'{attribute}/></iq>"
    )
    return answer


def test_the_service_lists_exactly_its_pubsub_features() -> None:
    server, _ = service()
    answer = ok(disco(server, INFO))
    listed = {f.get("var") for f in answer.iterfind(f".//{{{INFO}}}feature")}
    pubsub = {var for var in listed if var and var.startswith(f"{NS_PUBSUB}#")}
    assert pubsub == set(FEATURES)
    assert NS_PUBSUB in listed
    assert f"{NS_PUBSUB}#collections" not in listed


def test_the_nodes_are_the_services_items() -> None:
    server, _ = service()
    create(server, "a", config=field("title", "Alpha"))
    create(server, "b")
    answer = ok(disco(server, ITEMS))
    found = [
        (i.get("node"), i.get("name")) for i in answer.iterfind(f"{{{ITEMS}}}query/{{{ITEMS}}}item")
    ]
    assert found == [("a", "Alpha"), ("b", None)]


def test_a_whitelist_node_is_hidden_from_others() -> None:
    server, _ = service()
    create(server, "secret", config=field("access_model", "whitelist"))
    answer = ok(disco(server, ITEMS))
    assert answer.findall(f"{{{ITEMS}}}query/{{{ITEMS}}}item") == []
    assert disco(server, INFO, "secret").get("type") == "error"


def test_a_nodes_info_is_a_leaf_with_its_metadata() -> None:
    server, _ = service()
    create(server, config=field("title", "News"))
    answer = ok(disco(server, INFO, "news"))
    identity = answer.find(f"{{{INFO}}}query/{{{INFO}}}identity")
    assert identity is not None
    assert (identity.get("category"), identity.get("type"), identity.get("name")) == (
        "pubsub",
        "leaf",
        "News",
    )
    form = answer.find(f"{{{INFO}}}query/{X}x")
    assert form is not None and form.get("type") == "result"
    values = {f.get("var"): f.findtext(f"{X}value") for f in form.iterfind(f"{X}field")}
    assert values["FORM_TYPE"] == f"{NS_PUBSUB}#metadata"
    assert values["pubsub#owner"] == "alice@example.org"
    assert values["pubsub#access_model"] == "open"
    assert values["pubsub#num_subscribers"] == "0"


def test_an_unknown_node_is_item_not_found() -> None:
    server, _ = service()
    answer = disco(server, INFO, "nothing")
    assert answer.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None


def test_a_nodes_items_are_its_item_ids() -> None:
    server, _ = service()
    create(server)
    ok(publish(server, item_id="a"))
    ok(publish(server, item_id="b"))
    answer = ok(disco(server, ITEMS, "news"))
    found = [
        (i.get("jid"), i.get("name")) for i in answer.iterfind(f"{{{ITEMS}}}query/{{{ITEMS}}}item")
    ]
    assert found == [(server.domain, "b"), (server.domain, "a")]
