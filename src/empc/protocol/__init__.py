"""The sans-IO core of empc: bytes in, events out; events in, bytes out.

Nothing here imports a reactor or touches a socket, so every behaviour can
be driven and tested with plain byte strings.
"""

from ._errors import (
    NS_STREAM_ERRORS,
    STREAM_ERRORS,
    BadFormat,
    Conflict,
    HostUnknown,
    InvalidNamespace,
    LocalProtocolError,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    RestrictedContent,
    RestrictedXML,
    StreamError,
    SystemShutdown,
    UndefinedCondition,
    UnsupportedStanzaType,
)
from ._jid import JID, InvalidJID, in_domain
from ._masking import masked
from ._parser import ParserEvent, StreamFooter, StreamHeader, StreamParser
from ._stream import (
    NS_COMPONENT,
    NS_STREAMS,
    Authenticated,
    ComponentStream,
    Event,
    ProtocolViolation,
    ServerClosed,
    StanzaReceived,
    State,
    StreamClosed,
    StreamErrorReceived,
    StreamOpened,
    handshake_digest,
    parse_stream_error,
)
from ._xml import new_element

__all__ = [
    "JID",
    "NS_COMPONENT",
    "NS_STREAMS",
    "NS_STREAM_ERRORS",
    "STREAM_ERRORS",
    "Authenticated",
    "BadFormat",
    "ComponentStream",
    "Conflict",
    "Event",
    "HostUnknown",
    "InvalidJID",
    "InvalidNamespace",
    "LocalProtocolError",
    "NotAuthorized",
    "NotWellFormed",
    "ParserEvent",
    "PolicyViolation",
    "ProtocolViolation",
    "RestrictedContent",
    "RestrictedXML",
    "ServerClosed",
    "StanzaReceived",
    "State",
    "StreamClosed",
    "StreamError",
    "StreamErrorReceived",
    "StreamFooter",
    "StreamHeader",
    "StreamOpened",
    "StreamParser",
    "SystemShutdown",
    "UndefinedCondition",
    "UnsupportedStanzaType",
    "handshake_digest",
    "in_domain",
    "masked",
    "new_element",
    "parse_stream_error",
]
