"""Stanzas as the debug log shows them: secrets and people's texts masked.

The debug switch (``logging: {debug: true}``) logs every stanza in and out.
A log is read by more people than the service's users would choose, and
kept longer, so what is masked is decided by what an element *is*,
wherever it sits in the stanza (a forwarded or carbon-copied message
included):

- a password (``jabber:iq:register``, ``jabber:iq:auth``);
- every value of a submitted data form but its ``FORM_TYPE`` (a submission
  does not repeat which fields are secret), and in other forms the values
  of ``text-private`` fields;
- the texts people write: message bodies (XHTML-IM ones too), subjects,
  threads and presence statuses. Only their length is shown.
"""

from __future__ import annotations

from copy import deepcopy

from lxml import etree

MASK = "********"
_PASSWORDS = ("{jabber:iq:register}password", "{jabber:iq:auth}password")
_FORM = "{jabber:x:data}x"
_FIELD = "{jabber:x:data}field"
_VALUE = "{jabber:x:data}value"
_TEXTS = (
    *(
        f"{{{namespace}}}{name}"
        for namespace in ("jabber:component:accept", "jabber:client", "jabber:server")
        for name in ("body", "subject", "thread", "status")
    ),
    "{http://www.w3.org/1999/xhtml}body",
)


def masked(stanza: etree._Element) -> str:
    """``stanza`` serialized, with what the module lists masked; the
    stanza itself is left as it is."""
    copy = deepcopy(stanza)
    for element in copy.iter(*_PASSWORDS):
        if element.text:
            element.text = MASK
    for form in copy.iter(_FORM):
        submitted = form.get("type") == "submit"
        for field in form.iter(_FIELD):
            if field.get("var") != "FORM_TYPE" and (
                submitted or field.get("type") == "text-private"
            ):
                for value in field.iter(_VALUE):
                    value.text = MASK
    for text in copy.iter(*_TEXTS):
        # An XHTML body's text is in its descendants: all of it is counted.
        length = sum(len(part) for part in text.itertext())
        if length:
            for child in list(text):
                text.remove(child)
            text.text = f"[{length} characters]"
    return etree.tostring(copy, encoding="unicode")
