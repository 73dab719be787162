"""XEP-0030: Service Discovery, derived from the routes."""

from __future__ import annotations

from lxml import etree

from empc.protocol import new_element
from empc.routing import Handler, StanzaError, iq

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


class Disco(Handler):
    """Answers disco#info with the component's identity and the features
    its routes serve, so what it advertises is what it really does; and
    disco#items with what the handlers offer (:meth:`Handler.disco_items`).

    A node-specific disco#info is ``item-not-found`` here: a handler that
    has nodes serves them with a route of higher priority.
    """

    @iq("get", f"{{{NS_DISCO_INFO}}}query")
    def info(self, stanza: etree._Element) -> etree._Element:
        if stanza[0].get("node"):
            raise StanzaError("item-not-found")
        category, kind, name = self.component.identity
        query = new_element(NS_DISCO_INFO, "query")
        new_element(
            NS_DISCO_INFO, "identity", {"category": category, "type": kind, "name": name}, query
        )
        for feature in self.component.router.features():
            new_element(NS_DISCO_INFO, "feature", {"var": feature}, query)
        return query

    @iq("get", f"{{{NS_DISCO_ITEMS}}}query")
    def items(self, stanza: etree._Element) -> etree._Element:
        node = stanza[0].get("node")
        query = new_element(NS_DISCO_ITEMS, "query", {"node": node} if node else None)
        for handler in self.component.handlers:
            for jid, item_node, name in handler.disco_items(node):
                attributes = {"jid": jid, "node": item_node, "name": name}
                new_element(
                    NS_DISCO_ITEMS,
                    "item",
                    {key: value for key, value in attributes.items() if value},
                    query,
                )
        return query
