"""A scripted demo: two users talk to the tweeter component.

::

    python -m tweeter.demo --server 127.0.0.1 --port 5222 --domain localhost

alice@localhost (password alice) and bob@localhost (password bob) log in
(plaintext, for a loopback server). Bob follows Alice, Alice posts, Bob gets
the post, asks for his timeline, subscribes to Alice's pubsub node and gets
a pubsub event for her next post, which she publishes over pubsub. Then Bob
unfollows and unsubscribes, leaving things as they were. Every wait is
bounded: the demo exits 0 when all went as expected, 1 with a message saying
what did not come otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tweeter.addresses import address_of, node_of

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_ATOM = "http://www.w3.org/2005/Atom"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class DemoFailed(Exception):
    """Something the demo waited for did not happen."""


@dataclass
class Received:
    sender: str
    type: str
    body: str
    xml: ET.Element


class User:
    """One demo user, logged in with slixmpp; prints what it says and hears."""

    def __init__(self, name: str, domain: str, component: str, timeout: float) -> None:
        self.name = name
        self.jid = f"{name}@{domain}"
        self.component = component
        self.timeout = timeout
        self.inbox: list[Received] = []
        self._arrived = asyncio.Event()
        self.xmpp: Any = None

    # -- connection -------------------------------------------------------------

    async def connect(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        xmpp = ClientXMPP(self.jid, self.name, loop=loop)
        self.xmpp = xmpp
        # A loopback demo server has no certificate: plaintext stream.
        xmpp.enable_direct_tls = False
        xmpp.enable_starttls = False
        xmpp.enable_plaintext = True
        xmpp.plugin["feature_mechanisms"].unencrypted_plain = True
        xmpp.plugin["feature_mechanisms"].unencrypted_scram = True
        ready: asyncio.Future[None] = loop.create_future()

        def fail(reason: str) -> Callable[[object], None]:
            def failed(event: object) -> None:
                if not ready.done():
                    ready.set_exception(DemoFailed(f"{self.jid}: {reason} ({event})"))

            return failed

        def started(_: object) -> None:
            xmpp.send_presence()  # available: messages to the bare JID reach us
            if not ready.done():
                ready.set_result(None)

        xmpp.add_event_handler("session_start", started)
        xmpp.add_event_handler(
            "failed_all_auth",
            fail(f"login refused; is the user registered with password {self.name!r}?"),
        )
        xmpp.add_event_handler("connection_failed", fail(f"cannot connect to {host}:{port}"))
        xmpp.add_event_handler("stream_error", fail("stream error"))
        xmpp.add_event_handler("message", self._received)  # messages with a body
        xmpp.register_handler(  # and pubsub events, which have none
            Callback(
                "pubsub event",
                MatchXPath(f"{{jabber:client}}message/{{{NS_EVENT}}}event"),
                self._received,
            )
        )
        xmpp.connect(host, port)
        try:
            await asyncio.wait_for(ready, self.timeout)
        except TimeoutError:
            raise DemoFailed(
                f"{self.jid}: no session with {host}:{port} within {self.timeout:g} s"
            ) from None
        finally:
            if not ready.done() or ready.exception() is not None:
                xmpp.cancel_connection_attempt()

    async def disconnect(self) -> None:
        xmpp, self.xmpp = self.xmpp, None
        if xmpp is None:
            return
        xmpp.cancel_connection_attempt()
        if xmpp.transport is not None:
            try:
                await asyncio.wait_for(xmpp.disconnect(wait=1.0), 5)
            except (TimeoutError, asyncio.CancelledError):
                xmpp.abort()

    # -- talking ------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Send a chat command to the component."""
        show(self.name, "->", self.component, text)
        self.xmpp.send_message(mto=self.component, mbody=text, mtype="chat")

    async def answer(self) -> str:
        """The component's chat answer."""
        message = await self.expect(
            lambda m: m.sender == self.component and m.type == "chat",
            f"answer from {self.component} (is the component running and connected?)",
        )
        show(self.name, "<-", self.component, message.body)
        return message.body

    async def ask(self, text: str) -> str:
        self.say(text)
        return await self.answer()

    async def pubsub(self, payload: str, what: str) -> ET.Element:
        """Send a pubsub IQ set to the component; the result's payload."""
        show(self.name, "->", self.component, f"[pubsub] {what}")
        iq = self.xmpp.make_iq_set(ito=self.component)
        iq.append(ET.fromstring(f"<pubsub xmlns='{NS_PUBSUB}'>{payload}</pubsub>"))
        try:
            result = await iq.send(timeout=self.timeout)
        except IqError as e:
            raise DemoFailed(f"{what}: {self.component} answered {e.condition}: {e.text}") from None
        except IqTimeout:
            raise DemoFailed(f"{what}: no answer within {self.timeout:g} s") from None
        answer: ET.Element | None = result.xml.find(f"{{{NS_PUBSUB}}}pubsub")
        return ET.Element("empty") if answer is None else answer

    async def expect(self, wanted: Callable[[Received], bool], what: str) -> Received:
        """The first message received that is ``wanted`` (waiting for it)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for message in self.inbox:
                if message.type == "error" and message.sender == self.component:
                    raise DemoFailed(
                        f"{self.component} is unreachable ({_error(message.xml)}): "
                        "is the component running and connected to the server?"
                    )
                if wanted(message):
                    self.inbox.remove(message)
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DemoFailed(f"{self.jid}: no {what} within {self.timeout:g} s")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def _received(self, message: Any) -> None:
        self.inbox.append(
            Received(str(message["from"].bare), message["type"], message["body"], message.xml)
        )
        self._arrived.set()


def show(name: str, arrow: str, peer: str, text: str) -> None:
    lines = text.splitlines() or [""]
    prefix = f"{name:<5} {arrow} {peer}: "
    print(prefix + lines[0])
    for line in lines[1:]:
        print(" " * len(prefix) + line)


def _error(xml: ET.Element) -> str:
    for child in xml.iter():
        if child.tag.startswith(f"{{{NS_STANZAS}}}") and not child.tag.endswith("}text"):
            return child.tag.rpartition("}")[2]
    return "error"


def _event_item(message: Received, node: str) -> ET.Element | None:
    items = message.xml.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items")
    if items is None or items.get("node") != node:
        return None
    return items.find(f"{{{NS_EVENT}}}item")


def _event_title(message: Received, node: str) -> str | None:
    item = _event_item(message, node)
    return None if item is None else item.findtext(f"{{{NS_ATOM}}}entry/{{{NS_ATOM}}}title")


async def play(host: str, port: int, domain: str, component: str, timeout: float) -> None:
    alice = User("alice", domain, component, timeout)
    bob = User("bob", domain, component, timeout)
    alice_address = address_of(alice.jid, component)
    node = node_of(alice.jid)
    stamp = time.strftime("%H:%M:%S")
    print(f"tweeter demo: {alice.jid} and {bob.jid} talk to {component} via {host}:{port}")
    try:
        await alice.connect(host, port)
        await bob.connect(host, port)
        print("Both logged in.\n")

        print("# Bob follows Alice by chat command.")
        await bob.ask(f"follow {alice.jid}")

        print("\n# Alice posts; Bob gets the post from Alice's address at the component.")
        first = f"Hello from Alice! ({stamp})"
        answer = await alice.ask(f"post {first}")
        if not answer.startswith("Posted #"):
            raise DemoFailed(f"the post was refused: {answer}")
        got = await bob.expect(
            lambda m: m.sender == alice_address and m.body == first,
            f"notification of Alice's post from {alice_address}",
        )
        show("bob", "<-", got.sender, got.body)

        print("\n# Bob reads his timeline.")
        timeline = await bob.ask("timeline 3")
        if first not in timeline:
            raise DemoFailed("Alice's post is not on Bob's timeline")

        print("\n# Bob subscribes to Alice's pubsub node (XEP-0060).")
        answer_xml = await bob.pubsub(
            f"<subscribe node='{node}' jid='{bob.jid}'/>", f"subscribe to {node}"
        )
        subscription = answer_xml.find(f"{{{NS_PUBSUB}}}subscription")
        state = "?" if subscription is None else subscription.get("subscription", "?")
        show("bob", "<-", component, f"[pubsub] subscription: {state}")

        print("\n# Alice publishes her next post over pubsub, as an Atom entry.")
        second = f"Pubsub works too. ({stamp})"
        entry = f"<entry xmlns='{NS_ATOM}'><title type='text'>{second}</title></entry>"
        answer_xml = await alice.pubsub(
            f"<publish node='{node}'><item>{entry}</item></publish>", f"publish '{second}'"
        )
        item = answer_xml.find(f"{{{NS_PUBSUB}}}publish/{{{NS_PUBSUB}}}item")
        item_id = "?" if item is None else item.get("id", "?")
        show("alice", "<-", component, f"[pubsub] published as item {item_id}")

        event = await bob.expect(
            lambda m: m.sender == component and _event_title(m, node) == second,
            f"pubsub event from {component} for the item {item_id} of {node}",
        )
        event_item = _event_item(event, node)
        assert event_item is not None
        published = event_item.findtext(f"{{{NS_ATOM}}}entry/{{{NS_ATOM}}}published", "")
        show(
            "bob",
            "<-",
            component,
            f"[pubsub event] item {event_item.get('id')} of {node}: {second!r} ({published})",
        )
        got = await bob.expect(
            lambda m: m.sender == alice_address and m.body == second,
            "chat notification of Alice's pubsub post",
        )
        show("bob", "<-", got.sender, got.body)

        print("\n# Bob unfollows and unsubscribes: back to where we started.")
        await bob.ask(f"unfollow {alice.jid}")
        await bob.pubsub(
            f"<unsubscribe node='{node}' jid='{bob.jid}'/>", f"unsubscribe from {node}"
        )
        show("bob", "<-", component, "[pubsub] unsubscribed")
        print("\nDemo finished: every step worked.")
    finally:
        await alice.disconnect()
        await bob.disconnect()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tweeter.demo", description="Two users play with the tweeter component."
    )
    parser.add_argument("--server", default="127.0.0.1", help="the XMPP server's address")
    parser.add_argument("--port", type=int, default=5222, help="its client port")
    parser.add_argument("--domain", default="localhost", help="the users' domain")
    parser.add_argument("--component", help="the component (default: tweeter.<domain>)")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for each step (default 10)"
    )
    args = parser.parse_args(argv)
    component = args.component or f"tweeter.{args.domain}"
    try:
        asyncio.run(
            asyncio.wait_for(
                play(args.server, args.port, args.domain, component, args.timeout),
                args.timeout * 12,
            )
        )
    except DemoFailed as e:
        print(f"\ndemo FAILED: {e}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"\ndemo FAILED: it took more than {args.timeout * 12:g} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
