"""empc: a framework for XMPP external components (XEP-0114) on Twisted.

Write handler classes whose methods are routed stanzas; empc connects to the
server, keeps the link alive and answers every IQ exactly once.
"""

from empc._component import Component, NotConnected
from empc._config import ComponentConfig, Config, ConfigError, load_config
from empc._connection import SendQueueFull
from empc.protocol import (
    JID,
    NS_COMPONENT,
    InvalidJID,
    LocalProtocolError,
    StreamError,
    new_element,
)
from empc.routing import (
    DiscoInfo,
    DiscoItem,
    Handler,
    Identity,
    Limits,
    RequestTimeout,
    StanzaError,
    iq,
    make_error_reply,
    make_message,
    make_reply,
    make_stanza,
    message,
    presence,
    route,
)

__all__ = [
    "JID",
    "NS_COMPONENT",
    "Component",
    "ComponentConfig",
    "Config",
    "ConfigError",
    "DiscoInfo",
    "DiscoItem",
    "Handler",
    "Identity",
    "InvalidJID",
    "Limits",
    "LocalProtocolError",
    "NotConnected",
    "RequestTimeout",
    "SendQueueFull",
    "StanzaError",
    "StreamError",
    "iq",
    "load_config",
    "make_error_reply",
    "make_message",
    "make_reply",
    "make_stanza",
    "message",
    "new_element",
    "presence",
    "route",
]
