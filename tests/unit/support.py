"""What the FakeServer-based unit tests share: stanzas, handlers, helpers.

This module sits next to the tests (pytest puts ``tests/unit`` on
``sys.path``), so config files may name its handlers as ``support:Greeter``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from textwrap import dedent
from typing import Any, ClassVar

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.logger import LogEvent

from empc import Handler, LocalProtocolError, iq, make_stanza, message
from empc.protocol import NS_COMPONENT, StreamError, StreamFooter, StreamHeader
from empc.routing import NS_STANZAS
from empc.testing import DEFAULT_SENDER, FakeServer

NS_WEATHER = "urn:example:weather"
FORECAST = f"{{{NS_WEATHER}}}forecast"
C = f"{{{NS_COMPONENT}}}"

ALICE = "alice@example.org/phone"
ALICE_LAPTOP = "alice@example.org/laptop"
BOB = "bob@example.org/desk"
CAROL = "carol@example.net/home"

Action = Callable[[etree._Element], object]


def forecast_get(sender: str = DEFAULT_SENDER, id: str | None = None) -> str:
    """An IQ get of the weather forecast, as a client would send it."""
    ident = "" if id is None else f" id='{id}'"
    return f"<iq type='get' from='{sender}'{ident}><forecast xmlns='{NS_WEATHER}'/></iq>"


def chat(body: str = "hello", sender: str = DEFAULT_SENDER, type: str = "chat") -> str:
    """A message with a body."""
    return f"<message type='{type}' from='{sender}'><body>{body}</body></message>"


def forecast(text: str = "sunny") -> etree._Element:
    """A forecast payload."""
    element = etree.Element(FORECAST)
    element.text = text
    return element


def chat_reply(stanza: etree._Element, body: str) -> etree._Element:
    """A chat message back to the sender of ``stanza``."""
    reply = make_stanza("message", {"type": "chat", "to": stanza.get("from")})
    etree.SubElement(reply, f"{C}body").text = body
    return reply


def weather(action: Action | None = None, **route: Any) -> Handler:
    """A handler serving IQ gets of :data:`FORECAST` and chat messages with
    ``action`` (None: do nothing); ``route`` holds the routes' options
    (``timeout``, ``blocking``, ``allow``, ``max_in_flight``...)."""
    act: Action = (lambda stanza: None) if action is None else action

    class Weather(Handler):
        @iq("get", FORECAST, **route)
        def forecast(self, stanza: etree._Element) -> object:
            return act(stanza)

        @message("chat", **route)
        def chat(self, stanza: etree._Element) -> object:
            return act(stanza)

    return Weather()


def serving(
    action: Action | None = None, route: Mapping[str, Any] | None = None, **options: Any
) -> FakeServer:
    """A FakeServer whose one handler is :func:`weather` with ``action``;
    ``options`` go to the FakeServer (``limits``, ``action_timeout``...)."""
    return FakeServer([weather(action, **(route or {}))], **options)


class Calls:
    """An action that records the stanzas it serves and answers with
    Deferreds the test fires (or never does)."""

    def __init__(self) -> None:
        self.waiting: list[Deferred[object]] = []

    def __call__(self, stanza: etree._Element) -> Deferred[object]:
        waiting: Deferred[object] = Deferred()
        self.waiting.append(waiting)
        return waiting

    def __len__(self) -> int:
        return len(self.waiting)


ErrorAnswer = tuple[str, str | None, str | None]
"""An error's (condition, type, text)."""


def error_of(reply: etree._Element) -> ErrorAnswer:
    """The (condition, type, text) of an error stanza, checking it has type
    ``error`` and exactly one defined condition."""
    assert reply.get("type") == "error", etree.tostring(reply)
    error = reply.find(f"{C}error")
    assert error is not None, etree.tostring(reply)
    conditions = [
        etree.QName(child).localname
        for child in error
        if etree.QName(child).namespace == NS_STANZAS and etree.QName(child).localname != "text"
    ]
    assert len(conditions) == 1, etree.tostring(reply)
    return conditions[0], error.get("type"), error.findtext(f"{{{NS_STANZAS}}}text")


def one(stanzas: list[etree._Element]) -> etree._Element:
    """The one stanza of ``stanzas``; fails showing them if there are more or none."""
    assert len(stanzas) == 1, [etree.tostring(s) for s in stanzas]
    return stanzas[0]


def failures(events: Sequence[LogEvent]) -> list[LogEvent]:
    """The log events that carry a failure (a traceback)."""
    return [event for event in events if "log_failure" in event]


class Greeter(Handler):
    """A configurable handler, importable as ``support:Greeter``: answers a
    chat message with its greeting."""

    defaults: ClassVar[Mapping[str, Any]] = {"greeting": "hello", "retries": 3, "delay": 1.5}
    allow: ClassVar[list[str] | None] = None

    @message("chat")
    def greet(self, stanza: etree._Element) -> etree._Element:
        return chat_reply(stanza, self.config["greeting"])


class AdminGreeter(Greeter):
    """A :class:`Greeter` for the ``admins`` access list only."""

    allow: ClassVar[list[str] | None] = ["list:admins"]


def write_config(directory: Path, text: str, name: str = "empc.yaml") -> str:
    """Write a config file (dedented) and return its path."""
    path = directory / name
    path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
    return str(path)


class RecordingLink:
    """A component's link that records what is sent, as elements."""

    def __init__(self, refuse: bool = False) -> None:
        self.sent: list[etree._Element] = []
        self._refuse = refuse

    def send(self, stanza: etree._Element) -> None:
        if self._refuse:
            raise LocalProtocolError("refused")
        self.sent.append(stanza)

    def send_result(self, iq_id: str | None, to: str | None, sender: str | None) -> None:
        self.send(make_stanza("iq", {"type": "result", "id": iq_id, "to": to, "from": sender}))


def parser_outcome(events: Sequence[Any]) -> list[Any]:
    """StreamParser events as comparable values: whole and split feeds of
    the same bytes must give the same list."""
    out: list[Any] = []
    for event in events:
        if isinstance(event, etree._Element):
            out.append(("stanza", etree.tostring(event)))
        elif isinstance(event, StreamHeader):
            out.append(("header", event.element.tag, dict(event.element.attrib)))
        elif isinstance(event, StreamFooter):
            out.append(("footer",))
        else:
            assert isinstance(event, StreamError), event
            out.append(("error", type(event)))
    return out
