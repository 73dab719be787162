"""Stanza errors (RFC 6120 §8.3) and the builders for stanzas and replies."""

from __future__ import annotations

from collections.abc import Mapping

from lxml import etree

from empc.protocol import JID, NS_COMPONENT, InvalidJID, new_element

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

# RFC 6120 §8.3.3: each defined condition with the error type it usually has.
CONDITION_TYPES: Mapping[str, str] = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}
ERROR_TYPES = frozenset(("auth", "cancel", "continue", "modify", "wait"))
# The kind of a stanza, by its tag.
STANZA_KINDS: Mapping[str, str] = {
    f"{{{NS_COMPONENT}}}{kind}": kind for kind in ("iq", "message", "presence")
}


class StanzaError(Exception):
    """Raise it from an action to answer the stanza with an error.

    :param condition: an RFC 6120 defined condition, such as ``forbidden``.
    :param text: optional human-readable text sent with the error.
    :param type: the error type; defaults to the condition's usual type.
    :param application_condition: an optional element naming an
        application-specific condition (XEP-0060's ``<invalid-jid/>``...).
    :raises ValueError: for an unknown condition or type.
    """

    def __init__(
        self,
        condition: str,
        text: str | None = None,
        *,
        type: str | None = None,
        application_condition: etree._Element | None = None,
    ) -> None:
        if condition not in CONDITION_TYPES:
            raise ValueError(f"unknown stanza error condition {condition!r}")
        error_type = CONDITION_TYPES[condition] if type is None else type
        if error_type not in ERROR_TYPES:
            raise ValueError(f"unknown stanza error type {error_type!r}")
        if text is not None and not isinstance(text, str):
            raise TypeError(f"the text of a stanza error is a str, not {type(text).__name__}")
        if application_condition is not None and not isinstance(
            application_condition, etree._Element
        ):
            raise TypeError("an application condition is an element")
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition = condition
        self.text = text
        self.type = error_type
        self.application_condition = application_condition

    def to_element(self) -> etree._Element:
        """The ``<error/>`` child of an error stanza."""
        error = new_element(NS_COMPONENT, "error", {"type": self.type})
        new_element(NS_STANZAS, self.condition, parent=error)
        if self.text:
            new_element(NS_STANZAS, "text", parent=error).text = self.text
        if self.application_condition is not None:
            error.append(self.application_condition)
        return error


def make_stanza(kind: str, attributes: Mapping[str, str | None] | None = None) -> etree._Element:
    """A new ``message``, ``presence`` or ``iq`` in the component namespace.

    Attributes whose value is None are left out.
    """
    attrib = {name: value for name, value in (attributes or {}).items() if value is not None}
    return new_element(NS_COMPONENT, kind, attrib)


def make_message(
    to: str, body: str | None = None, type: str | None = "chat", **attributes: str | None
) -> etree._Element:
    """A message to ``to`` with an optional ``body``; other attributes
    (``from_`` for ``from``, ``id``...) as keywords. Attributes that are
    None, ``type`` included, are left out."""
    if "from_" in attributes:
        attributes["from"] = attributes.pop("from_")
    stanza = make_stanza("message", {"to": to, "type": type, **attributes})
    if body is not None:
        new_element(NS_COMPONENT, "body", parent=stanza).text = body
    return stanza


def make_reply(stanza: etree._Element, type: str | None = None) -> etree._Element:
    """A reply to ``stanza``: same kind and id, ``to`` and ``from`` swapped."""
    kind = STANZA_KINDS.get(stanza.tag) or etree.QName(stanza).localname
    return addressed_reply(kind, type, envelope_of(stanza))


def sender_of(stanza: etree._Element) -> JID:
    """Who sent ``stanza``: the server stamps every stanza's ``from``.

    :raises StanzaError: ``jid-malformed`` if it is missing or not a JID.
    """
    try:
        return JID.parse(stanza.get("from") or "")
    except InvalidJID:
        raise StanzaError("jid-malformed", "the stanza has no valid sender") from None


Envelope = tuple[str | None, str | None, str | None]
"""How to address a reply: its ``id``, ``to`` and ``from``."""


def envelope_of(stanza: etree._Element) -> Envelope:
    """The ``id``, ``to`` and ``from`` of a reply to ``stanza``."""
    return (stanza.get("id"), stanza.get("from"), stanza.get("to"))


def addressed_reply(kind: str, type: str | None, envelope: Envelope) -> etree._Element:
    """A ``kind`` stanza of ``type`` addressed as ``envelope`` says."""
    stanza_id, to, sender = envelope
    # Built by hand rather than through make_stanza: every reply comes here.
    reply = new_element(NS_COMPONENT, kind)
    if type is not None:
        reply.set("type", type)
    if stanza_id is not None:
        reply.set("id", stanza_id)
    if to is not None:
        reply.set("to", to)
    if sender is not None:
        reply.set("from", sender)
    return reply


def make_error_reply(stanza: etree._Element, error: StanzaError) -> etree._Element:
    """The error reply to ``stanza`` carrying ``error``."""
    reply = make_reply(stanza, "error")
    reply.append(error.to_element())
    return reply


def parse_stanza_error(stanza: etree._Element) -> StanzaError:
    """The :class:`StanzaError` an error stanza carries.

    A malformed or unknown error reads as ``undefined-condition``.
    """
    error = stanza.find(f"{{{NS_COMPONENT}}}error")
    condition, text = "undefined-condition", None
    for child in () if error is None else error:
        name = etree.QName(child)
        if name.namespace != NS_STANZAS:
            continue
        if name.localname == "text":
            text = child.text
        elif name.localname in CONDITION_TYPES:
            condition = name.localname
    error_type = None if error is None else error.get("type")
    return StanzaError(condition, text, type=error_type if error_type in ERROR_TYPES else None)
