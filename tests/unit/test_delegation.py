"""Namespace delegation (XEP-0355): a user's IQ forwarded by the server is
served by the routes as the user sent it and answered wrapped; a forged or
malformed envelope is refused, never unwrapped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lxml import etree
from twisted.internet.task import deferLater
from twisted.logger import LogEvent, capturedLogs

from empc import Handler, StanzaError, iq
from empc.delegation import Delegation
from empc.protocol import new_element
from empc.routing import Limits
from empc.testing import FakeServer, delegated_answer

NS_NOTES = "urn:example:notes"
ALICE = "alice@example.org/phone"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class Notes(Handler):
    """Answers notes queries with what it saw of the request."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[etree._Element] = []

    @iq("get", f"{{{NS_NOTES}}}notes")
    def notes(self, stanza: etree._Element) -> etree._Element:
        self.seen.append(stanza)
        return new_element(
            NS_NOTES, "notes", {"from": stanza.get("from", ""), "to": stanza.get("to", "")}
        )

    @iq("set", f"{{{NS_NOTES}}}notes")
    def refuse(self, stanza: etree._Element) -> None:
        raise StanzaError("not-allowed", "read only")


@pytest.fixture
def logs() -> Iterator[list[LogEvent]]:
    with capturedLogs() as events:
        yield events  # type: ignore[misc]


def served(version: int = 2) -> tuple[FakeServer, Notes]:
    notes = Notes()
    server = FakeServer([notes])
    server.delegate(NS_NOTES, version=version)
    server.clear()
    return server, notes


def query(type: str = "get", to: str | None = None) -> str:
    addressed = f" to='{to}'" if to else ""
    return (
        f"<iq xmlns='jabber:client' type='{type}' id='u1' from='{ALICE}'{addressed}>"
        f"<notes xmlns='{NS_NOTES}'/></iq>"
    )


def condition(outer: etree._Element) -> str | None:
    error = outer.find("{jabber:component:accept}error")
    assert error is not None, etree.tostring(outer)
    return next(
        etree.QName(child).localname for child in error if child.tag != f"{{{STANZAS}}}text"
    )


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("to", ["example.org", "alice@example.org"])
def test_a_delegated_iq_is_served_as_the_user_sent_it_and_answered_wrapped(
    version: int, to: str
) -> None:
    server, notes = served(version)
    [outer] = server.deliver_delegated(query(to=to), version=version)
    assert (outer.get("type"), outer.get("to")) == ("result", "example.org")
    assert outer[0].tag == f"{{urn:xmpp:delegation:{version}}}delegation"
    [seen] = notes.seen
    assert (seen.get("from"), seen.get("to"), seen.get("id")) == (ALICE, to, "u1")
    answer = delegated_answer(outer)
    assert (answer.get("type"), answer.get("id"), answer.get("to"), answer.get("from")) == (
        "result",
        "u1",
        ALICE,
        to,
    )
    assert answer.find(f"{{{NS_NOTES}}}notes") is not None


def test_the_answer_goes_in_the_client_namespace() -> None:
    server, _ = served()
    [outer] = server.deliver_delegated(query())
    [inner] = outer.findall("{urn:xmpp:delegation:2}delegation/{urn:xmpp:forward:0}forwarded/*")
    assert inner.tag == "{jabber:client}iq"


def test_an_actions_error_is_answered_wrapped() -> None:
    server, _ = served()
    [outer] = server.deliver_delegated(query("set"))
    answer = delegated_answer(outer)
    assert answer.get("type") == "error"
    assert answer.find(f"{{jabber:component:accept}}error/{{{STANZAS}}}not-allowed") is not None


def test_an_envelope_not_from_the_server_is_forbidden_and_not_unwrapped() -> None:
    server, notes = served()
    [outer] = server.deliver_delegated(query(), sender="mallory@example.org/x")
    assert (outer.get("type"), condition(outer)) == ("error", "forbidden")
    assert notes.seen == []


def test_a_namespace_the_server_did_not_delegate_is_forbidden() -> None:
    notes = Notes()
    server = FakeServer([notes])
    server.delegate("urn:example:other")
    [outer] = server.deliver_delegated(query())
    assert condition(outer) == "forbidden"
    assert notes.seen == []


def test_a_namespace_delegated_in_the_other_version_is_forbidden() -> None:
    server, notes = served(version=1)
    [outer] = server.deliver_delegated(query(), version=2)
    assert condition(outer) == "forbidden"
    assert notes.seen == []


@pytest.mark.parametrize(
    "inner",
    [
        "<message xmlns='jabber:client' from='alice@example.org/phone'/>",
        query("result"),
        f"<iq xmlns='jabber:client' type='get' id='u1' from='{ALICE}'/>",
        f"<iq xmlns='jabber:client' type='get' id='u1'><notes xmlns='{NS_NOTES}'/></iq>",
        f"<iq xmlns='jabber:component:accept' type='get' id='u1' from='{ALICE}'>"
        f"<notes xmlns='{NS_NOTES}'/></iq>",
    ],
    ids=["a message", "a result", "no payload", "no sender", "not the client namespace"],
)
def test_a_malformed_envelope_is_a_bad_request(inner: str) -> None:
    server, notes = served()
    outer = new_element("jabber:component:accept", "iq", {"type": "set", "from": "example.org"})
    delegation = new_element("urn:xmpp:delegation:2", "delegation", parent=outer)
    forwarded = new_element("urn:xmpp:forward:0", "forwarded", parent=delegation)
    forwarded.append(etree.fromstring(inner))
    [answer] = server.deliver(outer)
    assert condition(answer) == "bad-request"
    assert notes.seen == []


