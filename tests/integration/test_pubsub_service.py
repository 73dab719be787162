"""The PubSub service (XEP-0060) of ``empc.pubsub``, through Prosody and
ejabberd, by real clients using slixmpp's own XEP-0060 and XEP-0059
plugins, on SQLite and on PostgreSQL.

One component runs per (server, database) for the whole module: on SQLite
it serves echo.localhost from a file in its work directory, on PostgreSQL
second.localhost from the session's PostgreSQL server. alice owns the
nodes, bob subscribes (available, as an IM client is, so that the server
hands him headline notifications), carol is a stranger to every node.
Each test makes nodes of its own, so tests share the component.

Ordering is what shows that nothing came: the component's messages to one
user travel one route in order, so once a later notification has arrived,
an earlier one that was due would have arrived before it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from client import (
    FORM_NODE_CONFIG,
    Clients,
    PubSubAnswer,
    PubSubEvent,
    Received,
    XmppClient,
    login_all,
    pubsub_event,
)
from component import ComponentProcess, ComponentStarter
from postgres import PostgresServer
from servers import SERVER_CLASSES, XmppServer

from empc.pubsub import NS_PUBSUB

pytestmark = pytest.mark.integration

DOMAINS = {"sqlite": "echo.localhost", "postgresql": "second.localhost"}
CONNECT_TIMEOUT = 20.0
BOUNCE_LIMIT = 2
MAX_PAGE = 4
STORAGE_TIMEOUT = 3.0  # seconds the component waits for PostgreSQL
# Twisted's log lines of unhandled failures.
LOGGED_FAILURE = r"Traceback|Unhandled"
ENTRY = "<entry xmlns='http://www.w3.org/2005/Atom'><title>{}</title></entry>"
NODE_CONFIG_ACCESS = "pubsub#access_model"

COMBINATIONS = [(server, database) for server in sorted(SERVER_CLASSES) for database in DOMAINS]
POSTGRESQL = [combination for combination in COMBINATIONS if combination[1] == "postgresql"]


def entry(title: str) -> str:
    return ENTRY.format(title)


def title_of(payload: str | None) -> str:
    assert payload is not None
    found = re.search(r"<(?:\w+:)?title>(.*)</(?:\w+:)?title>", payload)
    assert found, payload
    return found.group(1)


def new_node(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- the component, once per (server, database) --------------------------------------


@dataclass
class Service:
    server: XmppServer
    database: str
    process: ComponentProcess
    domain: str


@pytest.fixture(scope="module", params=COMBINATIONS, ids="-".join)
def service_running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """``twistd empc`` with ``empc.pubsub:PubSub`` on the server and
    database of the param; its log is left in its work directory."""
    server_name, database = request.param
    server: XmppServer = request.getfixturevalue(f"{server_name}_server")
    server.start()
    workdir = tmp_path_factory.mktemp(f"pubsub-{server_name}-{database}")
    storage: dict[str, Any] = {"url": f"sqlite:///{workdir / 'pubsub.sqlite3'}"}
    if database == "postgresql":
        postgresql: PostgresServer = request.getfixturevalue("postgresql_server")
        postgresql.start()
        storage = {"url": postgresql.url, "timeout": STORAGE_TIMEOUT}
    domain = DOMAINS[database]
    pubsub = {
        "class": "empc.pubsub:PubSub",
        "config": {"bounce_limit": BOUNCE_LIMIT, "max_page": MAX_PAGE},
    }
    starter = ComponentStarter(workdir)
    try:
        process = starter(server, domain=domain, handlers=[pubsub], storage=storage)
        process.wait_for(re.escape(f"Component {domain} connected"), CONNECT_TIMEOUT)
        yield Service(server, database, process, domain)
    finally:
        starter.stop_all()
        for started in starter.started:
            log = "\n".join([*started.earlier_lines, *started.lines])
            (workdir / "empc.log").write_text(log + "\n")


@pytest.fixture
def service(service_running: Service) -> Iterator[Service]:
    """The running service; the test fails if the component logs a
    traceback meanwhile (a restart starts its log afresh, and its count)."""
    process = service_running.process
    assert process.returncode is None, f"the component has exited:\n{process.output()}"
    earlier = process.count(LOGGED_FAILURE)
    yield service_running
    assert process.count(LOGGED_FAILURE) == earlier, process.output()


@pytest.fixture
def users(service: Service) -> Iterator[Clients]:
    """alice, bob (available) and carol, logged in."""
    server = service.server
    accounts = [server.account(name) for name in ("alice", "bob", "carol")]
    with (
        login_all(accounts[:1] + accounts[2:], server.c2s_port) as others,
        login_all(accounts[1:2], server.c2s_port, available=True) as bob,
    ):
        yield Clients([others[0], bob[0], others[1]])


# -- helpers ---------------------------------------------------------------------------


def ok(answer: PubSubAnswer) -> PubSubAnswer:
    assert answer.reply.type == "result", answer.reply.xml
    return answer


def refused(answer: PubSubAnswer) -> tuple[str | None, str | None]:
    """The error's condition and its XEP-0060 condition."""
    assert answer.reply.type == "error", answer.reply.xml
    return answer.reply.error_condition, answer.pubsub_condition


