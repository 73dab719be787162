"""What a two-node ejabberd 23.01 cluster does with users and component
connections, pinned as facts for running several empc processes behind it.

By default a stanza for a component domain goes to a connection on the
node it enters (the node of the sender's session), at random among that
node's connections, and to the other node's only when its own has none.
With ``domain_balancing`` (here ``bare_source`` over 2 slots) the node no
longer counts: the sender's bare JID picks the slot, on either node, and
the share of a slot whose connection is gone is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from client import Received, XmppClient, login
from component import ComponentProcess, StartComponent
from sample_handlers import NS_WHOAMI
from servers import EjabberdCluster, EjabberdClusterNode

pytestmark = pytest.mark.integration

DOMAIN = "echo.localhost"
WHOAMI = f"<whoami xmlns='{NS_WHOAMI}'/>"
HANDLERS = ["sample_handlers:WhoAmI"]
CONNECTED = re.escape(f"Component {DOMAIN} connected")
COULD_NOT_CONNECT = re.escape(f"Could not connect {DOMAIN}:")
CONNECT_TIMEOUT = 20.0
# Random choice: one process answering all 20 has odds of 2 in a million.
ROUNDS = 20
# Long enough for a component's answer on loopback; a dropped stanza costs it.
SILENCE = 3.0


@pytest.fixture
def cluster(ejabberd_cluster: EjabberdCluster) -> EjabberdCluster:
    ejabberd_cluster.start()  # a previous test may have stopped a node
    return ejabberd_cluster


def _serve(start_component: StartComponent, node: EjabberdClusterNode) -> ComponentProcess:
    """An empc process for DOMAIN connected to ``node``, once it is."""
    process = start_component(node, handlers=HANDLERS)
    process.wait_for(CONNECTED, CONNECT_TIMEOUT)
    return process


def _process_on_each_node(
    cluster: EjabberdCluster, start_component: StartComponent
) -> tuple[ComponentProcess, ComponentProcess]:
    """An empc process for DOMAIN connected to node A, and one to node B."""
    node_a, node_b = cluster.nodes
    return _serve(start_component, node_a), _serve(start_component, node_b)


def _user(cluster: EjabberdCluster, name: str, node: EjabberdClusterNode) -> XmppClient:
    jid, password = cluster.account(name)
    return login(jid, password, node.c2s_port)


def _whoami(client: XmppClient, timeout: float = 10.0) -> int:
    """The PID of the empc process that answered."""
    reply = client.iq(DOMAIN, WHOAMI, timeout=timeout)
    assert reply.type == "result", reply.xml
    answer = reply.element.find(f"{{{NS_WHOAMI}}}whoami")
    assert answer is not None, reply.xml
    return int(answer.get("pid", "0"))


def _answered_by(client: XmppClient) -> set[int]:
    return {_whoami(client) for _ in range(ROUNDS)}


def _port_of(line: str) -> int:
    """The server port in empc's "connected to" line."""
    found = re.search(r"port=(\d+)", line)
    assert found is not None, line
    return int(found.group(1))


# -- the cluster itself ------------------------------------------------------


def test_each_node_lists_both_nodes_as_its_cluster(cluster: EjabberdCluster) -> None:
    names = {node.node for node in cluster.nodes}
    assert len(names) == 2
    assert cluster.running_nodes(0) == names
    assert cluster.running_nodes(1) == names


def test_a_user_on_each_node_exchange_messages(cluster: EjabberdCluster) -> None:
    node_a, node_b = cluster.nodes
    alice_jid, alice_password = cluster.account("alice")
    bob_jid, bob_password = cluster.account("bob")
    with (
        XmppClient(alice_jid, alice_password, node_a.c2s_port, available=True) as alice,
        XmppClient(bob_jid, bob_password, node_b.c2s_port, available=True) as bob,
    ):
        # To the full JIDs, which the server's echo of each initial presence
        # gives: a message to a bare JID may find that the other node does
        # not know the session's priority yet, and go to offline storage.
        alice_full = _own_presence(alice).sender
        bob_full = _own_presence(bob).sender
        alice.send_message(bob_full, "from A")
        assert bob.wait_for_message(alice_jid).body == "from A"
        bob.send_message(alice_full, "from B")
        assert alice.wait_for_message(bob_jid).body == "from B"


def _own_presence(client: XmppClient) -> Received:
    """The server's echo of the client's initial presence."""
    return client.wait_for(client.jid, kind="presence")


# -- the default routing of a component domain ------------------------------