def test_an_envelope_without_forwarded_is_a_bad_request() -> None:
    server, notes = served()
    [answer] = server.deliver(
        "<iq type='set' from='example.org'><delegation xmlns='urn:xmpp:delegation:2'/></iq>"
    )
    assert condition(answer) == "bad-request"
    assert notes.seen == []


def test_delegations_claimed_by_anyone_but_the_server_are_ignored(logs: list[LogEvent]) -> None:
    notes = Notes()
    server = FakeServer([notes])
    server.deliver(
        "<message from='mallory@example.org/x'><delegation xmlns='urn:xmpp:delegation:2'>"
        f"<delegated namespace='{NS_NOTES}'/></delegation></message>"
    )
    [delegation] = [h for h in server.component.handlers if isinstance(h, Delegation)]
    assert delegation.delegated == {}


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("separator", ["::", ":bare:"])
def test_disco_info_on_a_delegation_node_lists_the_namespace_features_before_delegation(
    version: int, separator: str
) -> None:
    server = FakeServer([Notes()])  # nothing delegated yet: ejabberd asks first
    [answer] = server.deliver(
        "<iq type='get' from='example.org'><query xmlns='http://jabber.org/protocol/disco#info'"
        f" node='urn:xmpp:delegation:{version}{separator}{NS_NOTES}'/></iq>"
    )
    features = [f.get("var") for f in answer.iter("{http://jabber.org/protocol/disco#info}feature")]
    assert features == [NS_NOTES]


def test_disco_info_on_the_node_of_a_namespace_no_route_serves_is_item_not_found() -> None:
    server, _ = served()
    [answer] = server.deliver(
        "<iq type='get' from='example.org'><query xmlns='http://jabber.org/protocol/disco#info'"
        " node='urn:xmpp:delegation:2::urn:example:other'/></iq>"
    )
    assert condition(answer) == "item-not-found"


def test_an_iq_without_to_is_served_as_addressed_to_the_senders_bare_jid() -> None:
    server, notes = served()
    # By hand: deliver_delegated would give the user's IQ a 'to'.
    bare = new_element("jabber:component:accept", "iq", {"type": "set", "from": "example.org"})
    delegation = new_element("urn:xmpp:delegation:2", "delegation", parent=bare)
    wrapper = new_element("urn:xmpp:forward:0", "forwarded", parent=delegation)
    wrapper.append(etree.fromstring(query()))
    [outer] = server.deliver(bare)
    [seen] = notes.seen
    assert seen.get("to") == "alice@example.org"
    assert delegated_answer(outer).get("from") == "alice@example.org"


class Slow(Handler):
    """Answers notes queries after a minute: past its route's deadline."""

    @iq("get", f"{{{NS_NOTES}}}notes", timeout=5)
    async def notes(self, stanza: etree._Element) -> None:
        await deferLater(self.component.clock, 60, lambda: None)


def test_a_delegated_iq_past_its_routes_deadline_is_answered_wrapped_to_the_user(
    logs: list[LogEvent],
) -> None:
    server = FakeServer([Slow()], action_timeout=1)  # the envelope has no deadline of its own
    server.delegate(NS_NOTES)
    assert server.deliver_delegated(query()) == []
    assert server.advance(4) == []
    [outer] = server.advance(1)
    answer = delegated_answer(outer)
    assert (answer.get("type"), answer.get("id")) == ("error", "u1")
    assert condition(answer) == "remote-server-timeout"
    assert server.advance(60) == []  # the late outcome goes nowhere
    assert not [e for e in logs if e["log_level"].name == "error" or e.get("log_failure")]


def test_a_second_request_with_the_same_id_is_answered_wrapped_bad_request() -> None:
    server = FakeServer([Slow()])
    server.delegate(NS_NOTES)
    assert server.deliver_delegated(query()) == []
    [outer] = server.deliver_delegated(query())
    assert condition(delegated_answer(outer)) == "bad-request"


def test_namespaces_advertised_one_a_message_all_stay_delegated() -> None:
    notes = Notes()
    server = FakeServer([notes])
    server.delegate(NS_NOTES, version=1)  # ejabberd: one message a namespace
    server.delegate("urn:example:other", version=1)
    [outer] = server.deliver_delegated(query(), version=1)
    assert delegated_answer(outer).get("type") == "result"


def test_the_rate_limit_applies_to_each_user_inside_not_to_the_server_envelope() -> None:
    notes = Notes()
    server = FakeServer([notes], limits=Limits(rate=1, burst=1))
    server.delegate(NS_NOTES)

    def from_user(number: int, id: str) -> list[etree._Element]:
        request = query().replace(ALICE, f"u{number}@example.org/r").replace("'u1'", f"'{id}'")
        return server.deliver_delegated(request)

    firsts = [from_user(1, "a"), from_user(2, "b")]  # one envelope sender: the server
    assert [delegated_answer(outer).get("type") for [outer] in firsts] == ["result", "result"]
    [again] = from_user(1, "c")
    assert condition(delegated_answer(again)) == "resource-constraint"