def create(client: XmppClient, service: Service, prefix: str, **config: str) -> str:
    """A new node of ``client``'s, with the ``pubsub#`` options ``config``."""
    node = new_node(prefix)
    form = {f"pubsub#{key}": value for key, value in config.items()} or None
    answer = ok(client.create_node(service.domain, node, form))
    assert answer.node in (None, node), answer.reply.xml
    return node


def event_from(service: Service, node: str, kind: str | None = None) -> Any:
    """A predicate: a message carrying an event of ``node`` (of ``kind``)."""

    def match(received: Received) -> bool:
        event = pubsub_event(received)
        return event is not None and event.node == node and kind in (None, event.kind)

    return match


def next_event(client: XmppClient, service: Service, node: str) -> tuple[Received, PubSubEvent]:
    """The next notification about ``node``; nothing else about it came before."""
    received = client.wait_for_message(service.domain, event_from(service, node))
    event = pubsub_event(received)
    assert event is not None
    return received, event


def no_events(client: XmppClient, service: Service, node: str) -> None:
    """Nothing about ``node`` came: a notification sent after it (on a node
    of its own) arrives first."""
    marker = create(client, service, "marker")
    ok(client.subscribe_node(service.domain, marker))
    ok(client.publish(service.domain, marker, entry("marker")))
    client.wait_for_message(service.domain, event_from(service, marker))
    assert not client.take(service.domain, event_from(service, node))


# -- create and configure -----------------------------------------------------------


def test_a_named_node_is_created_with_its_configuration(service: Service, users: Clients) -> None:
    alice = users[0]
    node = create(alice, service, "news", title="The news", max_items="3")
    fields = ok(alice.node_config(service.domain, node)).fields
    assert fields["FORM_TYPE"].values == [FORM_NODE_CONFIG]
    assert fields["pubsub#title"].values == ["The news"]
    assert fields["pubsub#max_items"].values == ["3"]
    assert fields[NODE_CONFIG_ACCESS].values == ["open"]
    assert NS_PUBSUB in alice.disco_info(service.domain).features
    assert refused(alice.create_node(service.domain, node)) == ("conflict", None)


def test_an_instant_node_gets_a_name_from_the_service(service: Service, users: Clients) -> None:
    alice = users[0]
    answer = ok(alice.create_node(service.domain))
    assert answer.node, answer.reply.xml
    ok(alice.publish(service.domain, answer.node, entry("first")))
    assert ok(alice.items(service.domain, answer.node)).item_ids != []


