"""Building elements whose namespace is the default one, as XMPP writes them."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
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
    if parent is None:
        # A copy of a prepared element costs a fraction of building one:
        # most of etree.Element's time goes into the new document.
        element: etree._Element = _template(namespace, name).__copy__()  # type: ignore[attr-defined]
        for key, value in (attributes or {}).items():
            element.set(key, value)
        return element
    nsmap: Any = {None: namespace}  # lxml-stubs reject the None prefix lxml accepts
    attrib: Any = attributes
    return etree.SubElement(parent, f"{{{namespace}}}{name}", attrib, nsmap=nsmap)


@lru_cache(maxsize=256)
def _template(namespace: str, name: str) -> etree._Element:
    """An empty element to copy; it is only ever read, so threads may share it."""
    nsmap: Any = {None: namespace}
    template: etree._Element = etree.Element(f"{{{namespace}}}{name}", nsmap=nsmap)
    return template
