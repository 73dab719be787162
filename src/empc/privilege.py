"""Acting for the server's users: privileged entity (XEP-0356).

A server that grants a component privileges says which in a message sent
right after the handshake: ``urn:xmpp:privilege:1`` (ejabberd's
mod_privilege) or ``urn:xmpp:privilege:2`` (Prosody's, from
prosody-modules, which adds IQs on a user's behalf). The built-in
:class:`Privilege` handler keeps what the last such message granted, logs
it once, and speaks the namespace it came in: nothing is configured here.
Handlers reach it with ``Privilege.of(self.component)``:

- :meth:`Privilege.roster`, :meth:`Privilege.set_roster_item` and
  :meth:`Privilege.remove_roster_item` read and change a user's roster
  (the ``roster`` permission);
- :meth:`Privilege.send_as` sends a message from a user's bare JID (the
  ``message`` permission, ``outgoing``);
- :meth:`Privilege.iq_as` sends an IQ as a user and gives its answer (the
  ``iq`` permission of version 2, per namespace);
- with the ``presence`` permission, the server sends the users' presences
  to the component, and presence routes get them like any other.

What was not granted fails at once with :exc:`NotGranted`, before anything
is sent; what the server refuses fails with its :class:`~empc.StanzaError`.
Only the server (the component's parent domain) can grant: the same
message from anyone else is ignored, with a warning.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from lxml import etree
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from empc._component import Component
from empc._forwarding import (
    as_client,
    as_component,
    forwarded,
    forwarded_stanza,
    from_the_server,
)
from empc.protocol import JID, InvalidJID, LocalProtocolError, new_element
from empc.routing import Handler, StanzaError, make_stanza, message, parse_stanza_error, route

NS_PRIVILEGE_1 = "urn:xmpp:privilege:1"
NS_PRIVILEGE_2 = "urn:xmpp:privilege:2"
NAMESPACES = (NS_PRIVILEGE_1, NS_PRIVILEGE_2)
NS_ROSTER = "jabber:iq:roster"
_PREFIXES = {"p1": NS_PRIVILEGE_1, "p2": NS_PRIVILEGE_2}
_READS = ("get", "both")
_WRITES = ("set", "both")


class NotGranted(LocalProtocolError):
    """The server did not grant the permission this needs: nothing was sent."""


@dataclass(frozen=True)
class Permissions:
    """What the server granted, and in which namespace it said so (None
    until it has said anything).

    ``roster`` is ``none``, ``get``, ``set`` or ``both``; ``message``
    ``none`` or ``outgoing``; ``presence`` ``none``, ``managed_entity`` or
    ``roster``; ``iq`` maps each namespace to ``get``, ``set`` or
    ``both`` (version 2 only).
    """

    namespace: str | None = None
    roster: str = "none"
    message: str = "none"
    presence: str = "none"
    iq: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, privilege: etree._Element) -> Permissions:
        """The permissions a ``<privilege/>`` element lists (unknown
        accesses are left out)."""
        granted: dict[str, str] = {}
        iq: dict[str, str] = {}
        namespace = etree.QName(privilege).namespace
        for perm in privilege.iter(f"{{{namespace}}}perm"):
            access = perm.get("access", "")
            if access == "iq":
                for entry in perm.iter(f"{{{namespace}}}namespace"):
                    if entry.get("ns"):
                        iq[entry.get("ns", "")] = entry.get("type", "none")
            elif access in ("roster", "message", "presence"):
                granted[access] = perm.get("type", "none")
        return cls(namespace, iq=iq, **granted)

    def describe(self) -> str:
        """One line for the log."""
        iq = ", ".join(f"{ns} {kind}" for ns, kind in sorted(self.iq.items())) or "none"
        return f"roster {self.roster}, message {self.message}, presence {self.presence}, iq {iq}"


@dataclass(frozen=True)
class RosterItem:
    """An item of a user's roster (RFC 6121 §2.1.2)."""

    jid: str
    name: str | None = None
    subscription: str = "none"
    groups: tuple[str, ...] = ()

    @classmethod
    def parse(cls, item: etree._Element) -> RosterItem:
        return cls(
            item.get("jid", ""),
            item.get("name"),
            item.get("subscription", "none"),
            tuple(group.text or "" for group in item.iter(f"{{{NS_ROSTER}}}group")),
        )


