"""Serving the users' own namespaces: namespace delegation (XEP-0355).

A server can hand the IQs its users send to their own account, or to the
server, in a namespace to a component: it says which namespaces in a
message after the handshake (``urn:xmpp:delegation:1`` from ejabberd's
mod_delegation, ``:2`` from Prosody's), then forwards each such IQ wrapped
in ``<delegation><forwarded>``. The built-in :class:`Delegation` handler
unwraps it and serves it through the routes like any IQ: the action sees
the IQ as its sender sent it (its ``from``, its ``to`` at a user's bare JID
or at the server); the answer, result or error under the same reply
contract, goes back wrapped. A route serves a delegated namespace by
matching its payload, as it would without delegation. The sender is not
always the user the IQ is addressed to: the server forwards an IQ to a
user's bare JID from anyone (another user, another server's), so a route
serving a user's own data checks that the sender's bare JID is its ``to``.

The wrapping is a claim that the server makes, so it is checked before
anything is unwrapped (a user must not be able to have the component serve
a forged request as another user's):

- an envelope not from the server (the component's parent domain) is
  refused ``forbidden``;
- one that does not hold exactly one forwarded IQ get or set with one
  payload, from a valid JID, is refused ``bad-request``;
- one for a namespace the server has not said it delegates is refused
  ``forbidden``.

The server asks the component which features it has for a namespace with
disco#info on the node ``<delegation namespace>::<namespace>``: the answer
lists the namespace and the features under it, when a route serves it.
"""

from __future__ import annotations

from collections.abc import Mapping

from lxml import etree
from twisted.logger import Logger

from empc._forwarding import as_component, forwarded, forwarded_stanza, from_the_server
from empc.protocol import JID, InvalidJID, new_element
from empc.routing import DiscoInfo, Handler, StanzaError, iq, make_error_reply, message

NS_DELEGATION_1 = "urn:xmpp:delegation:1"
NS_DELEGATION_2 = "urn:xmpp:delegation:2"
NAMESPACES = (NS_DELEGATION_1, NS_DELEGATION_2)
_PREFIXES = {"d1": NS_DELEGATION_1, "d2": NS_DELEGATION_2}
_ENVELOPES = frozenset(f"{{{ns}}}delegation" for ns in NAMESPACES)
_A_DAY = 86400.0


class Delegation(Handler):
    """Unwraps delegated IQs and wraps their answers (see the module).
    Built in: ``builtins: {delegation: false}`` switches it off.

    :ivar delegated: the namespaces the server last said it delegates, each
        with the delegation namespace it said so in.
    """

    log = Logger()
    features = NAMESPACES

    def __init__(self, config: Mapping[str, object] | None = None) -> None:
        super().__init__(config)
        self.delegated: dict[str, str] = {}

    # Before any handler's catch-all message route: only the server sends these.
    @message(xpath="d1:delegation | d2:delegation", namespaces=_PREFIXES, priority=10)
    def advertised(self, stanza: etree._Element) -> None:
        if not from_the_server(self.component, stanza, "delegations"):
            return
        # Added to what came before: ejabberd says one namespace a message.
        added = {
            delegated.get("namespace", ""): etree.QName(delegation).namespace or ""
            for delegation in stanza
            if delegation.tag in _ENVELOPES
            for delegated in delegation.iter(f"{{{etree.QName(delegation).namespace}}}delegated")
            if delegated.get("namespace")
        }
        if added.items() <= self.delegated.items():
            return  # ejabberd says it again for the namespace's bare-JID node
        self.delegated.update(added)
        self.log.info(
            "The server delegates to {domain}: {namespaces}",
            domain=self.component.domain,
            namespaces=", ".join(sorted(self.delegated)),
        )

    # No deadline of its own (a day): the user's request has its route's,
    # and an error on the envelope would never reach the user (ejabberd
    # answers the user with nothing for it).
    @iq(("get", "set"), f"{{{NS_DELEGATION_1}}}delegation", timeout=_A_DAY)
    @iq(("get", "set"), f"{{{NS_DELEGATION_2}}}delegation", timeout=_A_DAY)
    async def delegated_iq(self, stanza: etree._Element) -> etree._Element:
        envelope = stanza[0]
        request = self._unwrapped(stanza.get("from"), envelope)
        try:
            answer = await self.component.answer(request)
        except StanzaError as e:  # the user's request, not the envelope, failed
            answer = make_error_reply(request, e)
        wrapper = new_element(etree.QName(envelope).namespace or "", "delegation")
        forwarded(answer, wrapper)
        return wrapper

    def _unwrapped(self, forwarder: str | None, envelope: etree._Element) -> etree._Element:
        """The IQ ``envelope`` holds, in the component namespace.

        :raises StanzaError: ``forbidden`` or ``bad-request``, as the module
            says.
        """
        if forwarder != self.component.server_domain:
            raise StanzaError("forbidden", "only the server delegates requests")
        inner = forwarded_stanza(envelope, "iq")
        if inner is None or inner.get("type") not in ("get", "set") or len(inner) != 1:
            raise StanzaError("bad-request", "expected one forwarded IQ get or set with a payload")
        try:
            sender = JID.parse(inner.get("from") or "")
        except InvalidJID:
            raise StanzaError("bad-request", "the forwarded IQ has no valid sender") from None
        namespace = etree.QName(inner[0]).namespace or ""
        if self.delegated.get(namespace) != etree.QName(envelope).namespace:
            raise StanzaError("forbidden", f"{namespace} is not delegated to this component")
        request = as_component(inner)
        if request.get("to") is None:
            # An IQ without 'to' is for the sender's own account (RFC 6120
            # §10.3.3); Prosody leaves out a 'to' that named it.
            request.set("to", str(sender.bare))
        return request

    def disco_info(self, node: str | None, requester: JID) -> DiscoInfo | None:
        """The features the routes serve of a namespace, on its delegation
        nodes (``<delegation namespace>::<namespace>``, and ejabberd's
        ``<delegation namespace>:bare:<namespace>`` for IQs to a user's bare
        JID): the namespace and the features under it. Answered before
        the namespace is delegated: ejabberd asks first, and delegates only
        what the component says it serves."""
        for delegation in NAMESPACES:
            for prefix in (f"{delegation}::", f"{delegation}:bare:"):
                if node and node.startswith(prefix):
                    namespace = node[len(prefix) :]
                    features = [
                        feature
                        for feature in self.component.router.features()
                        if feature == namespace or feature.startswith(f"{namespace}#")
                    ]
                    return ([], features) if features else None
        return None
