"""Handler classes for the integration tests, loaded by the component process.

``component.ComponentProcess`` puts this directory on the child's
PYTHONPATH, so a config names them as ``sample_handlers:Weather``.
Each answer says which component and handler produced it (``domain``,
``station``), so a test can tell two components of one process apart.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from lxml import etree
from twisted.internet import task
from twisted.internet.defer import Deferred

from empc import (
    Handler,
    LocalProtocolError,
    StanzaError,
    iq,
    make_message,
    make_stanza,
    message,
    presence,
)
from empc.privilege import Privilege, RosterItem
from empc.protocol import new_element

NS_WEATHER = "urn:example:weather"
NS_SLOW = "urn:example:slow"
NS_BLOCKING = "urn:example:blocking"
NS_ADMIN = "urn:example:admin"
NS_SECOND = "urn:example:second"
NS_WHOAMI = "urn:example:whoami"
NS_DRAIN = "urn:example:drain"

CITIES = {"Paris": "sunny", "Oslo": "snow"}
# Far longer than the 1 s timeout of the slow routes, far shorter than a hang.
SLEEP = 10.0
# Long enough for a SIGTERM to arrive while it runs; well within the grace.
LINGER = 1.5
# Long enough for a SIGTERM and another IQ to arrive while it runs.
DRAIN = 3.0


def _element(namespace: str, name: str, **attributes: str) -> etree._Element:
    return new_element(namespace, name, attributes)


class Weather(Handler):
    """Forecasts for the cities it knows; ``item-not-found`` for the others."""

    defaults: ClassVar[Mapping[str, Any]] = {"station": "main"}

    @iq("get", f"{{{NS_WEATHER}}}forecast")
    def forecast(self, stanza: etree._Element) -> etree._Element:
        city = stanza[0].get("city", "")
        if city not in CITIES:
            raise StanzaError("item-not-found", "no such city")
        return _element(
            NS_WEATHER,
            "forecast",
            city=city,
            sky=CITIES[city],
            station=self.config["station"],
            domain=self.component.domain,
        )


class Slow(Handler):
    """Actions that never finish in time: a route timeout of 1 s."""

    @iq("get", f"{{{NS_SLOW}}}never", timeout=1)
    def never(self, stanza: etree._Element) -> Deferred[None]:
        return Deferred()  # never fires

    @iq("get", f"{{{NS_SLOW}}}sleep", timeout=1)
    async def sleep(self, stanza: etree._Element) -> etree._Element:
        # The component's clock is the reactor in ``twistd empc``.
        await task.deferLater(self.component.clock, SLEEP, lambda: None)
        return _element(NS_SLOW, "sleep", done="late")


class Blocking(Handler):
    """A blocking action: it runs in the thread pool, not the reactor thread."""

    @iq("get", f"{{{NS_BLOCKING}}}work", blocking=True)
    def work(self, stanza: etree._Element) -> etree._Element:
        time.sleep(0.2)
        return _element(NS_BLOCKING, "work", thread=threading.current_thread().name)


class Lingering(Handler):
    """A blocking action still running when the component is told to stop."""

    @iq("get", f"{{{NS_BLOCKING}}}linger", blocking=True)
    def linger(self, stanza: etree._Element) -> etree._Element:
        time.sleep(LINGER)
        return _element(NS_BLOCKING, "linger", done="yes")


class Admin(Handler):
    """Only the members of the ``admins`` access list may use it."""

    @iq("get", f"{{{NS_ADMIN}}}status", allow=["list:admins"])
    def status(self, stanza: etree._Element) -> etree._Element:
        return _element(NS_ADMIN, "status", state="ok", sender=stanza.get("from", ""))


class Second(Handler):
    """A route that only the second component has."""

    @iq("get", f"{{{NS_SECOND}}}hello")
    def hello(self, stanza: etree._Element) -> etree._Element:
        return _element(NS_SECOND, "hello", domain=self.component.domain)


class WhoAmI(Handler):
    """Says which process answered: two processes serving one domain."""

    @iq("get", f"{{{NS_WHOAMI}}}whoami")
    def whoami(self, stanza: etree._Element) -> etree._Element:
        return _element(NS_WHOAMI, "whoami", pid=str(os.getpid()))


class Draining(Handler):
    """An action still running when the component is told to stop, in the
    reactor (a coroutine): it finishes DRAIN seconds after it started."""

    @iq("get", f"{{{NS_DRAIN}}}work")
    async def work(self, stanza: etree._Element) -> etree._Element:
        await task.deferLater(self.component.clock, DRAIN, lambda: None)
        return _element(NS_DRAIN, "work", done="yes")


NS_SEEN = "urn:example:seen"


class Acting(Handler):
    """Acts for the users as the server lets it (XEP-0356), and serves the
    delegated namespace (XEP-0355). By chat: ``add JID`` puts JID in the
    sender's roster, ``say JID TEXT`` sends TEXT to JID from the sender,
    ``ping`` pings the server as the sender; each answers ``done`` or
    ``error: ...``."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.seen: list[str] = []

    @iq("get", "{urn:example:delegated}query")
    def delegated(self, stanza: etree._Element) -> etree._Element:
        attributes = {"from": stanza.get("from") or "", "to": stanza.get("to") or ""}
        return _element("urn:example:delegated", "query", **attributes)

    @presence()
    def present(self, stanza: etree._Element) -> None:
        self.seen.append(stanza.get("from") or "")

    @iq("get", f"{{{NS_SEEN}}}seen")
    def show_seen(self, stanza: etree._Element) -> etree._Element:
        return _element(NS_SEEN, "seen", users=" ".join(self.seen))

    @message("chat")
    async def act(self, stanza: etree._Element) -> etree._Element:
        privilege = Privilege.of(self.component)
        user = (stanza.get("from") or "").split("/")[0]
        words = (stanza.findtext("{jabber:component:accept}body") or "").split(" ", 2)
        try:
            if words[0] == "add":
                await privilege.set_roster_item(user, RosterItem(words[1], groups=("Test",)))
            elif words[0] == "say":
                privilege.send_as(user, make_message(words[1], words[2]))
            elif words[0] == "ping":
                ping = make_stanza("iq", {"type": "get", "to": self.component.server_domain})
                new_element("urn:xmpp:ping", "ping", parent=ping)
                await privilege.iq_as(user, ping)
            answer = "done"
        except StanzaError as e:
            answer = f"error: {e.condition}"
        except LocalProtocolError as e:
            answer = f"error: {e}"
        return make_message(
            stanza.get("from") or "", answer, from_=self.component.domain, id=stanza.get("id")
        )


class Echo(Handler):
    """Chat messages back to their sender, with their id (so a client can
    tell which answer is for which message) and the JID that answered."""

    @message("chat")
    def echo(self, stanza: etree._Element) -> etree._Element | None:
        body = stanza.findtext("c:body", namespaces={"c": "jabber:component:accept"})
        if body is None:
            return None
        sender = stanza.get("from") or ""
        return make_message(sender, f"echo: {body}", id=stanza.get("id"))


class SlowEcho(Handler):
    """Echoes a chat message after ``LINGER`` seconds: long enough for a
    test to cut the link while the answer is being prepared."""

    @message("chat")
    async def echo(self, stanza: etree._Element) -> etree._Element | None:
        body = stanza.findtext("c:body", namespaces={"c": "jabber:component:accept"})
        if body is None:
            return None
        from twisted.internet import reactor

        await task.deferLater(reactor, LINGER, lambda: None)
        return make_message(stanza.get("from") or "", f"late echo: {body}", id=stanza.get("id"))
