"""XEP-0092: Software Version."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import version
from typing import Any, ClassVar

from lxml import etree

from empc.protocol import new_element
from empc.routing import Handler, iq

NS_VERSION = "jabber:iq:version"


class Version(Handler):
    """Answers with the software's name and version: empc's own unless the
    config names another (``name``, ``version``). The operating system is
    not disclosed.

    Both are settled when the handler is built: the installed version of
    empc is looked up then, once, not for every request.
    """

    defaults: ClassVar[Mapping[str, str]] = {"name": "empc", "version": ""}

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self._name: str = self.config["name"]
        self._version: str = self.config["version"] or version("empc")

    @iq("get", f"{{{NS_VERSION}}}query")
    def software_version(self, stanza: etree._Element) -> etree._Element:
        query = new_element(NS_VERSION, "query")
        new_element(NS_VERSION, "name", parent=query).text = self._name
        new_element(NS_VERSION, "version", parent=query).text = self._version
        return query
