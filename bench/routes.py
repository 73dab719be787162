"""Micro-benchmark: the cost of routing one stanza with 5 routes versus 200.

The router indexes its routes by what can be known without XPath (stanza
kind, type, IQ payload qualified name) and caches, per such key, the list of
candidate routes, so XPath only runs on the few routes that can match. This
program checks that registering many routes does not make matching much
dearer: for each stanza shape it times ``Router.match`` and the full
``Router.dispatch`` path (with a no-op ``send``) on a router holding 5 routes
and on one holding 200 (a superset of the 5), in the same process, and
prints the microseconds per stanza and the 200/5 ratio. The target: 200
routes cost at most 2x what 5 routes cost.

Two more shapes show the limits of the index, with no target: a chat
message whose XPath route comes after every other chat route (XPath routes
sharing a key are tried in order), and an IQ with a never-seen payload once
the candidate cache is full (every such key is then looked up afresh).

Usage: ``.venv/bin/python bench/routes.py [--repeat R] [--round-ms MS]``; the
exit status is 1 if a shape under the target is over it.
See bench/README.md, "Routing with many routes".
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from lxml import etree
from twisted.internet.task import Clock

from empc.protocol import NS_COMPONENT
from empc.routing import Handler, Router, iq, message, presence

TARGET_RATIO = 2.0
COMPONENT = "bench.localhost"
SENDER = "alice@example.org/phone"

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_TARGET = "urn:example:bench:target"

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


@dataclass(frozen=True)
class Decl:
    """One route declaration: a method name and the decorator that routes it."""

    name: str
    decorate: Decorator


def _action(name: str) -> Callable[[Any, etree._Element], None]:
    """A fresh no-op action (each route needs its own function object)."""

    def action(self: Any, stanza: etree._Element) -> None:
        return None

    action.__name__ = action.__qualname__ = name
    return action


def handler_class(class_name: str, decls: Sequence[Decl]) -> type[Handler]:
    """A Handler subclass whose methods are ``decls``, in order."""
    namespace: dict[str, Any] = {d.name: d.decorate(_action(d.name)) for d in decls}
    return type(class_name, (Handler,), namespace)


# --- The routes ------------------------------------------------------------

# The 5-route set. In the 200-route set the first three are registered first
# and the last two last, so the 5 keep their relative order.
CORE_FRONT = [
    Decl("bang_command", message("chat", xpath="c:body[starts-with(., '!')]")),
    Decl("subscribe", presence("subscribe")),
    Decl("disco_info", iq("get", f"{{{NS_DISCO_INFO}}}query")),
]
CORE_BACK = [
    # Registered after every other chat / any-type message route of the
    # 200-route set: a '?' message goes through all their XPaths first.
    Decl("help_command", message("chat", xpath="c:body[starts-with(., '?')]")),
    Decl("target", iq("get", f"{{{NS_TARGET}}}query")),  # registered last
]

# Well-known IQ payloads (namespace, local name) for the filler routes.
KNOWN_IQ = [
    ("http://jabber.org/protocol/disco#items", "query"),
    ("jabber:iq:version", "query"),
    ("jabber:iq:last", "query"),
    ("urn:xmpp:time", "time"),
    ("urn:xmpp:ping", "ping"),
    ("vcard-temp", "vCard"),
    ("urn:xmpp:vcard4", "vcard"),
    ("jabber:iq:register", "query"),
    ("jabber:iq:search", "query"),
    ("jabber:iq:roster", "query"),
    ("jabber:iq:private", "query"),
    ("jabber:iq:privacy", "query"),
    ("urn:xmpp:blocking", "blocklist"),
    ("http://jabber.org/protocol/pubsub", "pubsub"),
    ("http://jabber.org/protocol/pubsub#owner", "pubsub"),
    ("http://jabber.org/protocol/muc#admin", "query"),
    ("http://jabber.org/protocol/muc#owner", "query"),
    ("urn:xmpp:mam:2", "query"),
    ("urn:xmpp:http:upload:0", "request"),
    ("urn:xmpp:carbons:2", "enable"),
    ("http://jabber.org/protocol/bytestreams", "query"),
    ("urn:xmpp:jingle:1", "jingle"),
    ("urn:xmpp:push:0", "enable"),
    ("jabber:iq:oob", "query"),
    ("http://jabber.org/protocol/ibb", "open"),
]
COMMAND_NODES = [f"cmd-{i:02d}" for i in range(10)]
PRESENCE_TYPES = ("available", "unavailable", "subscribed", "unsubscribe", "unsubscribed", "probe")
MESSAGE_TYPES_COUNTS = (("chat", 12), ("groupchat", 10), ("normal", 8), ("headline", 5))
ANY_TYPE_MESSAGE_XPATHS = [
    ("receipt_request", "r:request", {"r": "urn:xmpp:receipts"}),
    ("receipt", "r:received", {"r": "urn:xmpp:receipts"}),
    ("chat_state", "s:composing or s:paused", {"s": "http://jabber.org/protocol/chatstates"}),
    ("correction", "m:replace", {"m": "urn:xmpp:message-correct:0"}),
    ("oob_link", "o:x/o:url", {"o": "jabber:x:oob"}),
]


def filler_routes(count: int) -> list[Decl]:
    """``count`` routes of a realistic mix, none matching the measured stanzas."""
    decls: list[Decl] = []
    # IQ routes: well-known payloads, then per-service ones, get and set.
    payloads = [*KNOWN_IQ, *((f"urn:example:svc{i:02d}:0", "query") for i in range(40))]
    for i, (ns, local) in enumerate(payloads):
        decls.append(Decl(f"iq_get_{i:02d}", iq("get", f"{{{ns}}}{local}")))
        decls.append(Decl(f"iq_set_{i:02d}", iq("set", f"{{{ns}}}{local}")))
    # Ad-hoc commands: one key, told apart by XPath on the node.
    for node in COMMAND_NODES:
        xpath = f"x:command[@node='{node}']"
        options: dict[str, Any] = {"namespaces": {"x": NS_COMMANDS}}
        decls.append(
            Decl(
                f"command_{node.replace('-', '_')}",
                iq("set", f"{{{NS_COMMANDS}}}command", xpath, **options),
            )
        )
    # Message routes with XPath on the body, by type; and some of any type.
    for mtype, n in MESSAGE_TYPES_COUNTS:
        for i in range(n):
            xpath = f"c:body[starts-with(., '{mtype[0]}{i:02d}:') or contains(., '#{mtype}{i}')]"
            decls.append(Decl(f"message_{mtype}_{i:02d}", message(mtype, xpath=xpath)))
    for name, xpath, namespaces in ANY_TYPE_MESSAGE_XPATHS:
        decls.append(Decl(f"message_{name}", message(None, xpath=xpath, namespaces=namespaces)))
    # Presence routes by type, some narrowed by XPath.
    for ptype in PRESENCE_TYPES:
        decls.append(Decl(f"presence_{ptype}", presence(ptype)))
        xpath = "starts-with(@to, 'room') and contains(@to, '@conference.')"
        decls.append(Decl(f"presence_{ptype}_room", presence(ptype, xpath=xpath)))
    for i in range(3):  # subscription requests to particular bots, after the core one
        xpath = f"starts-with(@to, 'bot{i}@')"
        decls.append(Decl(f"presence_subscribe_bot{i}", presence("subscribe", xpath=xpath)))
    if len(decls) != count:
        raise AssertionError(f"{len(decls)} filler routes, not {count}")
    return decls


def build_router(
    handlers: Sequence[type[Handler]], send: Callable[[etree._Element], None]
) -> Router:
    router = Router(send, Clock())
    for cls in handlers:
        router.add(cls())
    return router


def route_sets() -> dict[int, list[type[Handler]]]:
    """The handler classes of the 5-route and the 200-route routers."""
    core = CORE_FRONT + CORE_BACK
    filler = filler_routes(200 - len(core))
    chunks = [filler[i : i + 50] for i in range(0, len(filler), 50)]
    large = [
        handler_class("CoreFront", CORE_FRONT),
        *(handler_class(f"Service{n}", chunk) for n, chunk in enumerate(chunks)),
        handler_class("CoreBack", CORE_BACK),
    ]
    return {len(core): [handler_class("Core", core)], 200: large}


# --- The stanzas -----------------------------------------------------------


def parse(xml: str) -> etree._Element:
    return etree.fromstring(xml)


def iq_xml(ns: str, local: str = "query", type: str = "get") -> str:
    return (
        f"<iq xmlns='{NS_COMPONENT}' type='{type}' id='q1' from='{SENDER}' to='{COMPONENT}'>"
        f"<{local} xmlns='{ns}'/></iq>"
    )


def chat_xml(body: str) -> str:
    return (
        f"<message xmlns='{NS_COMPONENT}' type='chat' id='m1' from='{SENDER}' "
        f"to='bot@{COMPONENT}'><body>{body}</body>"
        "<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    )


@dataclass(frozen=True)
class Shape:
    label: str
    xml: str
    route: str | None  # the method name of the route that must match
    reply: str | None  # the reply dispatch must send: "result", "error" or None
    cache_miss: bool = False  # measure after thousands of made-up payloads
    worst_case: bool = False  # informative: the 2x target does not apply


SHAPES = [
    Shape("iq get, route registered last", iq_xml(NS_TARGET), "target", "result"),
    Shape("iq get, unknown payload", iq_xml("urn:example:unknown"), None, "error"),
    Shape("chat '!' body (XPath, 1st chat)", chat_xml("!weather Paris"), "bang_command", None),
    Shape(
        "presence subscribe",
        f"<presence xmlns='{NS_COMPONENT}' type='subscribe' from='{SENDER}' to='bot@{COMPONENT}'/>",
        "subscribe",
        None,
    ),
    Shape(
        "chat '?' body (XPath, last chat)",
        chat_xml("?help"),
        "help_command",
        None,
        worst_case=True,
    ),
    Shape(
        "iq unknown payload, after 5000 junk payloads",
        iq_xml("urn:example:never-seen"),
        None,
        "error",
        cache_miss=True,
        worst_case=True,
    ),
]


JUNK_PAYLOADS = 5000


def fill_cache(router: Router) -> None:
    """Send the router IQs with thousands of made-up payloads, as a peer
    could, before measuring: the lookups that follow must not slow down."""
    for i in range(JUNK_PAYLOADS):
        router.match(parse(iq_xml(f"urn:example:junk:{i}")))


# --- Measuring -------------------------------------------------------------


def noop_send(stanza: etree._Element) -> None:
    return None


def check(routers: dict[int, Router], shape: Shape, stanza: etree._Element) -> None:
    """Fail loudly unless both routers route ``shape`` as expected."""
    for size, router in routers.items():
        found = router.match(stanza)
        name = None if found is None else found.name.rpartition(".")[2]
        if name != shape.route:
            raise AssertionError(f"{shape.label}: {size} routes matched {name}, not {shape.route}")
        sent: list[etree._Element] = []
        build_router(route_sets()[size], sent.append).dispatch(stanza)
        got = [s.get("type") for s in sent]
        if got != ([] if shape.reply is None else [shape.reply]):
            raise AssertionError(f"{shape.label}: {size} routes sent {got}, not {shape.reply}")


def calibrate(call: Callable[[], object], round_s: float) -> int:
    """How many calls take about ``round_s`` seconds."""
    number = 100
    while True:
        elapsed = timeit.timeit(call, number=number)
        if elapsed >= 0.005:
            return max(1, int(number * round_s / elapsed))
        number *= 10


def measure(
    calls: dict[int, Callable[[], object]], repeat: int, round_s: float
) -> dict[int, float]:
    """Microseconds per call: the best of ``repeat`` rounds, routers interleaved."""
    number = calibrate(calls[max(calls)], round_s)
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeat):
        for size, call in calls.items():
            best[size] = min(best[size], timeit.timeit(call, number=number) / number)
    return {size: seconds * 1e6 for size, seconds in best.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="rounds per measurement (9)")
    parser.add_argument("--round-ms", type=float, default=25.0, help="length of a round (25)")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    sets = route_sets()
    routers = {size: build_router(handlers, noop_send) for size, handlers in sets.items()}
    for size, router in routers.items():
        if len(router.routes) != size:
            raise AssertionError(f"{len(router.routes)} routes registered, not {size}")
    small, large = sorted(routers)
    full = {size: build_router(handlers, noop_send) for size, handlers in sets.items()}
    for router in full.values():
        fill_cache(router)

    rows: list[tuple[Shape, dict[str, dict[int, float]]]] = []
    for shape in SHAPES:
        stanza = parse(shape.xml)
        check(routers, shape, stanza)
        use = full if shape.cache_miss else routers
        figures = {
            "match": measure(
                {size: partial(r.match, stanza) for size, r in use.items()},
                args.repeat,
                args.round_ms / 1000,
            ),
            "dispatch": measure(
                {size: partial(r.dispatch, stanza) for size, r in use.items()},
                args.repeat,
                args.round_ms / 1000,
            ),
        }
        rows.append((shape, figures))

    write = sys.stdout.write
    write(
        f"Router.match / Router.dispatch (no-op send), us per stanza, best of {args.repeat} "
        f"rounds; Python {sys.version.split()[0]}, lxml {etree.__version__}\n\n"
    )
    widths = (34, 8, 10, 10, 7)
    titles = ("shape", "path", f"{small} routes", f"{large} routes", f"{large}/{small}")
    write(
        "  ".join(
            t.ljust(w) if i < 2 else t.rjust(w)
            for i, (t, w) in enumerate(zip(titles, widths, strict=True))
        ).rstrip()
        + "\n"
    )
    write("  ".join("-" * w for w in widths) + "\n")
    for shape, figures in rows:
        for path, us in figures.items():
            write(
                f"{shape.label:<34}  {path:<8}  {us[small]:>10.2f}  {us[large]:>10.2f}  "
                f"{us[large] / us[small]:>6.2f}x\n"
            )
    write("\n")
    failed = False
    for shape, figures in rows:
        ratios = {path: us[large] / us[small] for path, us in figures.items()}
        ok = max(ratios.values()) <= TARGET_RATIO
        kind = "worst case, informative" if shape.worst_case else "target"
        failed |= not ok and not shape.worst_case
        write(
            f"{'OK  ' if ok else 'OVER'} {shape.label}: {large}-route cost is "
            f"{ratios['match']:.2f}x (match), {ratios['dispatch']:.2f}x (dispatch) the "
            f"{small}-route cost; target <= {TARGET_RATIO:g}x ({kind})\n"
        )
    write(f"\n{time.perf_counter() - started:.1f} s\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
