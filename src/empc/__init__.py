"""empc: a framework for XMPP external components (XEP-0114) on Twisted.

Write handler classes whose methods are routed stanzas; empc connects to the
server, keeps the link alive and answers every IQ exactly once.
"""

from empc._component import Component, NotConnected
from empc.protocol import JID, LocalProtocolError, StreamError
from empc.routing import (
    Handler,
    RequestTimeout,
    StanzaError,
    iq,
    make_error_reply,
    make_reply,
    make_stanza,
    message,
    presence,
    route,
)

__all__ = [
    "JID",
    "Component",
    "Handler",
    "LocalProtocolError",
    "NotConnected",
    "RequestTimeout",
    "StanzaError",
    "StreamError",
    "iq",
    "make_error_reply",
    "make_reply",
    "make_stanza",
    "message",
    "presence",
    "route",
]
