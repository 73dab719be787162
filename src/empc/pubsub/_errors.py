"""PubSub's stanza errors: an RFC 6120 condition with XEP-0060's own child."""

from __future__ import annotations

from empc.protocol import new_element
from empc.routing import StanzaError

NS_PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"


class PubSubError(StanzaError):
    """A stanza error with a ``pubsub#errors`` condition (XEP-0060 §7, §8).

    :param condition: the RFC 6120 condition (``bad-request``...).
    :param pubsub_condition: XEP-0060's condition (``invalid-jid``,
        ``precondition-not-met``...), or None when the XEP defines none.
    :param text: what went wrong, for people.
    :param feature: with ``unsupported``, the feature not implemented.
    :param type: the error type, if not the condition's usual one.
    """

    def __init__(
        self,
        condition: str,
        pubsub_condition: str | None = None,
        text: str | None = None,
        *,
        feature: str | None = None,
        type: str | None = None,
    ) -> None:
        application = None
        if pubsub_condition is not None:
            attributes = {"feature": feature} if feature else None
            application = new_element(NS_PUBSUB_ERRORS, pubsub_condition, attributes)
        super().__init__(condition, text, type=type, application_condition=application)
        self.pubsub_condition = pubsub_condition
        self.feature = feature


def unsupported(feature: str, text: str | None = None) -> PubSubError:
    """``feature-not-implemented`` with ``<unsupported feature='...'/>``."""
    return PubSubError("feature-not-implemented", "unsupported", text, feature=feature)
