"""Routes: which stanzas an action of a handler class takes.

A route is what can be known about a stanza without XPath (its kind, its
type, the qualified name of an IQ's payload) plus, optionally, an XPath
expression evaluated on the stanza. The router indexes routes by the first
part, so XPath only runs on the few routes that can match.

Routes are declared with decorators on the methods of a :class:`Handler`::

    class Weather(Handler):
        @iq("get", "{urn:example:weather}forecast")
        def forecast(self, stanza): ...

        @message("chat", xpath="c:body[starts-with(., '!')]")
        def command(self, stanza): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from lxml import etree

from empc.protocol import NS_COMPONENT

from ._admission import AccessRule

KINDS = ("iq", "message", "presence")
IQ_REQUEST_TYPES = frozenset(("get", "set"))
DEFAULT_NAMESPACES: Mapping[str, str] = {"c": NS_COMPONENT}
"""Prefixes every route's XPath may use: ``c`` is the stanza namespace."""

_ROUTES_ATTRIBUTE = "_empc_routes"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RouteSpec:
    """A route as declared, before it is bound to a handler instance."""

    kind: str | None = None
    types: frozenset[str] | None = None
    payload: str | None = None
    xpath: str | None = None
    namespaces: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0
    timeout: float | None = None
    feature: str | None = None
    blocking: bool = False
    max_in_flight: int | None = None
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] | None = None
    to_itself: bool = False

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"unknown stanza kind {self.kind!r}; use one of {KINDS}")
        if self.payload is not None and not self.payload.startswith("{"):
            raise ValueError(
                f"payload {self.payload!r} must be a qualified name like '{{urn:xmpp:ping}}ping'"
            )


@dataclass(eq=False)
class Route:
    """A route bound to the action that serves it."""

    spec: RouteSpec
    action: Callable[[etree._Element], object]
    name: str
    order: int = 0
    xpath: etree.XPath | None = None
    access: AccessRule | None = None
    in_flight: int = 0

    def __post_init__(self) -> None:
        if self.spec.xpath is not None:
            namespaces = {**DEFAULT_NAMESPACES, **self.spec.namespaces}
            try:
                self.xpath = etree.XPath(self.spec.xpath, namespaces=namespaces)
                # Undefined prefixes and functions only show on evaluation.
                self.xpath(etree.Element(f"{{{NS_COMPONENT}}}message"))
            except etree.XPathError as e:
                raise ValueError(f"route {self.name}: bad XPath {self.spec.xpath!r}: {e}") from e

    @property
    def sort_key(self) -> tuple[int, int]:
        """Higher priority first, then the order of registration."""
        return (-self.spec.priority, self.order)

    def matches(self, stanza: etree._Element) -> bool:
        """Whether the XPath part holds; the indexed part is checked by the router.

        :raises lxml.etree.XPathEvalError: if the expression fails on this stanza.
        """
        return self.xpath is None or bool(self.xpath(stanza))

    def describe(self) -> str:
        spec = self.spec
        parts = [spec.kind or "*"]
        if spec.types:
            parts.append("|".join(sorted(spec.types)))
        if spec.payload:
            parts.append(spec.payload)
        if spec.xpath:
            parts.append(f"[{spec.xpath}]")
        options = [f"priority {spec.priority}"]
        if spec.blocking:
            options.append("blocking")
        if spec.to_itself:
            options.append("to itself")
        if spec.allow is not None:
            options.append(f"allow {', '.join(spec.allow)}")
        if spec.deny is not None:
            options.append(f"deny {', '.join(spec.deny)}")
        return f"{' '.join(parts)} ({'; '.join(options)}) -> {self.name}"


