"""The base class of handler classes."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from lxml import etree

from empc.protocol import JID

if TYPE_CHECKING:
    from empc._component import Component
    from empc.storage import Schema

DiscoItem = tuple[str, str | None, str | None]
"""A disco#items entry: (jid, node, name)."""

Identity = tuple[str, str, str]
"""A disco#info identity: (category, type, name)."""

DiscoInfo = tuple[Sequence[Identity], Sequence[str]]
"""What disco#info tells of a node: its identities and its features."""


class Handler:
    """Serves some of a component's stanzas with decorated actions.

    Subclass it, declare routes on methods with :func:`~empc.iq`,
    :func:`~empc.message`, :func:`~empc.presence` or :func:`~empc.route`,
    and list the class in the config. Each action takes the stanza (an lxml
    element) and returns what the router's reply contract describes.

    :cvar defaults: the config keys the handler takes, with their default
        values. Other keys are refused, and a value must have its default's
        type (an int passes for a float). For more checks, override
        ``__init__``, call it, and raise ``ValueError`` with a clear message.
    :cvar allow: who may use the handler's routes, unless a route says
        otherwise: bare JIDs, domains and ``list:NAME`` lists.
    :cvar deny: who may not; deny wins.
    :cvar features: disco#info features the component has thanks to this
        handler beyond those its routes serve (for instance
        ``http://jabber.org/protocol/pubsub#persistent-items``).
    :cvar schemas: the tables this handler keeps in the process's database
        (:class:`empc.storage.Schema`), migrated before the components
        start; ``component.storage`` is then the database.
    :ivar config: the handler's config: ``defaults`` updated with the
        mapping given in the config file.
    :ivar component: the :class:`~empc.Component` this handler serves; set
        before :meth:`start` is called. Use its ``send``, ``request``,
        ``domain`` and ``clock``.
    """

    defaults: ClassVar[Mapping[str, Any]] = {}
    allow: ClassVar[Sequence[str] | None] = None
    deny: ClassVar[Sequence[str] | None] = None
    features: ClassVar[Sequence[str]] = ()
    schemas: ClassVar[Sequence[Schema]] = ()
    component: Component

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        given = dict(config or {})
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            raise ValueError(f"unknown config key(s): {', '.join(map(str, unknown))}")
        for key, value in given.items():
            default = self.defaults[key]
            expected = (int, float) if isinstance(default, float) else type(default)
            if default is not None and (
                not isinstance(value, expected)
                or isinstance(value, bool) != isinstance(default, bool)
            ):
                raise ValueError(
                    f"config key {key!r}: expected {type(default).__name__}, "
                    f"got {type(value).__name__}"
                )
        # A copy of the defaults: instances never share a mutable value.
        self.config: dict[str, Any] = {**copy.deepcopy(dict(self.defaults)), **given}

    def start(self) -> object:
        """Called once when the component starts; may return a Deferred.

        A failure stops the process with the error logged.
        """
        return None

    def stop(self) -> object:
        """Called once when the component stops; may return a Deferred."""
        return None

    def disco_items(
        self, node: str | None, requester: JID
    ) -> Sequence[DiscoItem] | Awaitable[Sequence[DiscoItem]]:
        """The disco#items this handler offers at ``node`` (None: the top)
        to ``requester`` (the full JID that asks, so that a list can show
        only what the requester may use); may be a Deferred or a coroutine
        (``async def``). A node must also be claimed by :meth:`disco_info`,
        else it is ``item-not-found``."""
        return ()

    def disco_info(
        self, node: str, requester: JID
    ) -> DiscoInfo | Awaitable[DiscoInfo | None] | None:
        """The disco#info of ``node`` for ``requester`` if it is one of this
        handler's, else None; may be a Deferred or a coroutine. A node no
        handler claims is ``item-not-found``, for disco#info and disco#items
        alike."""
        return None

    def disco_forms(
        self, node: str | None
    ) -> Sequence[etree._Element] | Awaitable[Sequence[etree._Element]]:
        """The extended information forms (XEP-0128) this handler adds to the
        disco#info of ``node`` (None: the top; otherwise a node this
        handler's :meth:`disco_info` claims); may be a Deferred or a
        coroutine. Each is a ``<x xmlns='jabber:x:data' type='result'/>``
        with a ``FORM_TYPE``, such as :meth:`empc.forms.Form.result` builds;
        disco#info sends a copy, so the same element may be returned each
        time."""
        return ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"
