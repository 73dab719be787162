"""Stanzas as the debug log shows them: secrets and message texts masked.

The debug switch (``logging: {debug: true}``) logs every stanza in and out.
A log is read by more people than the service's users would choose, and
kept longer, so what is masked is decided by what the stanza *is*, not by
where it came from:

- a password (``jabber:iq:register``, ``jabber:iq:auth``);
- a data form value whose field is ``text-private``, or whose name says it
  holds a password, a secret or a token: a submitted form does not repeat
  the field's type;
- a message's body, subject and thread text, which may be anything a user
  typed, a password asked for over chat included. Only its length is
  shown.
"""

from __future__ import annotations

from copy import deepcopy

from lxml import etree

MASK = "********"
_PASSWORDS = ("{jabber:iq:register}password", "{jabber:iq:auth}password")
_FIELD = "{jabber:x:data}field"
_VALUE = "{jabber:x:data}value"
_SECRET_NAMES = ("password", "secret", "token")
_TEXTS = frozenset(
    f"{{{namespace}}}{name}"
    for namespace in ("jabber:component:accept", "jabber:client")
    for name in ("body", "subject", "thread")
)


def masked(stanza: etree._Element) -> str:
    """``stanza`` serialized, with what the module lists masked; the
    stanza itself is left as it is."""
    copy = deepcopy(stanza)
    for element in copy.iter(*_PASSWORDS):
        if element.text:
            element.text = MASK
    for field in copy.iter(_FIELD):
        if _is_secret(field):
            for value in field.iter(_VALUE):
                value.text = MASK
    for child in copy:
        if child.tag in _TEXTS and child.text:
            child.text = f"[{len(child.text)} characters]"
    return etree.tostring(copy, encoding="unicode")


def _is_secret(field: etree._Element) -> bool:
    name = (field.get("var") or "").lower()
    return field.get("type") == "text-private" or any(word in name for word in _SECRET_NAMES)
