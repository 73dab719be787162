"""An account's stream to its server (RFC 6120 c2s) as a sans-IO state machine.

Theory of operation
-------------------

:class:`ClientStream` is a :class:`~empc.protocol.XmppStream`: the parser,
the limits, stream errors and the closing handshake are the component
stream's. What differs is how the stream comes to be READY. Every step
starts with the server's ``<stream:features/>``, after our header::

    OPENING --header, features--> HANDSHAKING, one step at a time:
      STARTTLS  offered and not yet encrypted: <starttls/>, the server's
                <proceed/> (event TlsProceed); the caller starts TLS on
                the transport and calls tls_started(): a new stream
      SASL      the strongest mechanism offered (choose_mechanism), the
                exchange of empc.protocol._sasl; on success, a new stream
      RESUME    a session to resume (XEP-0198) and the server offers it:
                <resume/>; <resumed/> --> READY (event Resumed), with
                what was not acknowledged sent again; <failed/> --> BIND
                (event ResumeFailed)
      BIND      <iq type='set'><bind/></iq>; the server's JID --> READY
                (event Bound), after <enable/> has had its answer when
                the server offers stream management
    a step that cannot succeed --> CLOSING (event NegotiationFailed):
      TLS required but not offered, no usable mechanism, a refused
      password, a server that cannot prove it knows the password, a
      refused resource

Once READY, what is routed is stanzas in ``jabber:client``, and what
handlers build is in ``jabber:component:accept``: empc's handlers,
routes and replies are written once, for the component namespace. So
each stanza changes namespace at the stream's edge, its own elements
only (those in the stanza's namespace, down from the stanza itself): a
payload in another namespace, a forwarded stanza in it included, stays
as it is.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

from lxml import etree

from ._errors import (
    BadFormat,
    LocalProtocolError,
    StreamError,
    UnsupportedStanzaType,
    UnsupportedVersion,
)
from ._jid import JID, InvalidJID
from ._sasl import NS_SASL, SaslClient, SaslError, choose_mechanism
from ._sm import NS_SM, StreamManagement
from ._stream import (
    NS_COMPONENT,
    NS_STREAMS,
    Authenticated,
    Event,
    StanzaReceived,
    State,
    XmppStream,
    result_bytes,
)
from ._xml import new_element

NS_CLIENT = "jabber:client"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"

_FEATURES_TAG = f"{{{NS_STREAMS}}}features"
_CLIENT_STANZAS = frozenset(f"{{{NS_CLIENT}}}{name}" for name in ("message", "presence", "iq"))
_COMPONENT_PREFIX = f"{{{NS_COMPONENT}}}"


class TlsUnavailable(Exception):
    """The account requires TLS, and the server does not offer it
    (``permanent``), or could not start it."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


class UnusableCredentials(Exception):
    """The account's JID or password cannot be sent with the mechanism
    the server offers (a character SASLprep forbids, say)."""

    permanent = True


class BindFailed(Exception):
    """The server refused to bind a resource.

    :ivar condition: the stanza error's condition, such as ``conflict``.
    """

    permanent = False

    def __init__(self, condition: str | None) -> None:
        super().__init__(f"the server refused to bind the resource ({condition or 'no reason'})")
        self.condition = condition


@dataclass(frozen=True, slots=True)
class TlsProceed(Event):
    """The server agreed to STARTTLS: start TLS on the transport now, then
    call :meth:`ClientStream.tls_started`."""


@dataclass(frozen=True, slots=True)
class NegotiationFailed(Event):
    """The stream could not become READY; our close has been queued.

    ``error`` is :class:`TlsUnavailable`, a :class:`~empc.protocol.SaslError`
    (a refused password is :class:`~empc.protocol.AuthenticationFailed`),
    :class:`UnusableCredentials` or :class:`BindFailed`.
    """

    error: Exception


@dataclass(frozen=True, slots=True)
class Bound(Authenticated):
    """A new session is READY, as the full JID ``jid`` the server bound."""

    jid: str


@dataclass(frozen=True, slots=True)
class Resumed(Authenticated):
    """The previous session is READY again (XEP-0198); the ``resent``
    stanzas it had not acknowledged have been sent again."""

    resent: int


@dataclass(frozen=True, slots=True)
class ResumeFailed(Event):
    """The server could not resume the previous session: a new one is
    being bound, and the ``lost`` stanzas it had not acknowledged may not
    have reached anyone."""

    lost: int


class _Step(enum.Enum):
    FEATURES = "features"
    STARTTLS = "starttls"
    TLS = "tls"
    SASL = "sasl"
    RESUME = "resume"
    BIND = "bind"
    ENABLE = "enable"
    DONE = "done"


