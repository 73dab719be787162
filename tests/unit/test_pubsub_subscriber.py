"""PubSub, the subscriber's side: subscribe, unsubscribe, retrieve items
(all, max_items, by id, RSM pages), own subscriptions and affiliations."""

from __future__ import annotations

import pytest
from lxml import etree
from test_pubsub_support import (
    ALICE,
    BOB,
    CAROL,
    NS,
    P,
    ask,
    create,
    field,
    fired,
    ok,
    publish_items,
    refusal,
    service,
    subscribe,
)

RSM = "http://jabber.org/protocol/rsm"


def item_ids(answer: etree._Element) -> list[str]:
    return [str(i) for i in answer.xpath("p:pubsub/p:items/p:item/@id", namespaces=NS)]


def test_subscribing_answers_the_subscription() -> None:
    server, _ = service()
    create(server)
    answer = ok(subscribe(server))
    (subscription,) = answer.iterfind(f"{P}pubsub/{P}subscription")
    assert (subscription.get("node"), subscription.get("jid")) == ("news", BOB)
    assert subscription.get("subscription") == "subscribed"


def test_a_bare_jid_may_be_subscribed_by_its_full_jid() -> None:
    server, _ = service()
    create(server)
    answer = ok(subscribe(server, jid="bob@example.org"))
    assert answer.find(f"{P}pubsub/{P}subscription").get("jid") == "bob@example.org"  # type: ignore[union-attr]


def test_subscribing_another_address_is_invalid_jid() -> None:
    server, _ = service()
    create(server)
    assert refusal(subscribe(server, jid=CAROL)) == ("bad-request", "invalid-jid")


def test_subscribing_without_a_jid_is_invalid_jid() -> None:
    server, _ = service()
    create(server)
    answer = ask(server, "set", "<subscribe node='news'/>", BOB)
    assert refusal(answer) == ("bad-request", "invalid-jid")


def test_subscribing_to_no_node_is_item_not_found() -> None:
    server, _ = service()
    assert refusal(subscribe(server, "nothing")) == ("item-not-found", None)


def test_subscribing_twice_answers_the_same_subscription() -> None:
    server, pubsub = service()
    create(server)
    ok(subscribe(server))
    ok(subscribe(server))
    assert len(fired(pubsub.subscribers("news"))) == 1


def test_subscription_options_are_unsupported() -> None:
    server, _ = service()
    create(server)
    answer = ask(server, "set", f"<subscribe node='news' jid='{BOB}'/><options/>", BOB)
    assert refusal(answer) == ("feature-not-implemented", "unsupported")


def test_unsubscribing_ends_the_subscription() -> None:
    server, _ = service()
    create(server)
    ok(subscribe(server))
    ok(ask(server, "set", f"<unsubscribe node='news' jid='{BOB}'/>", BOB))
    mine = ok(ask(server, "get", "<subscriptions/>", BOB))
    assert mine.findall(f"{P}pubsub/{P}subscriptions/{P}subscription") == []


def test_unsubscribing_when_not_subscribed_is_not_subscribed() -> None:
    server, _ = service()
    create(server)
    answer = ask(server, "set", f"<unsubscribe node='news' jid='{BOB}'/>", BOB)
    assert refusal(answer) == ("unexpected-request", "not-subscribed")


def test_unsubscribing_another_is_forbidden() -> None:
    # XEP-0060 §6.2.3.3: forbidden, for one who may not unsubscribe that JID.
    server, _ = service()
    create(server)
    ok(subscribe(server, sender=CAROL))
    answer = ask(server, "set", f"<unsubscribe node='news' jid='{CAROL}'/>", BOB)
    assert refusal(answer) == ("forbidden", None)


def test_unsubscribing_with_a_subid_is_invalid_subid() -> None:
    server, _ = service()
    create(server)
    ok(subscribe(server))
    answer = ask(server, "set", f"<unsubscribe node='news' jid='{BOB}' subid='x'/>", BOB)
    assert refusal(answer) == ("not-acceptable", "invalid-subid")


def test_items_come_newest_first() -> None:
    server, _ = service()
    create(server)
    publish_items(server, 3)
    assert item_ids(ok(ask(server, "get", "<items node='news'/>", BOB))) == ["i2", "i1", "i0"]


def test_max_items_gives_the_most_recent() -> None:
    server, _ = service()
    create(server)
    publish_items(server, 3)
    answer = ok(ask(server, "get", "<items node='news' max_items='2'/>", BOB))
    assert item_ids(answer) == ["i2", "i1"]


def test_items_by_id_give_those_that_exist() -> None:
    server, _ = service()
    create(server)
    publish_items(server, 3)
    answer = ok(ask(server, "get", "<items node='news'><item id='i0'/><item id='gone'/></items>"))
    assert item_ids(answer) == ["i0"]


def test_a_huge_max_items_is_bounded_by_the_page_size() -> None:
    server, _ = service(max_page=2)
    create(server)
    publish_items(server, 3)
    answer = ok(ask(server, "get", f"<items node='news' max_items='{'9' * 5000}'/>", BOB))
    assert item_ids(answer) == ["i2", "i1"]


