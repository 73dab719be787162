"""The benchmark's echo handler: a chat message comes back to its sender."""

from __future__ import annotations

from lxml import etree

from empc import Handler, make_reply, message


class EchoHandler(Handler):
    """Echoes each chat message body, keeping the message id."""

    @message("chat")
    def echo(self, stanza: etree._Element) -> etree._Element:
        reply = make_reply(stanza, "chat")
        reply.extend(stanza)
        return reply
