"""XEP-0030: Service Discovery, derived from the routes."""

from __future__ import annotations

from lxml import etree

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
        query = etree.Element(f"{{{NS_DISCO_INFO}}}query", nsmap={None: NS_DISCO_INFO})
        etree.SubElement(query, f"{{{NS_DISCO_INFO}}}identity", category=category, type=kind, name=name)
        for feature in self.component.router.features():
            etree.SubElement(query, f"{{{NS_DISCO_INFO}}}feature", var=feature)
        return query
