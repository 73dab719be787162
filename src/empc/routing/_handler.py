"""The base class of handler classes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from empc._component import Component


class Handler:
    """Serves some of a component's stanzas with decorated actions.

    Subclass it, declare routes on methods with :func:`~empc.iq`,
    :func:`~empc.message`, :func:`~empc.presence` or :func:`~empc.route`,
    and list the class in the config. Each action takes the stanza (an lxml
    element) and returns what the router's reply contract describes.

    :ivar config: the handler's own mapping from the config file.
    :ivar component: the :class:`~empc.Component` this handler serves; set
        before :meth:`start` is called. Use its ``send``, ``request``,
        ``domain`` and ``clock``.
    """

    component: Component

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config = dict(config or {})

    def start(self) -> object:
        """Called once when the component starts; may return a Deferred."""
        return None

    def stop(self) -> object:
        """Called once when the component stops; may return a Deferred."""
        return None
