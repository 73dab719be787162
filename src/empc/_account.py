"""An account: the handlers of a component, reached at a user's JID.

An :class:`Account` is a :class:`~empc.Component` whose address is a bare
JID on a server rather than a domain of its own, so the same handlers,
routes, replies, limits and test kit serve it. What an ordinary account
also does, as RFC 6121 asks of a client, its built-in :class:`Roster`
handler does: fetch the roster, send the initial presence (with XEP-0115
capabilities computed from the routes), answer presence subscription
requests as the config says, and take the server's roster pushes.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, cast

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from empc._component import Component, Link
from empc.protocol import (
    JID,
    NS_COMPONENT,
    InvalidJID,
    LocalProtocolError,
    UnackedQueueFull,
    new_element,
)
from empc.routing import (
    AccessRule,
    DiscoInfo,
    Envelope,
    Handler,
    StanzaError,
    make_stanza,
    presence,
    route,
    sender_of,
)

NS_ROSTER = "jabber:iq:roster"
NS_CAPS = "http://jabber.org/protocol/caps"
CAPS_NODE = "https://pypi.org/project/empc/"
SUBSCRIPTION_POLICIES = ("all", "none", "handler")
"""The named policies of ``subscriptions``; a list of entries is the other kind."""


class Account(Component):
    """The handlers of one account.

    :param jid: the account's full JID (the resource it asks for; the
        server may bind another, see :meth:`session_started`).
    :param identity: the disco#info identity: a client, a bot, by default.
    :param subscriptions: who may subscribe to its presence, and
    :param presence: its initial presence, for its :class:`Roster`, which
        it gets unless ``handlers`` has one.
    :param announce: whether a new session sends the initial presence and
        fetches the roster (a log-in that only checks the password does
        not).

    The other parameters are :class:`~empc.Component`'s. ``domain`` is the
    account's bare JID, the address its handlers serve and its replies
    come from (the stream sends them from the full JID); ``jid`` is the
    full JID of the session.
    """

    log = Logger()

    def __init__(
        self,
        jid: str,
        handlers: Iterable[Handler],
        clock: IReactorTime,
        *,
        identity: tuple[str, str, str] = ("client", "bot", "empc"),
        subscriptions: str | tuple[str, ...] = "all",
        presence: Mapping[str, Any] | None = None,
        announce: bool = True,
        **options: Any,
    ) -> None:
        address = JID.parse(jid)
        self._announce = announce
        handlers = list(handlers)
        if not any(isinstance(handler, Roster) for handler in handlers):
            handlers.append(Roster(subscriptions=subscriptions, presence=presence))
        super().__init__(
            address.domain,
            handlers,
            clock,
            identity=identity,
            server_domain=address.domain,
            **options,
        )
        self.jid = address
        self.domain = str(address.bare)
        self._bare = address.bare.casefold()
        self._held: _Held | None = None  # while suspended, and until the next session

    def suspend(self, limit: int) -> None:
        """The link dropped, and its session may be resumed (XEP-0198):
        handlers go on as if it were up. What they send waits, at most
        ``limit`` stanzas, for the next session (resumed, or new), and
        requests stay pending under their own deadlines."""
        self._held = self._link = _Held(limit)

    def unlink(self, reason: Failure) -> None:
        held, self._held = self._held, None
        if held is not None and held.stanzas:
            self.log.warn(
                "{count} stanzas {jid} sent while its link was down were never sent: {why}",
                count=len(held.stanzas),
                jid=self.domain,
                why=str(reason.value),
            )
        super().unlink(reason)

    def session_started(self, jid: str, resumed: bool) -> None:
        """The link carries a session as ``jid`` (the full JID the server
        bound). A new session announces itself and fetches the roster; a
        resumed one (XEP-0198) has both still."""
        self.jid = JID.parse(jid)
        if self._announce and not resumed:
            for handler in self.handlers:
                if isinstance(handler, Roster):
                    handler.session_started()
        # What waited for the link goes after the announcement, so that a
        # presence a handler sent meanwhile is not overridden by it.
        held, self._held = self._held, None
        if held is not None and self._link is not None:
            held.send_on(self._link, self.domain)

    def receive(self, stanza: etree._Element) -> None:
        """Serve a stanza the server delivered. One without ``from`` comes
        from the account itself, through its server (a roster push, say);
        one without ``to`` is for the session (RFC 6120 §8.1.2.1)."""
        if stanza.get("from") is None:
            stanza.set("from", self.domain)
        if stanza.get("to") is None:
            stanza.set("to", str(self.jid))
        super().receive(stanza)

    _misrouted_hint = "the server delivered another account's stanza"

    def serves(self, to: str) -> bool:
        """Whether ``to`` is this account, bare or with any resource."""
        try:
            return self.is_own(JID.parse(to))
        except InvalidJID:
            return False

    def addresses_itself(self, to: str | None) -> bool:
        """Always: every address it serves is the account itself."""
        return True

    def is_own(self, jid: JID) -> bool:
        """Whether ``jid`` is this account (any of its resources)."""
        return jid.bare.casefold() == self._bare

    @property
    def address(self) -> str:
        """The full JID: the server answers an IQ to the bare JID itself
        (RFC 6120 §10.5.4), so requests must name the session."""
        return str(self.jid)


class _Held:
    """Where an account's stanzas wait while its link is down (see
    :meth:`Account.suspend`)."""

    log = Logger()

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # Each as the link will take it: a stanza, or an empty IQ result.
        self.stanzas: list[etree._Element | Envelope] = []

    def send(self, stanza: etree._Element) -> None:
        self._hold(copy.deepcopy(stanza))

    def send_result(self, iq_id: str | None, to: str | None, sender: str | None) -> None:
        self._hold((iq_id, to, sender))

    def _hold(self, stanza: etree._Element | Envelope) -> None:
        if len(self.stanzas) >= self.limit:
            raise UnackedQueueFull(f"{len(self.stanzas)} stanzas wait for the link to come back")
        self.stanzas.append(stanza)

    def send_on(self, link: Link, jid: str) -> None:
        for stanza in self.stanzas:
            try:
                if isinstance(stanza, tuple):
                    link.send_result(*stanza)
                else:
                    link.send(stanza)
            except LocalProtocolError as e:
                self.log.warn(
                    "{jid} dropped a stanza that waited for its link: {why}", jid=jid, why=str(e)
                )


class Roster(Handler):
    """An account's roster and presence (RFC 6121), built in for accounts.

    :param subscriptions: who may subscribe to the account's presence:
        ``all``, ``none``, or bare JIDs, domains and ``list:NAME``; with
        ``handler``, the handlers' own presence routes answer.
    :param presence: the initial presence's ``show``, ``status`` and
        ``priority``.
    :ivar items: the roster, by bare JID: the ``<item/>`` elements the
        server sent, kept up to date by its pushes.
    """

    log = Logger()

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        subscriptions: str | tuple[str, ...] = "all",
        presence: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(config)
        self.items: dict[str, etree._Element] = {}
        self._policy = subscriptions
        self._presence: Mapping[str, Any] = presence or {}
        self._allowed: AccessRule | None = None

    @property
    def account(self) -> Account:
        return cast(Account, self.component)

    def start(self) -> None:
        if not isinstance(self._policy, str):
            self._allowed = self.component.access_rule(self._policy, None)

    def session_started(self) -> Deferred[None]:
        """Send the initial presence, and fetch the roster; fires once it
        is in :attr:`items` (or its failure is logged)."""
        try:
            self.component.send(self.initial_presence())
        except LocalProtocolError as e:  # a full queue, say: the fetch says more
            self.log.warn("Could not announce {jid}: {why}", jid=self.account.domain, why=str(e))
        # To the account's own bare JID, which is what no 'to' means
        # (RFC 6120 §10.3.3): the answer then comes from it.
        query = make_stanza("iq", {"type": "get", "to": self.account.domain})
        new_element(NS_ROSTER, "query", parent=query)
        fetched = self.component.request(query)
        return fetched.addCallbacks(self._fetched, self._fetch_failed)

    def initial_presence(self) -> etree._Element:
        """The presence the account announces itself with: the configured
        show, status and priority, and its capabilities (XEP-0115)."""
        stanza = make_stanza("presence")
        for name in ("show", "status"):
            if self._presence.get(name):
                new_element(NS_COMPONENT, name, parent=stanza).text = self._presence[name]
        priority = self._presence.get("priority")
        if priority:
            new_element(NS_COMPONENT, "priority", parent=stanza).text = str(priority)
        attributes = {"hash": "sha-1", "node": CAPS_NODE, "ver": self.capabilities_version()}
        new_element(NS_CAPS, "c", attributes, stanza)
        return stanza

    def capabilities_version(self) -> str:
        """The XEP-0115 verification string of what disco#info answers."""
        return capabilities_version([self.component.identity], self.component.router.features())

    def disco_info(self, node: str, requester: JID) -> DiscoInfo | None:
        # XEP-0115: the capabilities node is answered as the account is.
        if node == f"{CAPS_NODE}#{self.capabilities_version()}":
            return [self.component.identity], self.component.router.features()
        return None

    def _fetched(self, result: etree._Element) -> None:
        self.items = {}
        self._update(result)
        self.log.info(
            "Roster of {jid}: {count} contacts", jid=self.account.domain, count=len(self.items)
        )

    def _fetch_failed(self, failure: Failure) -> None:
        self.log.warn(
            "Could not fetch the roster of {jid}: {why}",
            jid=self.account.domain,
            why=str(failure.value),
        )

    def _update(self, stanza: etree._Element) -> None:
        for item in stanza.iterfind(f"{{{NS_ROSTER}}}query/{{{NS_ROSTER}}}item"):
            jid = item.get("jid")
            if not jid:
                continue
            if item.get("subscription") == "remove":
                self.items.pop(jid, None)
            else:
                self.items[jid] = item

    # Matched on the element rather than as a payload: receiving pushes is
    # not a feature to advertise.
    @route("roster:query", kind="iq", type="set", namespaces={"roster": NS_ROSTER})
    def push(self, stanza: etree._Element) -> None:
        """A roster push: only the account's own server may send one, from
        the bare JID (RFC 6121 §2.1.6), never one of its resources."""
        sender = sender_of(stanza)
        if sender.resource is not None or not self.account.is_own(sender):
            raise StanzaError("forbidden", "only the account's server pushes its roster")
        self._update(stanza)

    # Below every handler's own routes, which win whatever their priority.
    @presence("subscribe", priority=-100)
    def subscribe(self, stanza: etree._Element) -> etree._Element | None:
        """Answer a subscription request as ``subscriptions`` says."""
        requester = sender_of(stanza).bare
        if self._policy == "handler":
            self.log.info(
                "Subscription request from {jid} left unanswered: subscriptions is 'handler', "
                "and no handler's route takes it",
                jid=str(requester),
            )
            return None
        if self._allowed is not None:
            allowed = self._allowed.permits(requester)
        else:
            allowed = self._policy == "all"
        answer = "subscribed" if allowed else "unsubscribed"
        return make_stanza("presence", {"to": str(requester), "type": answer})


def capabilities_version(
    identities: Iterable[tuple[str, str, str]], features: Iterable[str]
) -> str:
    """XEP-0115 §5.1: the base64 SHA-1 of the sorted identities
    (``category/type/lang/name<``) and features (``feature<``)."""
    text = "".join(f"{category}/{kind}//{name}<" for category, kind, name in sorted(identities))
    text += "".join(f"{feature}<" for feature in sorted(features))
    return base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()
