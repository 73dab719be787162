"""A test kit for handler authors: a fake server, no network, no real clock.

:class:`FakeServer` builds a component from handlers (or from a config
file), plays the server's side of a live stream, and records what the
component sends, serialized and parsed back as a server would see it::

    from empc.testing import FakeServer

    def test_echo():
        server = FakeServer([Echo()], domain="echo.example.org")
        (reply,) = server.deliver("<iq type='get'><echo xmlns='urn:example:echo' text='hi'/></iq>")
        assert reply.get("type") == "result"
        assert server.only("self::c:iq/e:echo[@text='hi']", e="urn:example:echo") is reply

Blocking actions run at once in the test's thread. Time only moves with
:meth:`FakeServer.advance`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from lxml import etree
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock

from empc._component import Component
from empc._config import load_config
from empc._tap import build_component
from empc.handlers import BUILTINS
from empc.protocol import (
    NS_COMPONENT,
    Authenticated,
    ComponentStream,
    StreamParser,
)
from empc.routing import NS_STANZAS, Handler

__all__ = ["DEFAULT_SENDER", "NAMESPACES", "FakeServer"]

DEFAULT_SENDER = "user@example.org/tests"
"""The ``from`` given to delivered stanzas that have none."""

NAMESPACES: Mapping[str, str] = {"c": NS_COMPONENT, "stanzas": NS_STANZAS}
"""Prefixes the XPath helpers know: ``c`` for stanzas, ``stanzas`` for
stanza error conditions."""

_TEST_INPUT = etree.XMLParser(resolve_entities=False, no_network=True)
_SERVER_HEADER = (
    b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
    b" xmlns='jabber:component:accept' id='fake-server'>"
)


class FakeServer:
    """A component under test, and what it has sent.

    :param handlers: the handlers to test; the built-in ones (ping, disco,
        version) are added after them unless ``builtins`` is False.
    :param domain: the component's domain.
    :param clock: the clock the component runs on; a new
        :class:`~twisted.internet.task.Clock` if None.
    :param options: passed on to :class:`~empc.Component`
        (``action_timeout``, ``limits``, ``access_lists``, ``identity``...).
    """

    def __init__(
        self,
        handlers: Iterable[Handler] = (),
        domain: str = "component.example.org",
        *,
        clock: Clock | None = None,
        builtins: bool = True,
        **options: Any,
    ) -> None:
        self.clock = clock or Clock()
        handlers = list(handlers)
        if builtins:
            handlers += [cls() for cls in BUILTINS.values()]
        options.setdefault("threads", _run_inline)
        self.component = Component(domain, handlers, self.clock, **options)
        self._start(self.component)

    @classmethod
    def from_config(
        cls, path: str, domain: str | None = None, *, clock: Clock | None = None
    ) -> FakeServer:
        """The component that the config file at ``path`` describes (the one
        for ``domain``, or the first), with its handlers, limits and access
        lists, as ``twistd empc`` would build it."""
        config = load_config(path)
        chosen = [c for c in config.components if domain in (None, c.domain)]
        if not chosen:
            raise LookupError(f"{path} has no component {domain!r}")
        server = cls.__new__(cls)
        server.clock = clock or Clock()
        server.component = build_component(chosen[0], config, server.clock, _run_inline)
        server._start(server.component)
        return server

    def _start(self, component: Component) -> None:
        self._stream = ComponentStream(component.domain, "fake-secret")
        self._parser = StreamParser()
        self._parser.feed(_SERVER_HEADER)
        self._stream.open()
        events = self._stream.receive(_SERVER_HEADER + b"<handshake/>")
        assert Authenticated() in events
        self._stream.data_to_send()  # the header and handshake: not stanzas
        self._sent: list[etree._Element] = []
        self._ids = itertools.count(1)
        component.link(self._stream.send)
        self.started: Deferred[object] = component.start()

    @property
    def domain(self) -> str:
        return self.component.domain

    @property
    def sent(self) -> list[etree._Element]:
        """Every stanza the component has sent so far, oldest first."""
        self._collect()
        return list(self._sent)

    def deliver(self, stanza: str | bytes | etree._Element) -> list[etree._Element]:
        """Deliver a stanza to the component, as the server would.

        Text is parsed with the stanza namespace as default namespace. A
        missing ``to`` becomes the component's domain, a missing ``from``
        :data:`DEFAULT_SENDER`, a missing IQ ``id`` a fresh one.

        Returns the stanzas the component sent while handling it.
        """
        element = _parse(stanza) if isinstance(stanza, str | bytes) else stanza
        defaults = {"to": self.domain, "from": DEFAULT_SENDER}
        if etree.QName(element).localname == "iq":
            defaults["id"] = f"test-{next(self._ids)}"
        for name, value in defaults.items():
            if element.get(name) is None:
                element.set(name, value)
        before = len(self.sent)
        self.component.receive(element)
        return self.sent[before:]

    def advance(self, seconds: float) -> list[etree._Element]:
        """Move the clock on; returns the stanzas sent meanwhile."""
        before = len(self.sent)
        self.clock.advance(seconds)
        return self.sent[before:]

    def clear(self) -> None:
        """Forget what was sent so far."""
        self._collect()
        self._sent.clear()

    def find(self, xpath: str, **namespaces: str) -> list[etree._Element]:
        """The sent stanzas for which ``xpath`` (evaluated with the stanza as
        context node) is true; ``c`` and ``stanzas`` are predefined prefixes."""
        expression = etree.XPath(xpath, namespaces={**NAMESPACES, **namespaces})
        return [stanza for stanza in self.sent if expression(stanza)]

    def only(self, xpath: str, **namespaces: str) -> etree._Element:
        """The one sent stanza that matches ``xpath``.

        :raises AssertionError: if none or several match, showing what was sent.
        """
        found = self.find(xpath, **namespaces)
        if len(found) != 1:
            shown = "\n".join(etree.tostring(s, encoding="unicode") for s in self.sent)
            raise AssertionError(
                f"{len(found)} sent stanzas match {xpath!r}, expected 1; sent:\n{shown}"
            )
        return found[0]

    def stop(self) -> Deferred[object]:
        """Run the handlers' stop hooks."""
        return self.component.stop()

    def _collect(self) -> None:
        data = self._stream.data_to_send()
        if data:
            for item in self._parser.feed(data):
                if isinstance(item, etree._Element):
                    self._sent.append(item)
                else:
                    raise AssertionError(f"the component sent something unexpected: {item!r}")


def _parse(text: str | bytes) -> etree._Element:
    data = text.encode() if isinstance(text, str) else text
    wrapper = etree.fromstring(
        b"<wrapper xmlns='jabber:component:accept'>" + data + b"</wrapper>", _TEST_INPUT
    )
    (stanza,) = wrapper
    wrapper.remove(stanza)
    return stanza


def _run_inline(action: Any, stanza: etree._Element) -> Deferred[object]:
    return maybeDeferred(action, stanza)
