"""In-band registration with the component (XEP-0077), and the gateway's
presence subscriptions of XEP-0100.

A handler subclasses :class:`Registration`, declares the registration form
(a :class:`~empc.forms.Form` whose ``FORM_TYPE`` is ``jabber:iq:register``),
and keeps the registrations wherever it likes::

    from empc import JID, StanzaError
    from empc.forms import TextPrivate, TextSingle
    from empc.registration import Registration, RegistrationForm


    class Account(RegistrationForm):
        title = "Sign in to the legacy network"
        instructions = "Give your legacy user name and password"
        username = TextSingle("User name", required=True)
        password = TextPrivate("Password", required=True)


    class Gateway(Registration[Account]):
        form = Account
        legacy = {"username": "username", "password": "password"}
        subscribe = True

        def __init__(self, config=None):
            super().__init__(config)
            self.accounts: dict[JID, Account] = {}

        def registered(self, user: JID) -> Account | None:
            return self.accounts.get(user)

        def register(self, user: JID, form: Account) -> None:
            taken = any(a.username == form.username for j, a in self.accounts.items() if j != user)
            if taken:
                raise StanzaError("conflict", "that user name is taken")
            self.accounts[user] = form

        def unregister(self, user: JID) -> None:
            del self.accounts[user]

The hooks :meth:`~Registration.registered`, :meth:`~Registration.register`
and :meth:`~Registration.unregister` may return Deferreds or be coroutines
(``async def``), so the registrations can live in a database. A user is
their bare JID: every resource of an account shares one registration.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Mapping
from typing import Any, ClassVar, Generic, TypeVar, cast

from lxml import etree
from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger

from empc.forms import NS_DATA, Field, Fixed, Form, TextPrivate, values_of
from empc.protocol import JID, LocalProtocolError, new_element
from empc.routing import Handler, StanzaError, iq, make_stanza, presence, sender_of

NS_REGISTER = "jabber:iq:register"

LEGACY_FIELDS = (
    "username",
    "nick",
    "password",
    "name",
    "first",
    "last",
    "email",
    "address",
    "city",
    "state",
    "zip",
    "phone",
    "url",
    "date",
    "misc",
    "text",
    "key",
)
"""The ``jabber:iq:register`` field elements, in the order of the XEP's
schema; a service may add no other (XEP-0077 §4: extend with the form)."""

F = TypeVar("F", bound=Form)


class RegistrationForm(Form):
    """A base for registration forms: its ``FORM_TYPE`` is ``jabber:iq:register``."""

    FORM_TYPE = NS_REGISTER


class Registration(Handler, Generic[F]):
    """In-band registration (XEP-0077) with the component, for the sender's
    bare JID, with what the handler's hooks keep.

    A ``get`` of ``<query xmlns='jabber:iq:register'/>`` is answered with
    the form's instructions, the legacy fields (empty) and the data form;
    for a registered user, with ``<registered/>`` first, and the legacy
    fields and the form filled with what :meth:`registered` gives (leave the
    password out of it to keep it from being shown). Registration closed
    (:attr:`open` False) answers ``not-allowed`` to a user not registered.

    A ``set`` carrying a data form is parsed with the form class; without
    one, the legacy fields are read into it. It is answered with an empty
    result once :meth:`register` has returned, or:

    - ``bad-request`` naming the field, for a data form that does not parse
      (see :meth:`empc.forms.Form.parse`), and when there is no data form and
      no :attr:`legacy` fields; ``bad-request`` also for a legacy value the
      field refuses;
    - ``not-acceptable`` naming the element, for a legacy submission
      without one of the legacy fields, or with one empty (XEP-0077 §3.1);
    - ``not-allowed`` for a user not registered while :attr:`open` is False;
    - whatever :class:`~empc.StanzaError` :meth:`register` raises
      (``conflict`` for a user name taken, ``not-acceptable`` for details
      the service refuses...).

    A ``set`` carrying ``<remove/>`` calls :meth:`unregister` and is
    answered with an empty result, or ``bad-request`` when the query holds
    more than ``<remove/>``, ``registration-required`` when the user is not
    registered (XEP-0077 §3.2), or what :meth:`unregister` raises
    (``not-allowed`` where removing is not offered, say).

    With :attr:`subscribe`, the component behaves as a gateway (XEP-0100
    §4.1 to §4.3): after the result of a first registration it asks the
    user's bare JID for a presence subscription (``subscribe``); after the
    result of a removal it sends ``unsubscribe``, ``unsubscribed`` and
    ``unavailable``; and it answers a user's ``subscribe`` to the
    component's own address with ``subscribed`` if the user is registered,
    ``unsubscribed`` otherwise. Those presences go a turn of the clock after
    the IQ's result, so the user hears of the registration first; one that
    cannot be sent (the stream went down) is logged and dropped.

    :cvar form: the registration form, whose ``FORM_TYPE`` must be
        ``jabber:iq:register`` (subclass :class:`RegistrationForm`).
    :cvar legacy: the legacy ``jabber:iq:register`` elements offered to
        clients without data forms, each mapped to the attribute name of a
        field of :attr:`form`; every required field of the form must have
        one (else offer none: the form's instructions are then all an old
        client sees, as XEP-0077 §6 recommends).
    :cvar open: whether new users may register; registered users may still
        see, update and remove their registration when it is False. Set it
        on the instance (in ``__init__``, from the config, say) to decide
        per component.
    :cvar subscribe: whether to manage presence subscriptions as a gateway.
    :raises ValueError: (class statement) for a form of another
        ``FORM_TYPE``, a legacy element XEP-0077 does not define, a legacy
        mapping to no field of the form, or a required field left without a
        legacy element while others have one.
    :raises TypeError: (constructor) if the class declares no form.
    """

    form: type[F]
    legacy: ClassVar[Mapping[str, str]] = {}
    open: bool = True
    subscribe: ClassVar[bool] = False
    log = Logger()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "form" in vars(cls) or "legacy" in vars(cls):
            _check_declaration(cls)

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        if not hasattr(self, "form"):
            raise TypeError(f"{type(self).__name__} declares no registration form")
        super().__init__(config)

    # The hooks: what a subclass implements.

    def registered(self, user: JID) -> F | Awaitable[F | None] | None:
        """The registration of ``user`` (a bare JID), an instance of
        :attr:`form`, or None if the user is not registered; may be a
        Deferred or a coroutine."""
        raise NotImplementedError

    def register(self, user: JID, form: F) -> object:
        """Register ``user`` (a bare JID) with the submitted ``form``, or
        update the registration if there is one; may return a Deferred or be
        a coroutine. Raise :class:`~empc.StanzaError` to refuse it
        (``conflict``, ``not-acceptable``...)."""
        raise NotImplementedError

    def unregister(self, user: JID) -> object:
        """Remove the registration of ``user`` (a bare JID, registered); may
        return a Deferred or be a coroutine. Raise
        :class:`~empc.StanzaError` to refuse it."""
        raise NotImplementedError

    # The protocol.

    @iq("get", f"{{{NS_REGISTER}}}query")
    async def ask(self, stanza: etree._Element) -> etree._Element:
        current = await self._registration(_user(stanza))
        self._check_open(current)
        query = new_element(NS_REGISTER, "query")
        if current is not None:
            new_element(NS_REGISTER, "registered", parent=query)
        if self.form.instructions:
            new_element(NS_REGISTER, "instructions", parent=query).text = self.form.instructions
        fields = _fields_by_name(self.form)
        for name in _legacy_order(self.legacy):
            element = new_element(NS_REGISTER, name, parent=query)
            if current is not None:
                element.text = _text(fields[self.legacy[name]], current)
        query.append(self.form.form(current))
        return query

    @iq("set", f"{{{NS_REGISTER}}}query")
    async def submit(self, stanza: etree._Element) -> None:
        user = _user(stanza)
        query = stanza[0]
        if query.find(f"{{{NS_REGISTER}}}remove") is not None:
            if len(query) != 1:
                raise StanzaError("bad-request", "<remove/> must be the only child of <query/>")
            if await self._registration(user) is None:
                raise StanzaError("registration-required", "you are not registered")
            await maybeDeferred(self.unregister, user)
            self._announce(user, ("unsubscribe", "unsubscribed", "unavailable"))
            return
        current = await self._registration(user)
        self._check_open(current)
        await maybeDeferred(self.register, user, self._submitted(query, current))
        if current is None:
            self._announce(user, ("subscribe",))

    # Below the default priority: a handler's own subscribe routes win.
    @presence("subscribe", priority=-5, to_itself=True)
    async def approve(self, stanza: etree._Element) -> etree._Element | None:
        """A user's subscription to the component itself (not to an address
        in its domain): approved for registered users, when :attr:`subscribe`
        (a route of the handler's own for ``subscribe`` presences wins)."""
        if not self.subscribe:
            return None
        user = _user(stanza)
        answer = "unsubscribed" if await self._registration(user) is None else "subscribed"
        return make_stanza("presence", {"to": str(user), "type": answer})

    async def _registration(self, user: JID) -> F | None:
        return cast(F | None, await maybeDeferred(self.registered, user))

    def _check_open(self, current: F | None) -> None:
        """Refuse a user not registered (``current`` None) ``not-allowed``
        while registration is closed."""
        if current is None and not self.open:
            raise StanzaError("not-allowed", "registration is closed")

    def _submitted(self, query: etree._Element, current: F | None) -> F:
        """The form a ``set`` submits: its data form, else its legacy fields.

        An update (``current`` is the registration on file) keeps what it
        does not change: a secret (``text-private``) field left empty in the
        data form, as the form sent does not show it, and, from a legacy
        client, an empty element and every field the legacy elements do not
        carry (XEP-0077 §3.3).
        """
        x = query.find(f"{{{NS_DATA}}}x")
        if x is not None or not self.legacy:
            if x is not None and current is not None:
                x = _keep_secrets(x, self.form, current)
            return self.form.parse(x)
        fields = _fields_by_name(self.form)
        values = {} if current is None else values_of(current)
        for name in _legacy_order(self.legacy):
            field = fields[self.legacy[name]]
            text = query.findtext(f"{{{NS_REGISTER}}}{name}")
            if not text:
                if current is not None:
                    continue
                raise StanzaError("not-acceptable", f"<{name}/> is required")
            try:
                values[field.name] = field.decode([text])
            except ValueError as error:
                raise StanzaError("bad-request", f"<{name}/>: {error}") from None
        return self.form(**values)

    def _announce(self, user: JID, types: tuple[str, ...]) -> None:
        """Send ``user`` presences of ``types`` when :attr:`subscribe`, a turn
        later: XEP-0100 sends them after the IQ's result, which goes out when
        the action returns."""
        if self.subscribe:
            self.component.clock.callLater(0, self._send_presences, user, types)

    def _send_presences(self, user: JID, types: tuple[str, ...]) -> None:
        for kind in types:
            try:
                self.component.send(make_stanza("presence", {"to": str(user), "type": kind}))
            except LocalProtocolError as error:
                self.log.warn(
                    "Could not send a {type} presence to {user}: {why}",
                    type=kind,
                    user=str(user),
                    why=str(error),
                )


def _user(stanza: etree._Element) -> JID:
    """The bare JID of the sender: whom a registration belongs to."""
    return sender_of(stanza).bare


def _keep_secrets(x: etree._Element, form: type[Form], current: Form) -> etree._Element:
    """A copy of the submitted form ``x`` whose empty secret fields hold
    their values in ``current``."""
    x = copy.deepcopy(x)
    for field in form.fields.values():
        if not isinstance(field, TextPrivate) or getattr(current, field.name) is None:
            continue
        submitted = x.find(f"{{{NS_DATA}}}field[@var='{field.var}']")
        if submitted is None:
            submitted = new_element(NS_DATA, "field", {"var": field.var}, x)
        if not any(value.text for value in submitted.iterchildren(f"{{{NS_DATA}}}value")):
            for value in list(submitted):
                submitted.remove(value)
            new_element(NS_DATA, "value", parent=submitted).text = _text(field, current)
    return x


def _fields_by_name(form: type[Form]) -> dict[str, Field[Any]]:
    return {field.name: field for field in form.fields.values()}


def _legacy_order(legacy: Mapping[str, str]) -> list[str]:
    """The legacy elements offered, in the schema's order (a sequence)."""
    return [name for name in LEGACY_FIELDS if name in legacy]


def _text(field: Field[Any], values: Form) -> str:
    """The text of a legacy element: the field's value in ``values``."""
    value = getattr(values, field.name)
    return "" if value is None else "\n".join(field.encode(value))


def _check_declaration(cls: type[Registration[Any]]) -> None:
    form = getattr(cls, "form", None)
    if form is None:
        if cls.legacy:
            raise ValueError(f"{cls.__name__}: legacy fields without a form")
        return
    if form.FORM_TYPE != NS_REGISTER:
        raise ValueError(
            f"{cls.__name__}.form: FORM_TYPE is {form.FORM_TYPE!r}, not {NS_REGISTER!r}"
        )
    fields = _fields_by_name(form)
    for name, attribute in cls.legacy.items():
        if name not in LEGACY_FIELDS:
            raise ValueError(f"{cls.__name__}.legacy: XEP-0077 defines no <{name}/>")
        if attribute not in fields or isinstance(fields[attribute], Fixed):
            raise ValueError(f"{cls.__name__}.legacy: {form.__name__} has no field {attribute!r}")
    mapped = set(cls.legacy.values())
    unmapped = [
        field.name for field in fields.values() if field.required and field.name not in mapped
    ]
    if cls.legacy and unmapped:
        raise ValueError(
            f"{cls.__name__}.legacy: required field {unmapped[0]!r} has no legacy element; "
            "offer none, so that old clients see the instructions only"
        )


__all__ = ["LEGACY_FIELDS", "NS_REGISTER", "Registration", "RegistrationForm"]
