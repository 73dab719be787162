"""Stream errors (RFC 6120 §4.9) and local protocol errors.

A peer that breaks the protocol and a caller that misuses the API are two
different things, so they are two different types:

- :class:`StreamError` and its subclasses, one per RFC 6120 condition, are
  the stream-level errors a peer sends us or that we send a peer. They are
  raised inside the core when the peer breaks the protocol and reach the
  caller as events, never as exceptions.
- :class:`LocalProtocolError` is raised to the caller when it asks the core
  for something the protocol forbids (sending before the handshake, a stanza
  without ``to``, a ``from`` outside the component's domain).
"""

from __future__ import annotations

from typing import ClassVar

from lxml import etree

NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"


class LocalProtocolError(Exception):
    """The caller asked for something the protocol does not allow.

    Nothing was written to the stream.
    """


class RestrictedContent(LocalProtocolError):
    """A stanza to send holds a comment, a processing instruction or an
    entity reference, which RFC 6120 §11.1 keeps out of a stream (the server
    would close it)."""


class StreamError(Exception):
    """A stream error: sent by a peer, or sent by us to a peer.

    :ivar condition: the RFC 6120 defined condition, such as ``conflict``.
    :ivar text: the optional human-readable text.
    :cvar permanent: whether connecting again the same way is pointless
        until someone changes the configuration.
    """

    condition: ClassVar[str] = "undefined-condition"
    permanent: ClassVar[bool] = False

    def __init__(self, text: str | None = None) -> None:
        super().__init__(self.condition if text is None else f"{self.condition}: {text}")
        self.text = text

    def application_condition(self) -> etree._Element | None:
        """An element that says more than the condition (RFC 6120 §4.9.4),
        sent after it; None for most errors."""
        return None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, StreamError) and type(other) is type(self) and other.text == self.text
        )

    def __hash__(self) -> int:
        return hash((type(self), self.text))


class BadFormat(StreamError, ValueError):
    condition = "bad-format"


class BadNamespacePrefix(StreamError, ValueError):
    condition = "bad-namespace-prefix"


class Conflict(StreamError):
    condition = "conflict"


class ConnectionTimeout(StreamError, TimeoutError):
    condition = "connection-timeout"


class HostGone(StreamError):
    condition = "host-gone"
    permanent = True


class HostUnknown(StreamError, LookupError):
    condition = "host-unknown"
    permanent = True


class ImproperAddressing(StreamError, ValueError):
    condition = "improper-addressing"


class InternalServerError(StreamError):
    condition = "internal-server-error"


class InvalidFrom(StreamError, ValueError):
    condition = "invalid-from"
    permanent = True


class InvalidNamespace(StreamError, ValueError):
    condition = "invalid-namespace"
    permanent = True


class InvalidXML(StreamError, ValueError):
    condition = "invalid-xml"


class NotAuthorized(StreamError, PermissionError):
    condition = "not-authorized"
    permanent = True


class NotWellFormed(StreamError, ValueError):
    condition = "not-well-formed"


class PolicyViolation(StreamError):
    condition = "policy-violation"


class RemoteConnectionFailed(StreamError):
    condition = "remote-connection-failed"


class Reset(StreamError):
    condition = "reset"


class ResourceConstraint(StreamError):
    condition = "resource-constraint"


class RestrictedXML(StreamError, ValueError):
    condition = "restricted-xml"


class SeeOtherHost(StreamError):
    condition = "see-other-host"


class SystemShutdown(StreamError):
    condition = "system-shutdown"


class UndefinedCondition(StreamError):
    condition = "undefined-condition"


class UnsupportedEncoding(StreamError, ValueError):
    condition = "unsupported-encoding"


class UnsupportedFeature(StreamError):
    condition = "unsupported-feature"


class UnsupportedStanzaType(StreamError, ValueError):
    condition = "unsupported-stanza-type"


class UnsupportedVersion(StreamError, ValueError):
    condition = "unsupported-version"


STREAM_ERRORS: dict[str, type[StreamError]] = {
    cls.condition: cls
    for cls in (
        BadFormat,
        BadNamespacePrefix,
        Conflict,
        ConnectionTimeout,
        HostGone,
        HostUnknown,
        ImproperAddressing,
        InternalServerError,
        InvalidFrom,
        InvalidNamespace,
        InvalidXML,
        NotAuthorized,
        NotWellFormed,
        PolicyViolation,
        RemoteConnectionFailed,
        Reset,
        ResourceConstraint,
        RestrictedXML,
        SeeOtherHost,
        SystemShutdown,
        UndefinedCondition,
        UnsupportedEncoding,
        UnsupportedFeature,
        UnsupportedStanzaType,
        UnsupportedVersion,
    )
}
"""Every RFC 6120 stream error condition, by its element name."""