def test_configuring_changes_access_notification_type_payloads_and_max_items(
    service: Service, users: Clients
) -> None:
    alice, bob, _carol = users
    node = create(alice, service, "config")
    ok(bob.subscribe_node(service.domain, node))
    configured = {
        "pubsub#notification_type": "normal",
        "pubsub#deliver_payloads": "0",
        "pubsub#max_items": "2",
    }
    ok(alice.configure_node(service.domain, node, configured))
    fields = ok(alice.node_config(service.domain, node)).fields
    assert fields["pubsub#notification_type"].values == ["normal"]
    assert fields["pubsub#deliver_payloads"].values in (["0"], ["false"])
    assert fields["pubsub#max_items"].values == ["2"]
    _, config_event = next_event(bob, service, node)
    assert config_event.kind == "configuration"

    for title in ("one", "two", "three"):
        ok(alice.publish(service.domain, node, entry(title), item_id=title))
    for title in ("one", "two", "three"):
        received, event = next_event(bob, service, node)
        assert received.type in ("", "normal"), received.xml
        assert (event.kind, event.item_ids, event.payloads) == ("items", [title], [])
    # max_items 2: the oldest went.
    assert ok(alice.items(service.domain, node)).item_ids == ["three", "two"]

    ok(alice.configure_node(service.domain, node, {NODE_CONFIG_ACCESS: "whitelist"}))
    assert ok(alice.node_config(service.domain, node)).fields[NODE_CONFIG_ACCESS].values == [
        "whitelist"
    ]


# -- publish, notifications --------------------------------------------------------------


def test_publishing_with_and_without_an_id_and_replacing_one(
    service: Service, users: Clients
) -> None:
    alice = users[0]
    node = create(alice, service, "publish")
    named = ok(alice.publish(service.domain, node, entry("first"), item_id="first"))
    assert named.item_id == "first"
    unnamed = ok(alice.publish(service.domain, node, entry("second")))
    assert unnamed.item_id and unnamed.item_id != "first", unnamed.reply.xml
    ok(alice.publish(service.domain, node, entry("first, again"), item_id="first"))

    items = ok(alice.items(service.domain, node)).items
    # Newest first; the replaced item moved to the front and holds the new payload.
    assert [item_id for item_id, _ in items] == ["first", unnamed.item_id]
    assert [title_of(payload) for _, payload in items] == ["first, again", "second"]
    by_id = ok(alice.items(service.domain, node, item_ids=[unnamed.item_id])).items
    assert [(item_id, title_of(payload)) for item_id, payload in by_id] == [
        (unnamed.item_id, "second")
    ]


def test_a_subscriber_hears_of_publish_retract_purge_and_delete(
    service: Service, users: Clients
) -> None:
    alice, bob, _carol = users
    node = create(alice, service, "events")
    subscribed = ok(bob.subscribe_node(service.domain, node))
    assert subscribed.subscription == "subscribed", subscribed.reply.xml

    ok(alice.publish(service.domain, node, entry("hello"), item_id="hello"))
    received, event = next_event(bob, service, node)
    assert received.type == "headline", received.xml
    assert (event.kind, event.item_ids) == ("items", ["hello"])
    assert [title_of(payload) for payload in event.payloads] == ["hello"]

    ok(alice.publish(service.domain, node, entry("bye"), item_id="bye"))
    assert next_event(bob, service, node)[1].item_ids == ["bye"]
    ok(alice.retract(service.domain, node, "hello"))
    retracted = next_event(bob, service, node)[1]
    assert (retracted.kind, retracted.item_ids) == ("retract", ["hello"])
    assert ok(alice.items(service.domain, node)).item_ids == ["bye"]

    ok(alice.purge(service.domain, node))
    assert next_event(bob, service, node)[1].kind == "purge"
    assert ok(alice.items(service.domain, node)).item_ids == []

    ok(alice.delete_node(service.domain, node))
    assert next_event(bob, service, node)[1].kind == "delete"
    assert refused(alice.items(service.domain, node)) == ("item-not-found", None)

    # A node made again under the name starts empty, without the old subscribers.
    ok(alice.create_node(service.domain, node))
    ok(alice.publish(service.domain, node, entry("anew"), item_id="anew"))
    assert ok(alice.items(service.domain, node)).item_ids == ["anew"]
    assert ok(alice.node_subscriptions(service.domain, node)).subscriptions == []
    no_events(bob, service, node)


def test_an_unsubscribed_user_hears_no_more(service: Service, users: Clients) -> None:
    alice, bob, _carol = users
    node = create(alice, service, "leave")
    ok(bob.subscribe_node(service.domain, node))
    ok(bob.unsubscribe_node(service.domain, node))
    ok(alice.publish(service.domain, node, entry("unheard")))
    no_events(bob, service, node)
    assert refused(bob.unsubscribe_node(service.domain, node)) == (
        "unexpected-request",
        "not-subscribed",
    )


