"""Privileged entity (XEP-0356): the server's advertisement, in both of
its versions, and acting for a user on what it granted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lxml import etree
from twisted.internet.defer import Deferred
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from empc import Handler, LocalProtocolError, StanzaError, make_message, message
from empc.privilege import NotGranted, Permissions, Privilege, RosterItem
from empc.testing import FakeServer

C = "{jabber:component:accept}"
ROSTER = "{jabber:iq:roster}"
ALICE = "alice@example.org"
_trial = SynchronousTestCase()


@pytest.fixture
def logs() -> Iterator[list[LogEvent]]:
    with capturedLogs() as events:
        yield events  # type: ignore[misc]


def privilege_of(server: FakeServer) -> Privilege:
    return Privilege.of(server.component)


def answer(server: FakeServer, request: etree._Element, payload: str = "") -> list[etree._Element]:
    """The server's result to the component's ``request``."""
    return server.deliver(
        f"<iq type='result' id='{request.get('id')}' from='{request.get('to')}'>{payload}</iq>"
    )


def test_the_advertisement_of_either_version_says_what_was_granted(
    logs: list[LogEvent],
) -> None:
    for version in (1, 2):
        server = FakeServer([])
        server.grant(version=version, roster="both", message="outgoing", presence="roster")
        assert privilege_of(server).granted == Permissions(
            f"urn:xmpp:privilege:{version}", "both", "outgoing", "roster"
        )
    lines = [formatEvent(event) for event in logs if "granted" in formatEvent(event)]
    assert lines[-1] == (
        "The server granted component.example.org: roster both, message outgoing, "
        "presence roster, iq none"
    )


def test_the_iq_permission_of_version_2_is_read_per_namespace() -> None:
    server = FakeServer([])
    server.grant(iq={"urn:example:a": "get", "urn:example:b": "both"})
    assert privilege_of(server).granted.iq == {"urn:example:a": "get", "urn:example:b": "both"}


def test_a_later_advertisement_replaces_the_earlier_one() -> None:
    server = FakeServer([])
    server.grant(roster="both")
    server.grant(message="outgoing")
    assert (privilege_of(server).granted.roster, privilege_of(server).granted.message) == (
        "none",
        "outgoing",
    )


class CatchAll(Handler):
    def __init__(self) -> None:
        super().__init__()
        self.heard: list[etree._Element] = []

    @message()
    def hear(self, stanza: etree._Element) -> None:
        self.heard.append(stanza)


def test_the_advertisement_reaches_privilege_before_a_catch_all_message_route() -> None:
    catch_all = CatchAll()
    server = FakeServer([catch_all])
    server.grant(roster="get")
    assert privilege_of(server).granted.roster == "get"
    assert catch_all.heard == []


def test_privileges_claimed_by_anyone_but_the_server_are_ignored(logs: list[LogEvent]) -> None:
    server = FakeServer([])
    server.deliver(
        "<message from='mallory@example.org/x'><privilege xmlns='urn:xmpp:privilege:2'>"
        "<perm access='roster' type='both'/></privilege></message>"
    )
    assert privilege_of(server).granted == Permissions()
    assert any("Ignored privileges sent by mallory@example.org/x" in formatEvent(e) for e in logs)


# The roster


def test_without_the_roster_permission_nothing_is_sent() -> None:
    server = FakeServer([])
    server.grant(roster="set")
    failure = _trial.failureResultOf(Deferred.fromCoroutine(privilege_of(server).roster(ALICE)))
    assert failure.check(NotGranted)
    assert "may not read rosters" in str(failure.value)
    assert server.sent == []


def test_a_users_roster_is_asked_of_the_server_and_read() -> None:
    server = FakeServer([])
    server.grant(version=1, roster="both")
    server.clear()
    items = Deferred.fromCoroutine(privilege_of(server).roster(ALICE))
    [request] = server.sent
    assert (request.get("type"), request.get("to")) == ("get", ALICE)
    assert request.find(f"{ROSTER}query") is not None
    answer(
        server,
        request,
        "<query xmlns='jabber:iq:roster'><item jid='bob@example.org' name='Bob' "
        "subscription='both'><group>Friends</group></item></query>",
    )
    assert _trial.successResultOf(items) == [
        RosterItem("bob@example.org", "Bob", "both", ("Friends",))
    ]


def test_a_roster_item_is_set_with_its_groups_and_a_refusal_is_the_servers_error() -> None:
    server = FakeServer([])
    server.grant(roster="set")
    server.clear()
    item = RosterItem("news\\40example.org@component.example.org", "News", groups=("Tweeter",))
    done = privilege_of(server).set_roster_item(ALICE, item)
    [request] = server.sent
    [entry] = request.iter(f"{ROSTER}item")
    assert dict(entry.attrib) == {"jid": item.jid, "name": "News"}
    assert [group.text for group in entry] == ["Tweeter"]
    server.deliver(
        f"<iq type='error' id='{request.get('id')}' from='{ALICE}'><error type='auth'>"
        "<forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )
    failure = _trial.failureResultOf(done)
    assert failure.check(StanzaError) and failure.value.condition == "forbidden"


def test_a_roster_item_is_removed_with_subscription_remove() -> None:
    server = FakeServer([])
    server.grant(roster="both")
    server.clear()
    done = privilege_of(server).remove_roster_item(ALICE, "bob@example.org")
    [request] = server.sent
    [entry] = request.iter(f"{ROSTER}item")
    assert dict(entry.attrib) == {"jid": "bob@example.org", "subscription": "remove"}
    answer(server, request)
    assert _trial.successResultOf(done).get("type") == "result"


@pytest.mark.parametrize(
    "user", ["alice@elsewhere.org", "alice@example.org/phone", "example.org", "not a jid@"]
)
def test_only_a_bare_jid_of_the_server_can_be_acted_for(user: str) -> None:
    server = FakeServer([])
    server.grant(roster="both")
    server.clear()
    failure = _trial.failureResultOf(privilege_of(server).remove_roster_item(user, "b@x.org"))
    assert failure.check(LocalProtocolError)
    assert server.sent == []


# Messages and IQs on a user's behalf


@pytest.mark.parametrize("version", [1, 2])
def test_a_message_is_sent_from_a_user_wrapped_in_the_granted_namespace(version: int) -> None:
    server = FakeServer([])
    server.grant(version=version, message="outgoing")
    server.clear()
    privilege_of(server).send_as(ALICE, make_message("bob@example.org", "hi from Alice"))
    [wrapper] = server.sent
    assert (wrapper.tag, wrapper.get("to")) == (f"{C}message", "example.org")
    namespace = f"urn:xmpp:privilege:{version}"
    [inner] = wrapper.findall(f"{{{namespace}}}privilege/{{urn:xmpp:forward:0}}forwarded/*")
    assert inner.tag == "{jabber:client}message"
    assert (inner.get("from"), inner.get("to")) == (ALICE, "bob@example.org")
    assert inner.findtext("{jabber:client}body") == "hi from Alice"


def test_without_the_message_permission_send_as_raises_before_sending() -> None:
    server = FakeServer([])
    server.grant(roster="both")
    server.clear()
    with pytest.raises(NotGranted, match="may not send messages"):
        privilege_of(server).send_as(ALICE, make_message("bob@example.org", "hi"))
    assert server.sent == []


def notes_as_alice(
    type: str, id: str | None = None
) -> tuple[FakeServer, Deferred[etree._Element], etree._Element]:
    """A notes IQ sent as alice on a grant of its namespace: the server,
    the answer to come, and the wrapper sent."""
    server = FakeServer([])
    server.grant(iq={"urn:example:notes": "both"})
    server.clear()
    request = etree.fromstring(
        f"<iq xmlns='jabber:component:accept' type='{type}'><notes xmlns='urn:example:notes'/></iq>"
    )
    if id is not None:
        request.set("id", id)
    answered = Deferred.fromCoroutine(privilege_of(server).iq_as(ALICE, request))
    [wrapper] = server.sent
    return server, answered, wrapper


def test_an_iq_is_sent_as_a_user_and_its_answer_unwrapped() -> None:
    server, answered, wrapper = notes_as_alice("get", "n1")
    assert (wrapper.get("type"), wrapper.get("to")) == ("get", ALICE)
    [inner] = wrapper.findall("{urn:xmpp:privilege:2}privileged_iq/*")
    assert inner.tag == "{jabber:client}iq"
    assert (inner.get("from"), inner.get("to"), inner.get("id")) == (ALICE, ALICE, "n1")
    server.deliver(
        f"<iq type='result' id='{wrapper.get('id')}' from='{ALICE}'>"
        "<privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'>"
        "<iq xmlns='jabber:client' type='result' "
        f"id='n1' from='{ALICE}'><notes xmlns='urn:example:notes'>x</notes></iq>"
        "</forwarded></privilege></iq>"
    )
    result = _trial.successResultOf(answered)
    assert result.tag == f"{C}iq"
    assert result.findtext("{urn:example:notes}notes") == "x"


@pytest.mark.parametrize(
    ("version", "granted"),
    [(1, {"urn:example:notes": "both"}), (2, {"urn:example:notes": "set"}), (2, {})],
    ids=["version 1", "set only", "other namespace"],
)
def test_an_iq_not_granted_fails_before_sending(version: int, granted: dict[str, str]) -> None:
    server = FakeServer([])
    server.grant(version=version, iq=granted)
    server.clear()
    request = etree.fromstring(
        "<iq xmlns='jabber:component:accept' type='get'><notes xmlns='urn:example:notes'/></iq>"
    )
    failure = _trial.failureResultOf(
        Deferred.fromCoroutine(privilege_of(server).iq_as(ALICE, request))
    )
    assert failure.check(NotGranted)
    assert server.sent == []


def test_a_roster_push_from_a_user_of_the_server_is_acknowledged() -> None:
    server = FakeServer([])
    server.grant(roster="both")
    [ack] = server.deliver(
        f"<iq type='set' from='{ALICE}'><query xmlns='jabber:iq:roster'>"
        "<item jid='bob@example.org'/></query></iq>"
    )
    assert ack.get("type") == "result"


def test_a_roster_push_from_anyone_else_is_forbidden() -> None:
    server = FakeServer([])
    [refusal] = server.deliver(
        "<iq type='set' from='mallory@elsewhere.org/x'><query xmlns='jabber:iq:roster'/></iq>"
    )
    assert refusal.get("type") == "error"
    assert refusal.find(f"{C}error/{{urn:ietf:params:xml:ns:xmpp-stanzas}}forbidden") is not None


def test_an_iq_sent_as_a_user_gets_an_id_and_an_error_answer_raises() -> None:
    server, answered, wrapper = notes_as_alice("set")
    [inner] = wrapper.findall("{urn:xmpp:privilege:2}privileged_iq/*")
    assert inner.get("id")
    server.deliver(
        f"<iq type='result' id='{wrapper.get('id')}' from='{ALICE}'>"
        "<privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'>"
        f"<iq xmlns='jabber:client' type='error' id='{inner.get('id')}' from='{ALICE}'>"
        "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "</error></iq></forwarded></privilege></iq>"
    )
    failure = _trial.failureResultOf(answered)
    assert failure.check(StanzaError) and failure.value.condition == "item-not-found"


def test_prosodys_nested_iq_namespaces_are_all_read() -> None:
    server = FakeServer([])
    server.deliver(
        "<message from='example.org'><privilege xmlns='urn:xmpp:privilege:2'>"
        "<perm access='iq'><namespace ns='urn:example:a' type='get'>"
        "<namespace ns='urn:example:b' type='both'/></namespace></perm></privilege></message>"
    )
    assert privilege_of(server).granted.iq == {"urn:example:a": "get", "urn:example:b": "both"}


def test_only_the_configured_server_domain_grants() -> None:
    server = FakeServer([], server_domain="xmpp.example.net")
    for sender in ("example.org", "xmpp.example.net"):  # the parent, then the server
        server.deliver(
            f"<message from='{sender}'><privilege xmlns='urn:xmpp:privilege:1'>"
            "<perm access='roster' type='both'/></privilege></message>"
        )
        granted = privilege_of(server).granted.roster
        assert granted == ("both" if sender == "xmpp.example.net" else "none")