def route(
    xpath: str | None = None,
    *,
    kind: str | None = None,
    type: str | tuple[str, ...] | None = None,
    payload: str | None = None,
    namespaces: Mapping[str, str] | None = None,
    priority: int = 0,
    timeout: float | None = None,
    feature: str | None = None,
    blocking: bool = False,
    max_in_flight: int | None = None,
    allow: Iterable[str] | None = None,
    deny: Iterable[str] | None = None,
    to_itself: bool = False,
) -> Callable[[F], F]:
    """Route the stanzas that match to the decorated action.

    :param xpath: an XPath expression evaluated with the stanza as context
        node; the route matches when it yields a non-empty or true result.
        The prefix ``c`` names the stanza namespace; add others with
        ``namespaces``.
    :param kind: ``iq``, ``message`` or ``presence``.
    :param type: the stanza ``type`` (or a tuple of them).
    :param payload: for an IQ, the qualified name of its payload, such as
        ``{urn:xmpp:ping}ping``.
    :param priority: higher goes first; equal priorities go in the order the
        routes were declared.
    :param timeout: seconds an IQ action may take before the IQ is answered
        with an error; the component's default when None.
    :param feature: the disco#info feature this route serves; defaults to
        the payload's namespace.
    :param blocking: run the action in the thread pool: for blocking code
        (a database driver, a slow library). It must not touch the reactor.
    :param max_in_flight: how many of this route's actions may run at once.
    :param allow: who may use the route: bare JIDs (``user@example.org``),
        domains (``example.org``) and named lists from the config
        (``list:admins``); the handler's ``allow`` when None.
    :param deny: who may not; the handler's ``deny`` when None. Deny wins.
    :param to_itself: match only stanzas addressed to the component itself
        (its domain), not to an address in its domain (a gateway's contact,
        say); for an account, every stanza it gets is to itself. A stanza
        this leaves out goes on to the next route.
    """
    types = None if type is None else frozenset((type,) if isinstance(type, str) else type)
    spec = RouteSpec(
        kind=kind,
        types=types,
        payload=payload,
        xpath=xpath,
        namespaces=dict(namespaces or {}),
        priority=priority,
        timeout=timeout,
        feature=feature,
        blocking=blocking,
        max_in_flight=max_in_flight,
        allow=None if allow is None else tuple(allow),
        deny=None if deny is None else tuple(deny),
        to_itself=to_itself,
    )

    def decorate(action: F) -> F:
        routes: list[RouteSpec] = getattr(action, _ROUTES_ATTRIBUTE, [])
        setattr(action, _ROUTES_ATTRIBUTE, [spec, *routes])
        return action

    return decorate


def iq(
    type: str | tuple[str, ...], payload: str, xpath: str | None = None, **options: Any
) -> Callable[[F], F]:
    """Route IQs of ``type`` (``get``, ``set``) whose payload is ``payload``."""
    return route(xpath, kind="iq", type=type, payload=payload, **options)


def message(
    type: str | tuple[str, ...] | None = None, xpath: str | None = None, **options: Any
) -> Callable[[F], F]:
    """Route messages of ``type`` (``chat``, ``normal``...; any if None)."""
    return route(xpath, kind="message", type=type, **options)


def presence(
    type: str | tuple[str, ...] | None = None, xpath: str | None = None, **options: Any
) -> Callable[[F], F]:
    """Route presences of ``type`` (``subscribe``, ``available``...)."""
    return route(xpath, kind="presence", type=type, **options)


def marked_methods(handler: object, marker: str) -> Iterator[tuple[str, Any]]:
    """``(name, mark)`` for each method of ``handler``'s class that a
    decorator marked with the attribute ``marker``, in declaration order,
    base classes first."""
    cls = type(handler)
    names = dict.fromkeys(name for klass in reversed(cls.__mro__) for name in vars(klass))
    for name in names:
        mark = getattr(getattr(cls, name, None), marker, None)
        if mark is not None:
            yield name, mark


def declared_routes(handler: object) -> list[Route]:
    """The routes declared on ``handler``'s methods, bound to them."""
    cls = type(handler)
    routes = []
    for name, specs in marked_methods(handler, _ROUTES_ATTRIBUTE):
        for spec in specs:
            spec = replace(
                spec,
                allow=_either(spec.allow, getattr(handler, "allow", None)),
                deny=_either(spec.deny, getattr(handler, "deny", None)),
            )
            routes.append(Route(spec, getattr(handler, name), f"{cls.__name__}.{name}"))
    return routes


def _either(own: tuple[str, ...] | None, default: Iterable[str] | None) -> tuple[str, ...] | None:
    if own is not None:
        return own
    return None if default is None else tuple(default)
