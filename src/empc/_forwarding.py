"""Stanzas wrapped in another (XEP-0297 ``<forwarded/>``), as privileges
(XEP-0356) and namespace delegation (XEP-0355) carry them.

A wrapped stanza is in the client namespace, ``jabber:client``, as the
user sent or will receive it; the component's own stanzas are in
``jabber:component:accept``. These functions move a stanza between the two.
"""

from __future__ import annotations

from copy import deepcopy

from lxml import etree
from twisted.logger import Logger

from empc._component import Component
from empc.protocol import NS_COMPONENT, new_element

NS_CLIENT = "jabber:client"
NS_FORWARD = "urn:xmpp:forward:0"

log = Logger()


def from_the_server(component: Component, stanza: etree._Element, what: str) -> bool:
    """Whether ``stanza`` comes from ``component``'s server, which alone
    may grant ``what``; if not, it is logged as ignored. (Anyone can send
    the component a message; only the server's own domain is the server.)"""
    if stanza.get("from") == component.server_domain:
        return True
    log.warn(
        "Ignored {what} sent by {sender}: only the server {server} grants them",
        what=what,
        sender=stanza.get("from"),
        server=component.server_domain,
    )
    return False


def _renamed(stanza: etree._Element, old: str, new: str) -> etree._Element:
    """A copy of ``stanza`` whose elements in namespace ``old`` are in ``new``."""
    copy = deepcopy(stanza)
    for element in copy.iter():
        name = etree.QName(element)
        if name.namespace == old:
            element.tag = f"{{{new}}}{name.localname}"
    # Declarations are kept, even unused ones: an attribute's value may
    # use a prefix (xsi:type="xsd:string") that no tag does.
    return copy


def as_client(stanza: etree._Element) -> etree._Element:
    """A copy of a component stanza in the client namespace."""
    return _renamed(stanza, NS_COMPONENT, NS_CLIENT)


def as_component(stanza: etree._Element) -> etree._Element:
    """A copy of a client stanza in the component namespace."""
    return _renamed(stanza, NS_CLIENT, NS_COMPONENT)


def forwarded(stanza: etree._Element, parent: etree._Element) -> etree._Element:
    """Append to ``parent`` a ``<forwarded/>`` holding a client copy of
    ``stanza``; return the copy."""
    wrapper = new_element(NS_FORWARD, "forwarded", parent=parent)
    copy = as_client(stanza)
    wrapper.append(copy)
    return copy


def forwarded_stanza(parent: etree._Element, kind: str) -> etree._Element | None:
    """The ``kind`` stanza (``iq``, ``message``) in the client namespace
    that ``parent``'s single ``<forwarded/>`` holds alone, or None when
    there is not exactly that."""
    wrappers = [child for child in parent if child.tag == f"{{{NS_FORWARD}}}forwarded"]
    if len(parent) != 1 or len(wrappers) != 1:
        return None
    [wrapper] = wrappers
    stanzas = [child for child in wrapper if child.tag == f"{{{NS_CLIENT}}}{kind}"]
    if len(stanzas) != 1:
        return None
    return stanzas[0]
