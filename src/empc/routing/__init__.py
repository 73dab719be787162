"""Routing: XPath-matched stanzas to handler actions, and the reply contract."""

from ._admission import AccessRule, Limits, RateLimiter
from ._handler import DiscoInfo, DiscoItem, Handler, Identity
from ._requests import PendingRequests, RequestTimeout
from ._router import Router, ThreadRunner
from ._routes import Route, RouteSpec, iq, marked_methods, message, presence, route
from ._stanzas import (
    NS_STANZAS,
    STANZA_KINDS,
    Envelope,
    StanzaError,
    addressed_reply,
    make_error_reply,
    make_message,
    make_reply,
    make_stanza,
    parse_stanza_error,
    sender_of,
)
from ._tally import LATENCY_BUCKETS, Tally

__all__ = [
    "LATENCY_BUCKETS",
    "NS_STANZAS",
    "STANZA_KINDS",
    "AccessRule",
    "DiscoInfo",
    "DiscoItem",
    "Envelope",
    "Handler",
    "Identity",
    "Limits",
    "PendingRequests",
    "RateLimiter",
    "RequestTimeout",
    "Route",
    "RouteSpec",
    "Router",
    "StanzaError",
    "Tally",
    "ThreadRunner",
    "addressed_reply",
    "iq",
    "make_error_reply",
    "make_message",
    "make_reply",
    "make_stanza",
    "marked_methods",
    "message",
    "parse_stanza_error",
    "presence",
    "route",
    "sender_of",
]
