"""Helpers for the tweeter tests: a component on a fake server, and users."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from lxml import etree
from tweeter import Post, Profile, Tweeter
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure
from twisted.trial import unittest

from empc import NS_COMPONENT, make_message
from empc.pubsub import PubSub
from empc.storage import Database
from empc.testing import FakeServer

R = TypeVar("R")

DOMAIN = "tweeter.localhost"
ALICE = "alice@localhost"
BOB = "bob@localhost"
CAROL = "carol@localhost"
ADMIN = "root@localhost"
ALICE_ADDRESS = "alice\\40localhost@tweeter.localhost"
ALICE_NODE = "urn:xmpp:microblog:0:alice@localhost"

C = NS_COMPONENT
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS = {
    "c": C,
    "stanzas": STANZAS,
    "p": "http://jabber.org/protocol/pubsub",
    "pe": "http://jabber.org/protocol/pubsub#errors",
    "ev": "http://jabber.org/protocol/pubsub#event",
    "a": "http://www.w3.org/2005/Atom",
    "di": "http://jabber.org/protocol/disco#info",
    "dit": "http://jabber.org/protocol/disco#items",
    "r": "jabber:iq:register",
    "x": "jabber:x:data",
    "cmd": "http://jabber.org/protocol/commands",
    "nick": "http://jabber.org/protocol/nick",
}


class Tweets:
    """A tweeter component (with its PubSub service) on a :class:`FakeServer`,
    and helpers to talk to it.

    :param storage: the database url (SQLite in memory by default), or a
        Database; transactions run inline, so what a stanza changed is
        committed when :meth:`deliver` returns.
    :param pubsub: the PubSub's config (by default, ``creators: []``).
    """

    def __init__(
        self, storage: str | Database | None = None, pubsub: dict[str, Any] | None = None
    ) -> None:
        self.handler = Tweeter()
        self.pubsub = PubSub({"creators": []} if pubsub is None else pubsub)
        self.server = FakeServer(
            [self.handler, self.pubsub],
            domain=DOMAIN,
            identity=("pubsub", "service", "Tweeter"),
            access_lists={"admins": [ADMIN]},
            storage=storage,
        )
        assert self.server.started.called

    def posts(self, author: str) -> list[Post]:
        """The author's posts, newest first, as the pubsub service keeps them."""
        return done(Deferred.fromCoroutine(self.handler.blog.posts_by(author, 100, author)))

    def profile(self, user: str) -> Profile | None:
        return done(self.handler.store.profile(user))

    def deliver(self, stanza: str) -> list[etree._Element]:
        return self.server.deliver(stanza)

    def chat(self, user: str, text: str, to: str = DOMAIN) -> list[etree._Element]:
        """Send a chat message from ``user`` (its resource ``phone``)."""
        return self.server.deliver(make_message(to, text, from_=f"{user}/phone", id="m1"))

    def say(self, user: str, text: str) -> str:
        """The component's answer to a chat command (and nothing else to the user)."""
        answers = [s for s in self.chat(user, text) if s.get("to") == f"{user}/phone"]
        assert len(answers) == 1, [etree.tostring(s) for s in answers]
        (answer,) = answers
        assert answer.get("type") == "chat"
        assert answer.get("from") == DOMAIN
        return text_of(answer, "c:body")

    def iq(self, user: str, kind: str, payload: str) -> etree._Element:
        (reply,) = [
            s
            for s in self.deliver(f"<iq type='{kind}' from='{user}/phone' id='q1'>{payload}</iq>")
            if s.tag == f"{{{C}}}iq"
        ]
        assert reply.get("id") == "q1"
        return reply


class HeldRunner:
    """Runs a transaction's work at once but holds its outcome (the commit
    came, the reactor has not heard of it yet) until :meth:`release`.
    Inline while ``holding`` is False."""

    def __init__(self) -> None:
        self.holding = False
        self.held: list[tuple[Deferred[Any], Deferred[Any]]] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def run(self, work: Callable[[], R]) -> Deferred[R]:
        if not self.holding:
            return maybeDeferred(work)
        held: Deferred[R] = Deferred()
        self.held.append((maybeDeferred(work), held))
        return held

    def release(self) -> None:
        """Hand over the oldest held outcome."""
        outcome, held = self.held.pop(0)
        outcome.chainDeferred(held)


def done(deferred: Deferred[R]) -> R:
    """The value of a Deferred that has fired (inline transactions)."""
    outcome: list[R | Failure] = []
    deferred.addBoth(outcome.append)
    assert outcome, "the Deferred has not fired"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def text_of(element: etree._Element, xpath: str) -> str:
    found = element.xpath(xpath, namespaces=NS)
    assert isinstance(found, list) and len(found) == 1, found
    node = found[0]
    assert isinstance(node, etree._Element)
    return node.text or ""


def error_of(reply: etree._Element) -> tuple[str, str, list[str]]:
    """An error reply's (type, condition, application conditions)."""
    assert reply.get("type") == "error", etree.tostring(reply)
    error = reply.find(f"{{{C}}}error")
    assert error is not None
    defined = [etree.QName(child).localname for child in error if _is_stanzas(child)]
    others = [etree.QName(child).localname for child in error if _namespace(child) != STANZAS]
    return error.get("type") or "", defined[0], others


def _is_stanzas(child: etree._Element) -> bool:
    name = etree.QName(child)
    return name.namespace == STANZAS and name.localname != "text"


def _namespace(child: etree._Element) -> str | None:
    return etree.QName(child).namespace


T = TypeVar("T", bound=unittest.TestCase)


def async_test(
    test: Callable[[T], Coroutine[Any, Any, None]],
) -> Callable[[T], Deferred[None]]:
    """Let trial run an ``async def`` test (it waits on the Deferred)."""

    @functools.wraps(test)
    def run(self: T) -> Deferred[None]:
        return Deferred.fromCoroutine(test(self))

    return run