def test_a_max_items_that_is_no_number_is_bad_request() -> None:
    server, _ = service()
    create(server)
    answer = ask(server, "get", "<items node='news' max_items='-1'/>", BOB)
    assert refusal(answer) == ("bad-request", None)


def test_rsm_pages_walk_the_items_from_the_newest() -> None:
    server, _ = service()
    create(server)
    publish_items(server, 5)
    first = ok(ask(server, "get", f"<items node='news'/><set xmlns='{RSM}'><max>2</max></set>"))
    assert item_ids(first) == ["i4", "i3"]
    assert first.findtext(f"{P}pubsub/{{{RSM}}}set/{{{RSM}}}count") == "5"
    last = first.findtext(f"{P}pubsub/{{{RSM}}}set/{{{RSM}}}last")
    rsm = f"<set xmlns='{RSM}'><max>2</max><after>{last}</after></set>"
    second = ok(ask(server, "get", f"<items node='news'/>{rsm}"))
    assert item_ids(second) == ["i2", "i1"]
    assert second.find(f"{P}pubsub/{{{RSM}}}set/{{{RSM}}}first").get("index") == "2"  # type: ignore[union-attr]


def test_rsm_before_nothing_gives_the_oldest_page() -> None:
    server, _ = service()
    create(server)
    publish_items(server, 5)
    rsm = f"<set xmlns='{RSM}'><max>2</max><before/></set>"
    assert item_ids(ok(ask(server, "get", f"<items node='news'/>{rsm}"))) == ["i1", "i0"]


def test_rsm_after_an_unknown_item_is_item_not_found() -> None:
    server, _ = service()
    create(server)
    rsm = f"<set xmlns='{RSM}'><after>nothing</after></set>"
    assert refusal(ask(server, "get", f"<items node='news'/>{rsm}")) == ("item-not-found", None)


def test_a_truncated_answer_says_so_with_rsm() -> None:
    server, _ = service(max_page=2)
    create(server)
    publish_items(server, 3)
    answer = ok(ask(server, "get", "<items node='news'/>"))
    assert answer.findtext(f"{P}pubsub/{{{RSM}}}set/{{{RSM}}}count") == "3"


def test_max_items_zero_gives_no_items_and_the_count() -> None:
    server, _ = service()
    create(server)
    publish_items(server, 3)
    answer = ok(ask(server, "get", "<items node='news' max_items='0'/>"))
    assert item_ids(answer) == []
    assert answer.findtext(f"{P}pubsub/{{{RSM}}}set/{{{RSM}}}count") == "3"


def test_a_jid_too_long_to_keep_is_not_acceptable() -> None:
    server, _ = service()
    create(server)
    domain = ".".join(["d" * 60] * 8)
    sender = f"{'b' * 1000}@{domain}/{'r' * 1000}"  # 2,489 bytes: a JID, too long to keep
    assert refusal(subscribe(server, sender=sender)) == ("not-acceptable", None)


def test_items_of_a_whitelist_node_are_closed_to_others() -> None:
    server, _ = service()
    create(server, config=field("access_model", "whitelist"))
    assert refusal(ask(server, "get", "<items node='news'/>", BOB)) == (
        "not-allowed",
        "closed-node",
    )


def test_items_of_an_authorize_node_need_a_subscription() -> None:
    server, _ = service()
    create(server, config=field("access_model", "authorize"))
    answer = ask(server, "get", "<items node='news'/>", BOB)
    assert refusal(answer) == ("not-authorized", "not-subscribed")


def test_items_while_pending_are_pending_subscription() -> None:
    server, _ = service()
    create(server, config=field("access_model", "authorize"))
    subscribe(server)
    answer = ask(server, "get", "<items node='news'/>", BOB)
    assert refusal(answer) == ("not-authorized", "pending-subscription")


def test_own_subscriptions_list_every_node() -> None:
    server, _ = service()
    create(server, "a")
    create(server, "b")
    ok(subscribe(server, "a"))
    ok(subscribe(server, "b", jid="bob@example.org"))
    mine = ok(ask(server, "get", "<subscriptions/>", BOB))
    found = [
        (s.get("node"), s.get("jid"))
        for s in mine.iterfind(f"{P}pubsub/{P}subscriptions/{P}subscription")
    ]
    assert found == [("a", BOB), ("b", "bob@example.org")]


def test_own_affiliations_list_the_nodes_owned() -> None:
    server, _ = service()
    create(server, "a")
    mine = ok(ask(server, "get", "<affiliations/>", ALICE))
    found = [
        (a.get("node"), a.get("affiliation"))
        for a in mine.iterfind(f"{P}pubsub/{P}affiliations/{P}affiliation")
    ]
    assert found == [("a", "owner")]


@pytest.mark.parametrize("verb", ["subscriptions", "affiliations"])
def test_own_lists_of_a_hidden_whitelist_node_are_item_not_found(verb: str) -> None:
    server, _ = service()
    create(server, "secret", config=field("access_model", "whitelist"))
    hidden = ask(server, "get", f"<{verb} node='secret'/>", BOB)
    missing = ask(server, "get", f"<{verb} node='nothing'/>", BOB)
    assert refusal(hidden) == refusal(missing) == ("item-not-found", None)
