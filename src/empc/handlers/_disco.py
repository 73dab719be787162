"""XEP-0030: Service Discovery, derived from the routes."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

from lxml import etree
from twisted.internet.defer import maybeDeferred

from empc.protocol import JID, new_element
from empc.routing import DiscoInfo, DiscoItem, Handler, StanzaError, iq, sender_of

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


class Disco(Handler):
    """Answers disco#info with the component's identity and the features
    its routes and handlers serve, so what it advertises is what it really
    does; disco#info of a node with the handler that has it
    (:meth:`Handler.disco_info`); disco#items with what the handlers offer
    (:meth:`Handler.disco_items`). Extended information forms (XEP-0128,
    :meth:`Handler.disco_forms`) follow the features: every handler's at the
    top, the claiming handler's at a node."""

    @iq("get", f"{{{NS_DISCO_INFO}}}query")
    async def info(self, stanza: etree._Element) -> etree._Element:
        node = stanza[0].get("node")
        if node:
            handler, (identities, features) = await self._node_info(node, sender_of(stanza))
            extending = [handler]
        else:
            identities = [self.component.identity]
            features = self.component.router.features()
            extending = list(self.component.handlers)
        query = new_element(NS_DISCO_INFO, "query", {"node": node} if node else None)
        for category, kind, name in identities:
            attributes = {"category": category, "type": kind}
            if name:
                attributes["name"] = name
            new_element(NS_DISCO_INFO, "identity", attributes, query)
        for feature in features:
            new_element(NS_DISCO_INFO, "feature", {"var": feature}, query)
        for handler in extending:
            forms = cast(Sequence[etree._Element], await maybeDeferred(handler.disco_forms, node))
            # A copy: appending would move a form the handler keeps out of
            # its tree, and out of an earlier answer.
            query.extend(copy.deepcopy(form) for form in forms)
        return query

    async def _node_info(self, node: str, requester: JID) -> tuple[Handler, DiscoInfo]:
        for handler in self.component.handlers:
            info = cast(DiscoInfo | None, await maybeDeferred(handler.disco_info, node, requester))
            if info is not None:
                return handler, info
        raise StanzaError("item-not-found")

    @iq("get", f"{{{NS_DISCO_ITEMS}}}query")
    async def items(self, stanza: etree._Element) -> etree._Element:
        node = stanza[0].get("node")
        requester = sender_of(stanza)
        if node:
            await self._node_info(node, requester)  # item-not-found unless a handler has it
        query = new_element(NS_DISCO_ITEMS, "query", {"node": node} if node else None)
        for handler in self.component.handlers:
            offered = cast(
                Sequence[DiscoItem], await maybeDeferred(handler.disco_items, node, requester)
            )
            for jid, item_node, name in offered:
                attributes = {"jid": jid, "node": item_node, "name": name}
                new_element(
                    NS_DISCO_ITEMS,
                    "item",
                    {key: value for key, value in attributes.items() if value},
                    query,
                )
        return query
