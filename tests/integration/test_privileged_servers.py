"""What Prosody and ejabberd really do for a privileged entity (XEP-0356)
and a delegated namespace (XEP-0355): regression tests of the servers'
behaviour, seen by a bare XEP-0114 component on a plain socket.

The component is ``privileged.localhost``, which servers.py grants roster
both, message outgoing, presence roster (and on Prosody the IQ permissions of
``PRIVILEGED_IQ_NAMESPACES``) and the delegation of ``DELEGATED_NAMESPACE``.
Prosody 0.12 speaks ``urn:xmpp:privilege:2`` / ``urn:xmpp:delegation:2``
(prosody-modules), ejabberd 23.01 ``urn:xmpp:privilege:1`` /
``urn:xmpp:delegation:1``.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from client import IqReply, XmppClient, login
from lxml import etree
from servers import DELEGATED_NAMESPACE, LOOPBACK, XmppServer

pytestmark = pytest.mark.integration

DOMAIN = "privileged.localhost"
ACCEPT_NS = "jabber:component:accept"
STREAM_NS = "http://etherx.jabber.org/streams"
CLIENT_NS = "jabber:client"
FORWARD_NS = "urn:xmpp:forward:0"
ROSTER_NS = "jabber:iq:roster"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
PING_NS = "urn:xmpp:ping"
TIMEOUT = 5.0
# Each server's namespaces: (privilege, delegation).
NAMESPACES = {
    "prosody": ("urn:xmpp:privilege:2", "urn:xmpp:delegation:2"),
    "ejabberd": ("urn:xmpp:privilege:1", "urn:xmpp:delegation:1"),
}

Element = etree._Element
Match = Callable[[Element], bool]


class RawComponent:
    """A minimal XEP-0114 component: a blocking loopback socket, an lxml pull
    parser, and every stanza received kept in ``received`` (the transcript)."""

    def __init__(self, port: int, domain: str, secret: str) -> None:
        self.domain = domain
        self.received: list[Element] = []
        self._unread: list[Element] = []
        self._parser = etree.XMLPullParser(events=("start", "end"))
        self._depth = 0
        self._stream_id: str | None = None
        self._sock = socket.create_connection((LOOPBACK, port), timeout=TIMEOUT)
        self._send(f"<stream:stream xmlns='{ACCEPT_NS}' xmlns:stream='{STREAM_NS}' to='{domain}'>")
        deadline = time.monotonic() + TIMEOUT
        while self._stream_id is None:
            self._read(deadline)
        digest = hashlib.sha1((self._stream_id + secret).encode()).hexdigest()
        self._send(f"<handshake>{digest}</handshake>")
        handshake = self.expect(lambda e: e.tag == f"{{{ACCEPT_NS}}}handshake")
        self.received.remove(handshake)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # the server closed first
            self._send("</stream:stream>")
        self._sock.close()

    def send(self, xml: str) -> None:
        """Send one stanza, written without namespace (the stream's default)."""
        self._send(xml)

    def expect(self, match: Match, timeout: float = TIMEOUT) -> Element:
        """The first stanza not yet taken that ``match`` accepts, waiting up
        to ``timeout``; AssertionError (with the transcript) if none comes."""
        deadline = time.monotonic() + timeout
        while True:
            for stanza in self._unread:
                if match(stanza):
                    self._unread.remove(stanza)
                    return stanza
            if not self._read(deadline):
                raise AssertionError(f"no matching stanza; received:\n{self.transcript()}")

    def transcript(self) -> str:
        return "\n".join(etree.tostring(s, encoding="unicode") for s in self.received)

    def _send(self, xml: str) -> None:
        self._sock.sendall(xml.encode())

    def _read(self, deadline: float) -> bool:
        """Feed what arrives before ``deadline`` to the parser; False if
        nothing did (time out or stream closed)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            return False
        if not data:
            return False
        self._parser.feed(data)
        for event, element in self._parser.read_events():
            # Only start and end events were asked for: always an element.
            assert isinstance(element, etree._Element)
            if event == "start":
                self._depth += 1
                if self._depth == 1:
                    self._stream_id = element.get("id")
            else:
                self._depth -= 1
                if self._depth == 1:
                    # A stanza of its own: detached from the stream's root.
                    stanza = etree.fromstring(etree.tostring(element))
                    stream = element.getparent()
                    assert stream is not None
                    stream.remove(element)
                    self.received.append(stanza)
                    self._unread.append(stanza)
        return True


def tag(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def is_iq(kind: str) -> Match:
    return lambda e: e.tag == tag(ACCEPT_NS, "iq") and e.get("type") == kind


def is_answer(iq_id: str) -> Match:
    return lambda e: e.get("id") == iq_id and e.get("type") in ("result", "error")


def advertises(ns: str, name: str) -> Match:
    return lambda e: e.tag == tag(ACCEPT_NS, "message") and e.find(tag(ns, name)) is not None


def forwarded_iq(stanza: Element, wrapper: str) -> Element:
    """The client IQ in ``stanza``'s ``wrapper``/forwarded; AssertionError if none."""
    inner = stanza.find(f"{wrapper}/{tag(FORWARD_NS, 'forwarded')}/{tag(CLIENT_NS, 'iq')}")
    assert inner is not None, etree.tostring(stanza)
    return inner


def condition(stanza: Element) -> str | None:
    """The defined condition of a stanza error, None if it is no error."""
    for child in stanza.iterfind(f"{tag(ACCEPT_NS, 'error')}/*"):
        if child.tag != tag(STANZAS_NS, "text"):
            return etree.QName(child).localname
    return None


class Link:
    """The privileged component linked to ``server``: the advertisements it
    got, and the namespaces that server speaks."""

    def __init__(self, server: XmppServer, component: RawComponent) -> None:
        self.server = server
        self.component = component
        self.privilege_ns, self.delegation_ns = NAMESPACES[server.name]
        self.host = server.host
        self.privilege = component.expect(advertises(self.privilege_ns, "privilege"))
        # Disco nesting (XEP-0355 §7.2): ejabberd asks for the main (server)
        # and the bare (account) node at every connection, and delegates each
        # kind only once it has answered; Prosody asks at the first
        # connection to the server only.
        if server.name == "ejabberd":
            for _ in ("main", "bare"):
                self.answer_disco(component.expect(is_iq("get")))
            self.delegations = [
                component.expect(advertises(self.delegation_ns, "delegation")) for _ in range(2)
            ]
        else:
            self.delegations = [component.expect(advertises(self.delegation_ns, "delegation"))]

    def answer_disco(self, query: Element) -> None:
        node = query[0].get("node")
        self.component.send(
            f"<iq type='result' id='{query.get('id')}' from='{DOMAIN}' to='{query.get('from')}'>"
            f"<query xmlns='{DISCO_INFO_NS}' node='{node}'/></iq>"
        )

    def request(self, xml: str) -> Element:
        """Send the IQ ``xml`` (with id ``q``) and return its answer."""
        self.component.send(xml)
        return self.component.expect(is_answer("q"))


def _linked(server: XmppServer) -> Iterator[Link]:
    component = RawComponent(server.component_port, DOMAIN, server.component(DOMAIN).secret)
    try:
        yield Link(server, component)
    finally:
        component.close()


@pytest.fixture
def link(xmpp_server: XmppServer) -> Iterator[Link]:
    yield from _linked(xmpp_server)


@pytest.fixture
def prosody_link(prosody_server: XmppServer) -> Iterator[Link]:
    """The link on Prosody only: ejabberd 23.01 (urn:xmpp:privilege:1) has
    no IQ permission."""
    prosody_server.start()  # running, even if a previous test stopped it
    yield from _linked(prosody_server)


def test_privilege_advertisement_comes_from_the_server_after_the_handshake(link: Link) -> None:
    perms = {
        perm.get("access"): perm.get("type")
        for perm in link.privilege.iterfind(f"{tag(link.privilege_ns, 'privilege')}/*")
    }
    assert (link.privilege.get("from"), link.privilege.get("to")) == (link.host, DOMAIN)
    expected: dict[str | None, str | None] = {
        "roster": "both",
        "message": "outgoing",
        "presence": "roster",
    }
    if link.server.name == "prosody":
        expected["iq"] = None  # its namespaces are children of <perm access='iq'/>
    assert perms == expected


def test_prosody_nests_the_second_iq_namespace_in_the_first(prosody_link: Link) -> None:
    link = prosody_link
    namespaces = list(link.privilege.iter(tag(link.privilege_ns, "namespace")))
    assert {(n.get("ns"), n.get("type")) for n in namespaces} == {
        ("urn:xmpp:ping", "get"),
        (DELEGATED_NAMESPACE, "both"),
    }
    # mod_privilege forgets :up() after each <namespace/>: the second one
    # (in Lua's table order) is a child of the first.
    nested = [n for n in namespaces if getattr(n.getparent(), "tag", None) == n.tag]
    assert len(nested) == 1


def test_delegation_advertisement_names_the_namespace(link: Link) -> None:
    for message in link.delegations:
        assert (message.get("from"), message.get("to")) == (link.host, DOMAIN)
        delegated = message.findall(f"{tag(link.delegation_ns, 'delegation')}/*")
        assert [(d.tag, d.get("namespace")) for d in delegated] == [
            (tag(link.delegation_ns, "delegated"), DELEGATED_NAMESPACE)
        ]


def test_roster_get_on_a_users_bare_jid_is_answered_by_the_user(link: Link) -> None:
    alice, _ = link.server.account("alice")
    answer = link.request(
        f"<iq type='get' id='q' from='{DOMAIN}' to='{alice}'><query xmlns='{ROSTER_NS}'/></iq>"
    )
    assert (answer.get("type"), answer.get("from")) == ("result", alice)
    assert answer.find(tag(ROSTER_NS, "query")) is not None


def test_roster_set_works_on_prosody_and_fails_on_ejabberd(link: Link) -> None:
    carol, _ = link.server.account("carol")
    bob, _ = link.server.account("bob")
    answer = link.request(
        f"<iq type='set' id='q' from='{DOMAIN}' to='{carol}'><query xmlns='{ROSTER_NS}'>"
        f"<item jid='{bob}' name='Bob'><group>Friends</group></item></query></iq>"
    )
    if link.server.name == "ejabberd":
        # ejabberd 23.01's mod_roster looks up its options for the sender's
        # domain (the component's): module_not_loaded.
        assert (answer.get("type"), condition(answer)) == ("error", "internal-server-error")
        return
    assert answer.get("type") == "result"
    roster = link.request(
        f"<iq type='get' id='q' from='{DOMAIN}' to='{carol}'><query xmlns='{ROSTER_NS}'/></iq>"
    )
    items = roster.findall(f"{tag(ROSTER_NS, 'query')}/{tag(ROSTER_NS, 'item')}")
    # Other tests of the session may have put others in carol's roster.
    seen = [(i.get("jid"), i.get("name"), i.findtext(tag(ROSTER_NS, "group"))) for i in items]
    assert (bob, "Bob", "Friends") in seen


def _on_behalf(link: Link, sender: str, to: str, body: str) -> str:
    return (
        f"<message from='{DOMAIN}' to='{link.host}' id='q'>"
        f"<privilege xmlns='{link.privilege_ns}'><forwarded xmlns='{FORWARD_NS}'>"
        f"<message xmlns='{CLIENT_NS}' from='{sender}' to='{to}' type='chat' id='inner'>"
        f"<body>{body}</body></message></forwarded></privilege></message>"
    )


def test_message_on_behalf_of_a_user_reaches_the_other_from_the_users_bare_jid(
    link: Link,
) -> None:
    alice, _ = link.server.account("alice")
    bob, bob_password = link.server.account("bob")
    with login(bob, bob_password, link.server.c2s_port, available=True) as client:
        link.component.send(_on_behalf(link, alice, bob, "sent for alice"))
        received = client.wait_for_message(
            sender=alice, predicate=lambda m: m.body == "sent for alice"
        )
    assert (received.sender, received.id) == (alice, "inner")


def test_message_on_behalf_of_a_full_jid_is_forbidden(link: Link) -> None:
    alice, _ = link.server.account("alice")
    bob, _ = link.server.account("bob")
    link.component.send(_on_behalf(link, f"{alice}/phone", bob, "nope"))
    error = link.component.expect(lambda e: e.get("id") == "q")
    assert (error.get("type"), error.get("from"), condition(error)) == (
        "error",
        link.host,
        "forbidden",
    )


def _delegated(link: Link, client: XmppClient, to: str) -> tuple[Element, Element, Future[IqReply]]:
    """Have ``client`` send an IQ get in the delegated namespace to ``to``;
    the wrapping IQ the component gets, the client's IQ in it, and the
    client's answer to come."""
    pool = ThreadPoolExecutor(max_workers=1)
    answer = pool.submit(client.iq, to, f"<query xmlns='{DELEGATED_NAMESPACE}'/>", "get", TIMEOUT)
    pool.shutdown(wait=False)
    wrapper = link.component.expect(is_iq("set"))
    inner = forwarded_iq(wrapper, tag(link.delegation_ns, "delegation"))
    return wrapper, inner, answer


def _wrapped_answer(link: Link, wrapper: Element, inner: Element, answerer: str) -> str:
    """The result the component sends back: the client's IQ answered
    (from ``answerer``), wrapped as the server's IQ's result."""
    return (
        f"<iq type='result' id='{wrapper.get('id')}' from='{DOMAIN}' to='{wrapper.get('from')}'>"
        f"<delegation xmlns='{link.delegation_ns}'><forwarded xmlns='{FORWARD_NS}'>"
        f"<iq xmlns='{CLIENT_NS}' type='result' id='{inner.get('id')}' from='{answerer}' "
        f"to='{inner.get('from')}'><query xmlns='{DELEGATED_NAMESPACE}'><answer>42</answer>"
        f"</query></iq></forwarded></delegation></iq>"
    )


@pytest.mark.parametrize("addressee", ["own bare JID", "server"])
def test_delegated_iq_comes_wrapped_from_the_server_and_its_wrapped_answer_reaches_the_client(
    link: Link, addressee: str
) -> None:
    bob, bob_password = link.server.account("bob")
    to = bob if addressee == "own bare JID" else link.host
    with login(bob, bob_password, link.server.c2s_port) as client:
        wrapper, inner, answer = _delegated(link, client, to)
        assert (wrapper.get("from"), wrapper.get("to")) == (link.host, DOMAIN)
        assert inner.get("from", "").startswith(f"{bob}/")
        assert inner.get("type") == "get"
        # Prosody drops a 'to' that is the sender's own bare JID.
        dropped = link.server.name == "prosody" and to == bob
        assert inner.get("to") == (None if dropped else to)
        link.component.send(_wrapped_answer(link, wrapper, inner, to))
        reply = answer.result(TIMEOUT)
    assert reply.type == "result"
    assert reply.element.get("from") == to
    assert (
        reply.element.findtext(f"{{{DELEGATED_NAMESPACE}}}query/{{{DELEGATED_NAMESPACE}}}answer")
        == "42"
    )


def test_a_client_can_send_the_component_a_forged_delegation_iq_from_its_own_jid(
    link: Link,
) -> None:
    alice, _ = link.server.account("alice")
    bob, bob_password = link.server.account("bob")
    forged = (
        f"<delegation xmlns='{link.delegation_ns}'><forwarded xmlns='{FORWARD_NS}'>"
        f"<iq xmlns='{CLIENT_NS}' type='get' id='forged' from='{alice}/x' to='{alice}'>"
        f"<query xmlns='{DELEGATED_NAMESPACE}'/></iq></forwarded></delegation>"
    )
    with login(bob, bob_password, link.server.c2s_port) as client:
        pool = ThreadPoolExecutor(max_workers=1)
        answer = pool.submit(client.iq, DOMAIN, forged, "set", TIMEOUT)
        pool.shutdown(wait=False)
        received = link.component.expect(is_iq("set"))
        # Only the outer 'from' tells it apart: the client's full JID, not the server.
        assert received.get("from", "").startswith(f"{bob}/")
        link.component.send(
            f"<iq type='error' id='{received.get('id')}' from='{DOMAIN}' "
            f"to='{received.get('from')}'><error type='cancel'>"
            f"<forbidden xmlns='{STANZAS_NS}'/></error></iq>"
        )
        assert answer.result(TIMEOUT).error_condition == "forbidden"


def _iq_on_behalf_of_alice(link: Link, payload: str) -> Element:
    """Ask the server to send alice's IQ get of ``payload`` to itself; its answer."""
    alice, _ = link.server.account("alice")
    return link.request(
        f"<iq type='get' id='q' from='{DOMAIN}' to='{alice}'>"
        f"<privileged_iq xmlns='{link.privilege_ns}'>"
        f"<iq xmlns='{CLIENT_NS}' type='get' id='inner' to='{link.host}'>{payload}</iq>"
        f"</privileged_iq></iq>"
    )


def test_prosody_sends_a_permitted_iq_on_behalf_of_a_user_and_wraps_its_answer(
    prosody_link: Link,
) -> None:
    answer = _iq_on_behalf_of_alice(prosody_link, f"<ping xmlns='{PING_NS}'/>")
    alice, host = answer.get("from"), prosody_link.host
    assert (answer.get("type"), alice) == ("result", prosody_link.server.account("alice")[0])
    inner = forwarded_iq(answer, tag(prosody_link.privilege_ns, "privilege"))
    assert (inner.get("type"), inner.get("id"), inner.get("from"), inner.get("to")) == (
        "result",
        "inner",
        host,
        alice,
    )


def test_prosody_forbids_an_iq_on_behalf_of_a_user_outside_the_permitted_namespaces(
    prosody_link: Link,
) -> None:
    answer = _iq_on_behalf_of_alice(prosody_link, f"<query xmlns='{DISCO_INFO_NS}'/>")
    assert (answer.get("type"), condition(answer)) == ("error", "forbidden")