class Privilege(Handler):
    """The permissions the server granted, and acting on them (see the
    module). Built in: ``builtins: {privilege: false}`` switches it off."""

    log = Logger()
    _advertisements: ClassVar[tuple[str, ...]] = tuple(f"{{{ns}}}privilege" for ns in NAMESPACES)

    def __init__(self, config: Mapping[str, object] | None = None) -> None:
        super().__init__(config)
        self.granted = Permissions()

    @classmethod
    def of(cls, component: Component) -> Privilege:
        """The component's privileges.

        :raises LookupError: if the built-in is switched off.
        """
        for handler in component.handlers:
            if isinstance(handler, cls):
                return handler
        raise LookupError(f"{component.domain} has no {cls.__name__} handler")

    # Before any handler's catch-all message route: only the server sends these.
    @message(xpath="p1:privilege | p2:privilege", namespaces=_PREFIXES, priority=10)
    def advertised(self, stanza: etree._Element) -> None:
        if not from_the_server(self.component, stanza, "privileges"):
            return
        [privilege] = [child for child in stanza if child.tag in self._advertisements]
        self.granted = Permissions.parse(privilege)
        self.log.info(
            "The server granted {domain}: {permissions}",
            domain=self.component.domain,
            permissions=self.granted.describe(),
        )

    # -- roster ------------------------------------------------------------

    # By XPath, not payload: a payload would make the roster a feature.
    @route("r:query", kind="iq", type="set", namespaces={"r": NS_ROSTER})
    def roster_push(self, stanza: etree._Element) -> None:
        """Acknowledge a roster push (version 2 sends the rosters' changes,
        from the user's bare JID): a handler's own route for these comes
        first, to hear them. A push from anyone else is refused, as RFC
        6121 §2.1.6 has a client do."""
        sender = stanza.get("from") or ""
        try:
            self._user(sender)
        except LocalProtocolError:
            raise StanzaError("forbidden", "not a roster push from a user of the server") from None

    async def roster(self, user: str) -> list[RosterItem]:
        """``user``'s roster (a bare JID of the server's)."""
        self._require(self.granted.roster in _READS, "read rosters (roster get)")
        query = make_stanza("iq", {"type": "get", "to": self._user(user)})
        new_element(NS_ROSTER, "query", parent=query)
        answer = await self.component.request(query)
        return [RosterItem.parse(item) for item in answer.iter(f"{{{NS_ROSTER}}}item")]

    def set_roster_item(self, user: str, item: RosterItem) -> Deferred[etree._Element]:
        """Add ``item`` to ``user``'s roster, or change it; the server pushes
        the change to the user's clients. (The subscription is the server's
        to decide: it is not sent.)"""
        attributes = {"jid": item.jid, "name": item.name}
        entry = new_element(
            NS_ROSTER, "item", {k: v for k, v in attributes.items() if v is not None}
        )
        for group in item.groups:
            new_element(NS_ROSTER, "group", parent=entry).text = group
        return self._set_roster(user, entry)

    def remove_roster_item(self, user: str, jid: str) -> Deferred[etree._Element]:
        """Remove ``jid`` from ``user``'s roster."""
        return self._set_roster(
            user, new_element(NS_ROSTER, "item", {"jid": jid, "subscription": "remove"})
        )

    def _set_roster(self, user: str, entry: etree._Element) -> Deferred[etree._Element]:
        try:
            self._require(self.granted.roster in _WRITES, "change rosters (roster set)")
            query = make_stanza("iq", {"type": "set", "to": self._user(user)})
        except LocalProtocolError:
            return fail()
        new_element(NS_ROSTER, "query", parent=query).append(entry)
        return self.component.request(query)

    # -- messages and IQs ------------------------------------------------------

    def send_as(self, user: str, stanza: etree._Element) -> None:
        """Send the message ``stanza`` from ``user``'s bare JID.

        :raises NotGranted: without the ``message`` permission.
        :raises LocalProtocolError: for a ``user`` that is not a bare JID of
            the server, or a stanza that is no message.
        """
        self._require(self.granted.message == "outgoing", "send messages (message outgoing)")
        if etree.QName(stanza).localname != "message":
            raise LocalProtocolError("send_as sends a message")
        wrapper = make_stanza("message", {"to": self.component.server_domain})
        privilege = new_element(self._namespace(), "privilege", parent=wrapper)
        forwarded(stanza, privilege).set("from", self._user(user))
        self.component.send(wrapper)

    async def iq_as(self, user: str, stanza: etree._Element) -> etree._Element:
        """Send the IQ ``stanza`` as ``user`` (to ``stanza``'s ``to``, by
        default the user's own account) and give the answer, in the
        component namespace.

        :raises NotGranted: unless the server speaks version 2 and granted
            the payload's namespace for this type of IQ.
        :raises LocalProtocolError: for a stanza that is no IQ get or set
            with one payload.
        :raises StanzaError: the error the IQ was answered with.
        """
        if stanza.get("type") not in ("get", "set") or len(stanza) != 1:
            raise LocalProtocolError("iq_as sends an IQ get or set with one payload")
        payload = etree.QName(stanza[0]).namespace
        kind = self.granted.iq.get(payload or "", "none")
        wanted = _READS if stanza.get("type") == "get" else _WRITES
        self._require(
            self.granted.namespace == NS_PRIVILEGE_2 and kind in wanted,
            f"send IQs as users in {payload} (iq {stanza.get('type')})",
        )
        bare = self._user(user)
        wrapper = make_stanza("iq", {"type": stanza.get("type"), "to": bare})
        inner = as_client(stanza)
        new_element(NS_PRIVILEGE_2, "privileged_iq", parent=wrapper).append(inner)
        inner.set("from", bare)
        inner.set("to", stanza.get("to") or bare)
        if inner.get("id") is None:
            inner.set("id", secrets.token_hex(8))
        answer = await self.component.request(wrapper)
        # Prosody answers with the IQ's answer forwarded in <privilege/>.
        privilege = answer.find(f"{{{NS_PRIVILEGE_2}}}privilege")
        wrapped = None if privilege is None else forwarded_stanza(privilege, "iq")
        if wrapped is None:
            raise StanzaError("undefined-condition", "the server's answer holds no forwarded IQ")
        if wrapped.get("type") == "error":
            raise parse_stanza_error(as_component(wrapped))
        return as_component(wrapped)

    # -- checks ----------------------------------------------------------------

    def _require(self, granted: bool, what: str) -> None:
        if not granted:
            raise NotGranted(
                f"{self.component.domain} may not {what}: the server granted "
                f"{self.granted.describe()}"
            )

    def _namespace(self) -> str:
        return self.granted.namespace or NS_PRIVILEGE_1

    def _user(self, user: str) -> str:
        """``user`` as a bare JID of the server.

        :raises LocalProtocolError: for anything else.
        """
        try:
            jid = JID.parse(user)
        except InvalidJID as e:
            raise LocalProtocolError(f"not a JID: {user!r} ({e})") from None
        server = self.component.server_domain
        if jid.local is None or jid.resource is not None or jid.domain != server:
            raise LocalProtocolError(f"{user!r} is not a bare JID of the server {server}")
        return str(jid.bare)
