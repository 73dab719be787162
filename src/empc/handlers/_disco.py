"""XEP-0030: Service Discovery, derived from the routes."""

from __future__ import annotations

from lxml import etree

from empc.protocol import new_element
from empc.routing import Handler, StanzaError, iq

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


class Disco(Handler):
    """Answers disco#info with the component's identity and the features
    its routes serve, so what it advertises is what it really does."""

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