def test_a_process_connected_to_node_a_serves_a_user_on_node_b(
    cluster: EjabberdCluster, start_component: StartComponent
) -> None:
    node_a, node_b = cluster.nodes
    process = _serve(start_component, node_a)
    with _user(cluster, "bob", node_b) as bob:
        assert bob.ping(DOMAIN).type == "result"
        assert _whoami(bob) == process.pid


def test_with_a_process_on_each_node_each_user_is_served_by_the_one_on_their_node(
    cluster: EjabberdCluster, start_component: StartComponent
) -> None:
    node_a, node_b = cluster.nodes
    on_a, on_b = _process_on_each_node(cluster, start_component)
    with _user(cluster, "alice", node_a) as alice, _user(cluster, "bob", node_b) as bob:
        assert _answered_by(alice) == {on_a.pid}
        assert _answered_by(bob) == {on_b.pid}


def test_with_no_process_on_their_node_a_user_is_served_at_random_by_the_other_nodes(
    cluster: EjabberdCluster, start_component: StartComponent
) -> None:
    node_a, node_b = cluster.nodes
    first, second = _serve(start_component, node_a), _serve(start_component, node_a)
    with _user(cluster, "bob", node_b) as bob:
        assert _answered_by(bob) == {first.pid, second.pid}


def test_while_node_b_is_down_node_a_serves_and_the_process_of_b_waits_for_b(
    cluster: EjabberdCluster, start_component: StartComponent
) -> None:
    node_a, node_b = cluster.nodes
    on_a, on_b = _process_on_each_node(cluster, start_component)
    cluster.stop_node(1)
    assert cluster.running_nodes(0) == {node_a.node}
    # It keeps trying B's port (its only endpoint), not A's.
    on_b.wait_for(COULD_NOT_CONNECT, CONNECT_TIMEOUT)
    with _user(cluster, "alice", node_a) as alice:
        assert _answered_by(alice) == {on_a.pid}
    cluster.start_node(1)
    assert _port_of(on_b.wait_for(CONNECTED, CONNECT_TIMEOUT, count=2)) == node_b.component_port
    with _user(cluster, "bob", node_b) as bob:
        assert _answered_by(bob) == {on_b.pid}
    assert on_a.count(CONNECTED) == 1, on_a.output()


# -- domain_balancing: bare_source over 2 slots ------------------------------


@dataclass(frozen=True)
class Balanced:
    """A process on each node of the balanced cluster, and for every user
    the PIDs that answered them, logged in on either node."""

    cluster: EjabberdCluster
    on_a: ComponentProcess
    on_b: ComponentProcess
    served: dict[str, set[int]]

    def user_served_by(self, process: ComponentProcess) -> str:
        return next(name for name, pids in self.served.items() if pids == {process.pid})


@pytest.fixture
def balanced(
    balanced_ejabberd_cluster: EjabberdCluster, start_component: StartComponent
) -> Balanced:
    cluster = balanced_ejabberd_cluster
    cluster.start()  # a previous test may have stopped a node
    on_a, on_b = _process_on_each_node(cluster, start_component)
    served: dict[str, set[int]] = {}
    for jid, _password in cluster.users:
        name = jid.partition("@")[0]
        for node in cluster.nodes:
            with _user(cluster, name, node) as client:
                served.setdefault(name, set()).update(_answered_by(client))
    return Balanced(cluster, on_a, on_b, served)


def test_bare_source_balancing_keeps_each_user_on_one_process_whichever_node_they_use(
    balanced: Balanced,
) -> None:
    served = balanced.served
    assert all(len(pids) == 1 for pids in served.values()), served
    # Some users are served across the nodes: the node no longer counts.
    assert set().union(*served.values()) == {balanced.on_a.pid, balanced.on_b.pid}, served


def test_bare_source_balancing_drops_the_share_of_a_stopped_node_until_its_process_is_back(
    balanced: Balanced,
) -> None:
    cluster, on_a, on_b = balanced.cluster, balanced.on_a, balanced.on_b
    node_a = cluster.nodes[0]
    cluster.stop_node(1)
    with _user(cluster, balanced.user_served_by(on_a), node_a) as user_of_a:
        assert _whoami(user_of_a) == on_a.pid
    with _user(cluster, balanced.user_served_by(on_b), node_a) as user_of_b:
        # Nothing comes back, not even an error: the slot is kept, empty.
        with pytest.raises(TimeoutError):
            user_of_b.iq(DOMAIN, WHOAMI, timeout=SILENCE)
        cluster.start_node(1)
        on_b.wait_for(CONNECTED, CONNECT_TIMEOUT, count=2)
        assert _whoami(user_of_b) == on_b.pid
