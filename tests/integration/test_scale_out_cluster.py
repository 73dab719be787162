"""The example microblog scaled out over a two-node ejabberd cluster, and
one node stopped while users post.

Three ``twistd empc`` workers serve tweeter.localhost from one PostgreSQL
database: two connected to node A, one to node B. Users are logged in on
both nodes, follow one another by chat and subscribe to one another's
microblog nodes, and post at once, a few rounds. A third of the way in,
node B is stopped: its users lose their sessions, and its worker its link
(it retries B's port, and sends nothing meanwhile), the notifications it
had not settled left in the outbox for A's workers once their lease runs
out.

What must hold afterwards, within a bounded wait: each post is stored at
most once, and each acknowledged one is stored; every follower on node A
(online throughout) gets every stored post of the others at least once,
as the chat message with the id ``tweeter-<post number>`` from the
author's address and as the PubSub event of the item; repeats are
counted, and only of posts that B's worker handled, sent once again.
Node B is started again at the end, for the tests after.

The figures are printed: ``pytest -s`` shows them.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from client import XmppClient, login_all
from servers import EjabberdCluster
from test_scale_out import (
    Posting,
    check_bodies,
    check_stored,
    collect_answers,
    deliver,
    failures_logged,
    follow_one_another,
    stored_posts,
)
from workers import CONNECT_TIMEOUT, TWEETER, Workers, fresh_database

pytestmark = pytest.mark.integration

WORKERS_ON_A = 2  # and one on B
USERS_ON = (3, 2)  # users logged in on node A, on node B
ROUNDS = 12  # of posts, one per user still online each round
PACE = 0.2  # seconds between rounds
STOP_ROUND = ROUNDS // 3
COULD_NOT_CONNECT = re.escape(f"Could not connect {TWEETER}:")


@pytest.fixture
def cluster(ejabberd_cluster: EjabberdCluster) -> Iterator[EjabberdCluster]:
    """The session's cluster, whole; whole again after the test."""
    ejabberd_cluster.start()  # a previous test may have stopped a node
    yield ejabberd_cluster
    ejabberd_cluster.start()


@pytest.fixture
def accounts(cluster: EjabberdCluster) -> list[tuple[str, str]]:
    """Users new to the cluster (nothing another test left reaches them),
    registered on A, known to B through the cluster."""
    node_a = cluster.nodes[0]
    made = []
    for number in range(sum(USERS_ON)):
        name, password = f"clusterposter{number}-{secrets.token_hex(3)}", secrets.token_hex(8)
        node_a.run_tool(node_a.ctl("register", name, node_a.host, password))
        made.append((f"{name}@{node_a.host}", password))
    return made


@pytest.fixture
def database(postgresql_url: str) -> Iterator[tuple[str, sa.Engine]]:
    """The test's own database: its url, and an engine to read it."""
    with fresh_database(postgresql_url) as url:
        engine = sa.create_engine(url.replace("postgresql:", "postgresql+psycopg:"))
        yield url, engine
        engine.dispose()


@pytest.fixture
def workers(
    cluster: EjabberdCluster, database: tuple[str, sa.Engine], tmp_path: Path
) -> Iterator[Workers]:
    """Tweeter workers for node A (none started yet); logs kept in the
    test's directory."""
    started = Workers(cluster.nodes[0], database[0], tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def users(
    cluster: EjabberdCluster, accounts: list[tuple[str, str]]
) -> Iterator[tuple[dict[str, XmppClient], dict[str, XmppClient]]]:
    """The users logged in, available, by bare JID: those on node A, and
    those on node B."""
    on_a, on_b = accounts[: USERS_ON[0]], accounts[USERS_ON[0] :]
    node_a, node_b = cluster.nodes
    with (
        login_all(on_a, node_a.c2s_port, available=True) as clients_a,
        login_all(on_b, node_b.c2s_port, available=True) as clients_b,
    ):
        yield (
            {jid: client for (jid, _), client in zip(on_a, clients_a, strict=True)},
            {jid: client for (jid, _), client in zip(on_b, clients_b, strict=True)},
        )


def test_a_node_stopped_while_users_on_both_post_loses_no_post_for_the_other_node(
    cluster: EjabberdCluster,
    workers: Workers,
    users: tuple[dict[str, XmppClient], dict[str, XmppClient]],
    database: tuple[str, sa.Engine],
) -> None:
    on_a, on_b = users
    everyone = on_a | on_b
    node_b = cluster.nodes[1]
    running = workers.start(WORKERS_ON_A + 1, ports={WORKERS_ON_A: node_b.component_port})
    survivors, worker_b = running[:WORKERS_ON_A], running[WORKERS_ON_A]
    follow_one_another(everyone)

    token = secrets.token_hex(4)
    posting = Posting(token)
    # Stopped in a thread of its own: users on both nodes post on meanwhile,
    # those on B until it is down (their last posts go nowhere).
    stopping = threading.Thread(target=cluster.stop_node, args=(1,))
    began = time.monotonic()
    for number in range(ROUNDS):
        if number == STOP_ROUND:
            stopping.start()
            stop_began = time.monotonic()
        posters = on_a if number > STOP_ROUND and not stopping.is_alive() else everyone
        for user, client in posters.items():
            text = f"{token} {user} #{number}"
            posting.texts[client.send_message(TWEETER, f"post {text}")] = (user, text)
        time.sleep(PACE)
    stopping.join(60)
    assert not stopping.is_alive() and not node_b.running
    stop_took = time.monotonic() - stop_began
    collect_answers(everyone, posting)

    stored = stored_posts(database[1], token)
    acknowledged = posting.acknowledged()
    check_stored(stored, acknowledged)
    delivered = deliver(on_a, token, stored)
    print(
        f"\nscale-out over a cluster, node B stopped at {stop_began - began:.1f} s "
        f"(down {stop_took:.1f} s later): {len(on_a)} users on A and {len(on_b)} on B sent "
        f"{len(posting.texts)} posts; answered: {len(acknowledged)}, not: "
        f"{len(posting.unanswered())}, refused: {len(posting.refused())}; stored: "
        f"{len(stored)}, {len(stored) - len(acknowledged)} of them unacknowledged; "
        f"to the followers on A: {delivered.summary()}"
    )
    assert posting.refused() == []
    # Every post of the users on A is answered: their sessions and workers
    # stayed up.
    unanswered_on_a = [
        (user, text)
        for sent, (user, text) in posting.texts.items()
        if user in on_a and sent not in posting.answers
    ]
    assert unanswered_on_a == []
    delivered.check_complete()
    # Repeats only of what B's worker had not settled when its link went:
    # posts of the users on B (their stanzas stay on their node), once more.
    repeated = {d: count for d, count in delivered.came.items() if count > 1}
    assert all(author in on_b and count == 2 for (_, _, author, _), count in repeated.items())
    check_bodies(on_a, stored)
    # B's worker lives on, trying B's port: it gets it back with the node.
    assert worker_b.returncode is None, worker_b.output()
    worker_b.wait_for(COULD_NOT_CONNECT, CONNECT_TIMEOUT)
    assert failures_logged(survivors) == []