class ClientStream(XmppStream):
    """One stream of an account to its server.

    :param jid: the account's JID; its resource, if any, is the one asked
        for (the server may bind another); without one, a random one is.
    :param password: the account's password.
    :param tls_required: whether to refuse a server that does not offer
        STARTTLS on an unencrypted connection.
    :param encrypted: whether the connection is encrypted already (direct
        TLS, XEP-0368): no STARTTLS then.
    :param stream_management: the account's XEP-0198 session, kept across
        connections so that this stream can resume it; None for none.
    :param max_stanza_size: the largest stanza accepted from the server.
    :param max_depth: how deeply a stanza's elements may nest.
    """

    namespace = NS_CLIENT

    def __init__(
        self,
        jid: str,
        password: str,
        *,
        tls_required: bool = True,
        encrypted: bool = False,
        stream_management: StreamManagement | None = None,
        max_stanza_size: int = 512 * 1024,
        max_depth: int = 64,
    ) -> None:
        address = JID.parse(jid)
        if address.local is None:
            raise LocalProtocolError(f"an account's JID needs a local part: {jid!r}")
        super().__init__(address.domain, max_stanza_size=max_stanza_size, max_depth=max_depth)
        self.jid = address
        self._password = password
        self._tls_required = tls_required
        self.encrypted = encrypted
        self._sm = stream_management
        self._sasl: SaslClient | None = None
        self._step = _Step.FEATURES
        self._sm_offered = False
        self._bind_id = ""
        self._early: list[etree._Element] = []  # stanzas before <enabled/>

    @property
    def bare(self) -> str:
        return str(self.jid.bare)

    @property
    def mechanism(self) -> str | None:
        """The SASL mechanism chosen, once the server's offer is known."""
        return None if self._sasl is None else self._sasl.mechanism

    def _header_bytes(self) -> bytes:
        # The bare JID as 'from' only once encrypted (RFC 6120 §4.7.1):
        # on a clear stream it would tell anyone listening who connects.
        sender = b" from=" + quoteattr(self.bare).encode() if self.encrypted else b""
        return (
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client'"
            b" xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to="
            + quoteattr(self.to).encode()
            + sender
            + b">"
        )

    def tls_started(self) -> None:
        """The transport is encrypted now: open a new stream on it.

        :raises LocalProtocolError: if the server did not agree to STARTTLS.
        """
        if self._step is not _Step.TLS:
            raise LocalProtocolError("TLS was not negotiated on this stream")
        self.encrypted = True
        self._step = _Step.FEATURES
        self._restart()

    def _opened(self, header: etree._Element, events: list[Event]) -> None:
        version = header.get("version", "0.9")
        if version.partition(".")[0] != "1":
            self._violation(UnsupportedVersion(f"the server speaks version {version}"), events)

    # -- the negotiation ---------------------------------------------------

    def _element(self, element: etree._Element, events: list[Event]) -> None:
        tag = element.tag
        if self.authenticated and tag in _CLIENT_STANZAS:
            # Also while CLOSING: as for a component (RFC 6120 §4.4).
            if self._sm is not None:
                self._sm.received()
            events.append(StanzaReceived(renamespaced(element, NS_CLIENT, NS_COMPONENT)))
        elif self.state is State.CLOSING:
            return
        elif self._step is _Step.ENABLE and tag in _CLIENT_STANZAS:
            # Routed to the new resource before <enabled/> came: served
            # once READY, and not counted (the server counts from there).
            self._early.append(element)
        elif self.authenticated and etree.QName(element).namespace == NS_SM:
            self._stream_management(element, events)
        elif self.state is State.HANDSHAKING:
            self._negotiate(element, events)
        else:
            self._violation(UnsupportedStanzaType(f"unexpected {tag}"), events)

    def _negotiate(self, element: etree._Element, events: list[Event]) -> None:
        tag = element.tag
        step = self._step
        try:
            if step is _Step.FEATURES and tag == _FEATURES_TAG:
                self._features(element, events)
            elif step is _Step.STARTTLS and tag == f"{{{NS_TLS}}}proceed":
                self._step = _Step.TLS
                self._discard_rest = True  # what follows is TLS's, not XML
                events.append(TlsProceed())
            elif step is _Step.STARTTLS and tag == f"{{{NS_TLS}}}failure":
                raise TlsUnavailable("the server could not start TLS", permanent=False)
            elif step is _Step.SASL and etree.QName(element).namespace == NS_SASL:
                self._authenticate(element)
            elif step is _Step.RESUME and etree.QName(element).namespace == NS_SM:
                self._resumption(element, events)
            elif step is _Step.BIND and tag == f"{{{NS_CLIENT}}}iq":
                self._bound(element, events)
            elif step is _Step.ENABLE and etree.QName(element).namespace == NS_SM:
                self._enabling(element, events)
            else:
                self._violation(
                    UnsupportedStanzaType(f"unexpected {tag} during {step.value}"), events
                )
        except (SaslError, TlsUnavailable, UnusableCredentials, BindFailed) as e:
            self._give_up(e, events)
        except StreamError as e:
            self._violation(e, events)

    def _features(self, features: etree._Element, events: list[Event]) -> None:
        if not self.encrypted:
            if features.find(f"{{{NS_TLS}}}starttls") is not None:
                self._step = _Step.STARTTLS
                self._outbox.append(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                return
            if self._tls_required:
                raise TlsUnavailable(
                    "the server does not offer TLS, and the account requires it (tls: required)",
                    permanent=True,
                )
        if self._sasl is None:
            offered = [m.text or "" for m in features.iterfind(f"{{{NS_SASL}}}mechanisms/*")]
            assert self.jid.local is not None
            mechanism = choose_mechanism(offered, tls=self.encrypted)
            try:
                self._sasl = SaslClient(mechanism, self.jid.local, self._password)
            except LocalProtocolError as e:
                raise UnusableCredentials(str(e)) from None
            self._step = _Step.SASL
            self._outbox.append(etree.tostring(self._sasl.auth()))
            return
        self._sm_offered = features.find(f"{{{NS_SM}}}sm") is not None
        if self._sm is not None and self._sm.resumable and not self._sm_offered:
            # Nothing to resume the session with: what it had not
            # acknowledged may be lost, as when resuming fails.
            lost = len(self._sm.unacked_stanzas)
            self._sm.reset()
            events.append(ResumeFailed(lost))
        if self._sm_offered and self._sm is not None and self._sm.resumable:
            self._step = _Step.RESUME
            self._outbox.append(etree.tostring(self._sm.resume()))
        elif features.find(f"{{{NS_BIND}}}bind") is not None:
            self._bind()
        else:
            raise BadFormat("the server offers no resource binding")

    def _authenticate(self, element: etree._Element) -> None:
        assert self._sasl is not None
        response = self._sasl.receive(element)
        if response is not None:
            self._outbox.append(etree.tostring(response))
        elif self._sasl.authenticated:
            self._step = _Step.FEATURES
            self._restart()

    def _bind(self) -> None:
        self._step = _Step.BIND
        self._bind_id = "bind-" + secrets.token_hex(4)
        iq = new_element(NS_CLIENT, "iq", {"type": "set", "id": self._bind_id})
        bind = new_element(NS_BIND, "bind", parent=iq)
        resource = self.jid.resource or "empc-" + secrets.token_hex(4)
        new_element(NS_BIND, "resource", parent=bind).text = resource
        self._outbox.append(etree.tostring(iq))

    def _bound(self, iq: etree._Element, events: list[Event]) -> None:
        if iq.get("id") != self._bind_id:
            raise UnsupportedStanzaType("a stanza before the resource was bound")
        if iq.get("type") == "error":
            condition = next(
                (etree.QName(c).localname for c in iq.iterfind(f"{{{NS_CLIENT}}}error/*")), None
            )
            raise BindFailed(condition)
        text = iq.findtext(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid")
        try:
            jid = JID.parse(text or "")
        except InvalidJID:
            raise BadFormat(f"the server bound an invalid JID: {text!r}") from None
        if jid.bare.casefold() != self.jid.bare.casefold() or jid.resource is None:
            raise BadFormat(f"the server bound {text!r}, not a resource of {self.bare}")
        self.jid = jid
        if self._sm_offered and self._sm is not None:
            self._step = _Step.ENABLE
            self._outbox.append(etree.tostring(self._sm.enable()))
        else:
            self._ready(Bound(str(jid)), events)

    def _enabling(self, element: etree._Element, events: list[Event]) -> None:
        assert self._sm is not None
        name = etree.QName(element).localname
        if name == "enabled":
            self._sm.enabled(element)
        elif name == "failed":
            self._sm.enable_failed(element)
        else:
            raise UnsupportedStanzaType(f"{element.tag} in answer to <enable/>")
        self._ready(Bound(str(self.jid)), events)

    def _resumption(self, element: etree._Element, events: list[Event]) -> None:
        assert self._sm is not None
        name = etree.QName(element).localname
        if name == "resumed":
            unacknowledged = self._sm.resumed(element)
            self._outbox.extend(unacknowledged)
            self._ready(Resumed(len(unacknowledged)), events)
        elif name == "failed":
            events.append(ResumeFailed(len(self._sm.resume_failed(element))))
            self._bind()
        else:
            raise UnsupportedStanzaType(f"{element.tag} in answer to <resume/>")

    def _ready(self, event: Authenticated, events: list[Event]) -> None:
        self._step = _Step.DONE
        self.state = State.READY
        self.authenticated = True
        events.append(event)
        early, self._early = self._early, []
        events += (StanzaReceived(renamespaced(e, NS_CLIENT, NS_COMPONENT)) for e in early)

    def _give_up(self, error: Exception, events: list[Event]) -> None:
        self._server_ended = True  # nothing it says now changes the outcome
        self._send_close()
        self.state = State.CLOSING
        events.append(NegotiationFailed(error))

    # -- once READY ----------------------------------------------------------

    def _stream_management(self, element: etree._Element, events: list[Event]) -> None:
        name = etree.QName(element).localname
        try:
            if self._sm is None or not self._sm.active:
                raise UnsupportedStanzaType(f"{element.tag}: stream management is not on")
            if name == "r":
                self._outbox.append(etree.tostring(self._sm.answer()))
            elif name == "a":
                self._sm.acked(element)
            else:
                raise UnsupportedStanzaType(f"unexpected {element.tag}")
        except StreamError as e:
            self._violation(e, events)

    def request_ack(self) -> None:
        """Ask the server which stanzas it has handled (XEP-0198 ``<r/>``),
        when stream management is on."""
        if self.state is State.READY and self._sm is not None and self._sm.active:
            self._outbox.append(etree.tostring(self._sm.request()))

    def send(self, stanza: etree._Element) -> None:
        """Queue a stanza, from the account's full JID.

        :raises LocalProtocolError: as :meth:`ComponentStream.send` does,
            but a ``to`` may be left out (the stanza is for the account or
            its server), and ``from`` may only be the account's bare or
            full JID; :class:`~empc.protocol.UnackedQueueFull` when stream
            management has as many stanzas waiting for the server's
            acknowledgement as it may keep. The stream is left untouched.
        """
        self._check_stanza(stanza)
        self._check_sender(stanza.get("from"))
        stanza.set("from", str(self.jid))
        if stanza.tag.startswith(_COMPONENT_PREFIX):
            stanza = renamespaced(stanza, NS_COMPONENT, NS_CLIENT)
        self._queue(etree.tostring(stanza, with_tail=False))

    def send_result(self, iq_id: str | None, to: str | None, sender: str | None) -> None:
        """Queue an empty IQ ``result``; what fails is what fails for
        :meth:`send`."""
        self._check_state()
        self._check_sender(sender)
        self._queue(result_bytes(iq_id, to, str(self.jid)))

    def _check_sender(self, sender: str | None) -> None:
        # The bare or the full JID, in any case of its local part and domain
        # (a reply's 'from' is the request's 'to', as its sender wrote it):
        # 'from' becomes the full JID anyway.
        if sender is None or sender in (str(self.jid), self.bare):
            return
        try:
            jid = JID.parse(sender)
        except InvalidJID:
            own = False
        else:
            own = jid.bare.casefold() == self.jid.bare.casefold() and jid.resource in (
                None,
                self.jid.resource,
            )
        if not own:
            raise LocalProtocolError(
                f"an account sends as itself only: 'from' {sender!r} is not {self.jid}"
            )

    def _queue(self, data: bytes) -> None:
        if self._sm is not None:
            self._sm.sent(data)  # refuses, before anything is queued, when full
        self._outbox.append(data)


def renamespaced(element: etree._Element, source: str, namespace: str) -> etree._Element:
    """A copy of ``element`` (a stanza in the ``source`` namespace) in
    ``namespace``, with each of its descendants that is in ``source``
    while all its ancestors are too; everything else (a payload in
    another namespace, whatever it holds) is copied as it is."""
    target = f"{{{namespace}}}"
    source = f"{{{source}}}"

    def copy(original: etree._Element, parent: etree._Element | None) -> etree._Element:
        tag = target + original.tag[len(source) :]
        if parent is None:
            # The stanza's other declarations stay: a prefix may be used
            # in an attribute's value, where lxml cannot see it.
            nsmap: Any = {**original.nsmap, None: namespace}  # the stubs reject None
            element = etree.Element(tag, nsmap=nsmap)
        else:
            element = etree.SubElement(parent, tag)
        for key, value in original.items():
            element.set(key, value)
        element.text = original.text
        element.tail = original.tail
        for child in original:
            if isinstance(child.tag, str) and child.tag.startswith(source):
                copy(child, element)
            else:
                element.append(child.__copy__())  # type: ignore[attr-defined]
        return element

    return copy(element, None)
