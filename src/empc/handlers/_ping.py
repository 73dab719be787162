"""XEP-0199: XMPP Ping."""

from __future__ import annotations

from lxml import etree

from empc.routing import Handler, iq

NS_PING = "urn:xmpp:ping"


class Ping(Handler):
    """Answers pings to the component with an empty result."""

    @iq("get", f"{{{NS_PING}}}ping")
    def ping(self, stanza: etree._Element) -> None:
        return None