def test_concurrent_publishers_all_get_their_items_stored(service: Service, users: Clients) -> None:
    alice, bob, _carol = users
    node = create(alice, service, "busy", publish_model="open", max_items="100")
    ok(bob.subscribe_node(service.domain, node))
    rounds = 10

    def publish_all(client: XmppClient) -> list[PubSubAnswer]:
        name = client.jid.partition("@")[0]
        return [
            client.publish(service.domain, node, entry(f"{name}{n}"), item_id=f"{name}{n}")
            for n in range(rounds)
        ]

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = [a for done in pool.map(publish_all, users) for a in done]
    assert [a.reply.type for a in answers] == ["result"] * len(answers), [
        a.reply.xml for a in answers if a.reply.type != "result"
    ]
    pages = alice.item_pages(service.domain, node, page_size=MAX_PAGE)
    stored = [item_id for page in pages for item_id in ok(page).item_ids]
    assert sorted(stored) == sorted(
        f"{who}{n}" for who in ("alice", "bob", "carol") for n in range(rounds)
    )
    heard = [next_event(bob, service, node)[1].item_ids[0] for _ in range(3 * rounds)]
    # Each item is notified once, and each publisher's in the order published;
    # between publishers, the order of two commits and of their notifications
    # may differ (each commit hands its notifications to the reactor thread).
    assert sorted(heard) == sorted(stored)
    for who in ("alice", "bob", "carol"):
        assert [item for item in heard if item.startswith(who)] == [
            f"{who}{n}" for n in range(rounds)
        ]


# -- items and paging -------------------------------------------------------------------


def test_items_by_max_items_and_by_rsm_pages(service: Service, users: Clients) -> None:
    alice, bob, _carol = users
    node = create(alice, service, "pages", max_items="20")
    titles = [f"item{number}" for number in range(1, 10)]
    for title in titles:
        ok(alice.publish(service.domain, node, entry(title), item_id=title))
    newest_first = titles[::-1]

    assert ok(bob.items(service.domain, node, max_items=3)).item_ids == newest_first[:3]
    # Without a limit, the service's page size, saying there are more.
    first_page = ok(bob.items(service.domain, node))
    assert first_page.item_ids == newest_first[:MAX_PAGE]
    assert first_page.count == len(titles)

    pages = bob.item_pages(service.domain, node, page_size=4)
    assert [page.reply.type for page in pages] == ["result"] * 3, pages[-1].reply.xml
    assert [page.item_ids for page in pages] == [
        newest_first[0:4],
        newest_first[4:8],
        newest_first[8:9],
    ]
    assert [(page.first, page.last) for page in pages] == [
        (ids[0], ids[-1]) for ids in (newest_first[0:4], newest_first[4:8], newest_first[8:9])
    ]
    assert {page.count for page in pages} == {len(titles)}
    assert [title_of(payload) for page in pages for _, payload in page.items] == newest_first

    # From the end: <before/> is the last page, then each before the first of the last.
    backwards = bob.item_pages(service.domain, node, page_size=4, reverse=True)
    assert [page.item_ids for page in backwards] == [
        newest_first[5:9],
        newest_first[1:5],
        newest_first[0:1],
    ], [page.reply.xml for page in backwards]


# -- refusals -------------------------------------------------------------------------------


def test_a_stranger_is_refused_with_the_xep_0060_errors(service: Service, users: Clients) -> None:
    alice, _bob, carol = users
    node = create(alice, service, "private", access_model="whitelist")
    ok(alice.publish(service.domain, node, entry("secret"), item_id="secret"))
    assert refused(carol.items(service.domain, node)) == ("not-allowed", "closed-node")
    assert refused(carol.subscribe_node(service.domain, node)) == ("not-allowed", "closed-node")
    assert refused(carol.publish(service.domain, node, entry("mine"))) == ("forbidden", None)
    assert refused(carol.retract(service.domain, node, "secret")) == ("forbidden", None)
    assert refused(carol.purge(service.domain, node)) == ("forbidden", None)
    assert refused(carol.delete_node(service.domain, node)) == ("forbidden", None)
    assert refused(carol.node_config(service.domain, node)) == ("forbidden", None)
    assert ok(alice.items(service.domain, node)).item_ids == ["secret"]


