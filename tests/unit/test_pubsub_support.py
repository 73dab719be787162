"""What the PubSub tests share: a service on an in-memory database, and
helpers to ask it in XEP-0060's XML and read its answers."""

from __future__ import annotations

from typing import Any, TypeVar

from lxml import etree
from support import C, error_of, one
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from empc.pubsub import NS_PUBSUB, NS_PUBSUB_ERRORS, NS_PUBSUB_EVENT, NS_PUBSUB_OWNER, PubSub
from empc.testing import FakeServer

T = TypeVar("T")
ALICE = "alice@example.org/phone"
BOB = "bob@example.org/desk"
CAROL = "carol@example.net/home"
P = f"{{{NS_PUBSUB}}}"
OWNER = f"{{{NS_PUBSUB_OWNER}}}"
E = f"{{{NS_PUBSUB_EVENT}}}"
NS = {"p": NS_PUBSUB, "o": NS_PUBSUB_OWNER, "e": NS_PUBSUB_EVENT}
ENTRY = "<entry xmlns='http://www.w3.org/2005/Atom'><title>Hello</title></entry>"


def service(**config: Any) -> tuple[FakeServer, PubSub]:
    """A component serving a PubSub handler with ``config`` (the test kit
    gives it an in-memory database)."""
    pubsub = PubSub(config)
    return FakeServer([pubsub]), pubsub


def ask(
    server: FakeServer, type: str, body: str, sender: str = ALICE, *, owner: bool = False
) -> etree._Element:
    """The answer to an IQ of ``type`` whose ``<pubsub/>`` holds ``body``."""
    namespace = NS_PUBSUB_OWNER if owner else NS_PUBSUB
    stanza = f"<iq type='{type}' from='{sender}'><pubsub xmlns='{namespace}'>{body}</pubsub></iq>"
    answers = [s for s in server.deliver(stanza) if etree.QName(s).localname == "iq"]
    return one(answers)


def ok(answer: etree._Element) -> etree._Element:
    """``answer``, checked to be a result."""
    assert answer.get("type") == "result", etree.tostring(answer)
    return answer


def refusal(answer: etree._Element) -> tuple[str, str | None]:
    """The (condition, pubsub#errors condition) of an error answer."""
    condition, _, _ = error_of(answer)
    error = answer.find(f"{C}error")
    assert error is not None
    specific = [
        etree.QName(c).localname for c in error if etree.QName(c).namespace == NS_PUBSUB_ERRORS
    ]
    assert len(specific) <= 1
    return condition, specific[0] if specific else None


def unsupported_feature(answer: etree._Element) -> str | None:
    """The feature of an ``<unsupported/>`` error."""
    found = answer.find(f"{C}error/{{{NS_PUBSUB_ERRORS}}}unsupported")
    return None if found is None else found.get("feature")


def create(server: FakeServer, node: str = "news", sender: str = ALICE, config: str = "") -> None:
    """Create ``node`` owned by ``sender``, with a configuration form's fields."""
    configure = ""
    if config:
        configure = (
            "<configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
            f"<value>{NS_PUBSUB}#node_config</value></field>{config}</x></configure>"
        )
    ok(ask(server, "set", f"<create node='{node}'/>{configure}", sender))


def field(var: str, value: str) -> str:
    return f"<field var='pubsub#{var}'><value>{value}</value></field>"


def publish(
    server: FakeServer,
    node: str = "news",
    item_id: str | None = None,
    payload: str = ENTRY,
    sender: str = ALICE,
) -> etree._Element:
    """The answer to publishing ``payload`` as ``item_id`` to ``node``."""
    ident = "" if item_id is None else f" id='{item_id}'"
    return ask(
        server, "set", f"<publish node='{node}'><item{ident}>{payload}</item></publish>", sender
    )


def publish_items(server: FakeServer, count: int) -> None:
    """Publish items ``i0`` to ``i<count-1>``, oldest first."""
    for n in range(count):
        ok(publish(server, item_id=f"i{n}"))


def subscribe(
    server: FakeServer, node: str = "news", sender: str = BOB, jid: str | None = None
) -> etree._Element:
    return ask(server, "set", f"<subscribe node='{node}' jid='{jid or sender}'/>", sender)


def events(stanzas: list[etree._Element], to: str | None = None) -> list[etree._Element]:
    """The ``<event/>`` of each notification among ``stanzas`` (to ``to``)."""
    found = []
    for stanza in stanzas:
        event = stanza.find(f"{E}event")
        is_event = etree.QName(stanza).localname == "message" and event is not None
        if is_event and to in (None, stanza.get("to")):
            found.append(event)
    return found


def fired(deferred: Deferred[T]) -> T:
    """The value of a Deferred that has fired (the test kit's database runs inline)."""
    return SynchronousTestCase().successResultOf(deferred)
