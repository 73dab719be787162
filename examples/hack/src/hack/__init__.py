"""hack: the smallest empc bot, an echo and a ping of its own.

The same handler runs as a component (``twistd -n empc -c component.yaml``)
or as an account (``twistd -n empc -c account.yaml``).
"""

from lxml import etree

from empc import NS_COMPONENT, Handler, iq, make_reply, message, new_element

NS_HACK = "urn:example:hack"
# What an echo keeps of a message: its text, and the conversation it belongs to.
ECHOED = {f"{{{NS_COMPONENT}}}body", f"{{{NS_COMPONENT}}}thread"}


class Hack(Handler):
    """Sends chat messages back, and answers its own ping."""

    # Only messages with a body: a typing notification alone gets no echo.
    @message("chat", "c:body")
    def echo(self, stanza: etree._Element) -> etree._Element:
        """The message back to its sender, with its body and thread."""
        reply = make_reply(stanza, "chat")
        reply.extend([child for child in stanza if child.tag in ECHOED])
        return reply

    # Its payload's namespace is the feature disco#info shows.
    @iq("get", f"{{{NS_HACK}}}ping")
    def ping(self, stanza: etree._Element) -> etree._Element:
        """A pong, as the IQ result's payload."""
        return new_element(NS_HACK, "pong")