# -- a subscriber that went away ----------------------------------------------------------


def test_a_subscriber_whose_notifications_bounce_is_dropped(
    service: Service, users: Clients
) -> None:
    alice = users[0]
    node = create(alice, service, "bounce", notification_type="normal")
    ghost = "ghost@localhost"  # an account that does not exist (any more)
    ok(alice.set_node_subscriptions(service.domain, node, [(ghost, "subscribed")]))
    assert (ghost, "subscribed") in ok(alice.node_subscriptions(service.domain, node)).subscriptions
    for number in range(BOUNCE_LIMIT):
        ok(alice.publish(service.domain, node, entry(f"bounced {number}")))
    service.process.wait_for(
        re.escape(f"dropped the subscription of {ghost} to {node}"), CONNECT_TIMEOUT
    )
    assert ok(alice.node_subscriptions(service.domain, node)).subscriptions == []


# -- durability -------------------------------------------------------------------------------


def test_a_published_item_survives_sigkill_of_the_component(
    service: Service, users: Clients
) -> None:
    alice, bob, _carol = users
    node = create(alice, service, "durable")
    ok(bob.subscribe_node(service.domain, node))
    ok(alice.publish(service.domain, node, entry("kept"), item_id="kept"))
    process = service.process
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(10) == -signal.SIGKILL
    process.restart()
    process.wait_for(re.escape(f"Component {service.domain} connected"), CONNECT_TIMEOUT)
    items = ok(alice.items(service.domain, node)).items
    assert [(item_id, title_of(payload)) for item_id, payload in items] == [("kept", "kept")]
    # The subscription was kept too.
    ok(alice.publish(service.domain, node, entry("later"), item_id="later"))
    heard = [next_event(bob, service, node)[1].item_ids for _ in range(2)]
    assert heard[-1] == ["later"], heard


@pytest.mark.parametrize("service_running", POSTGRESQL, indirect=True, ids="-".join)
def test_a_postgresql_restart_gets_wait_errors_then_service_again(
    service: Service, users: Clients, postgresql_server: PostgresServer
) -> None:
    alice, bob, _carol = users
    node = create(alice, service, "outage")
    ok(bob.subscribe_node(service.domain, node))
    ok(alice.publish(service.domain, node, entry("before"), item_id="before"))

    # Requests run one after another while the server stops: each is
    # answered, a result or a wait error, never left hanging.
    answers: list[PubSubAnswer] = []
    stop = threading.Event()

    def ask_on() -> None:
        while not stop.is_set() and len(answers) < 200:
            answers.append(alice.items(service.domain, node, timeout=3 * STORAGE_TIMEOUT))

    asker = threading.Thread(target=ask_on, daemon=True)
    asker.start()
    try:
        time.sleep(0.3)
        postgresql_server.stop()
        started = time.monotonic()
        during = alice.publish(service.domain, node, entry("during"), timeout=3 * STORAGE_TIMEOUT)
        assert time.monotonic() - started < 2 * STORAGE_TIMEOUT + 2
        assert (during.reply.error_type, during.reply.error_condition) == (
            "wait",
            "resource-constraint",
        ), during.reply.xml
        stop.set()
        asker.join(4 * STORAGE_TIMEOUT)
        assert not asker.is_alive()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            postgresql_server.start()
    outcomes = {(a.reply.type, a.reply.error_type, a.reply.error_condition) for a in answers}
    assert outcomes <= {("result", None, None), ("error", "wait", "resource-constraint")}, answers
    assert ("error", "wait", "resource-constraint") in outcomes

    ok(alice.publish(service.domain, node, entry("after"), item_id="after"))
    assert ok(alice.items(service.domain, node)).item_ids == ["after", "before"]
    assert next_event(bob, service, node)[1].item_ids == ["before"]
    assert next_event(bob, service, node)[1].item_ids == ["after"]
    assert service.process.returncode is None
