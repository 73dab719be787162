"""Building elements whose namespace is the default one, as XMPP writes them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree


def new_element(
    namespace: str,
    name: str,
    attributes: Mapping[str, str] | None = None,
    parent: etree._Element | None = None,
) -> etree._Element:
    """A new ``name`` element in ``namespace`` (a child of ``parent``, if given).

    The namespace is declared as the default one, so it serializes as
    ``<name xmlns="namespace"/>`` rather than with a generated prefix.
    """
    nsmap: Any = {None: namespace}  # lxml-stubs reject the None prefix lxml accepts
    tag = f"{{{namespace}}}{name}"
    attrib: Any = attributes
    if parent is None:
        return etree.Element(tag, attrib, nsmap=nsmap)
    return etree.SubElement(parent, tag, attrib, nsmap=nsmap)
