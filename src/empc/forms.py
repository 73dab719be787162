"""Data forms (XEP-0004), declared once as a class, built and parsed from it.

A form is a subclass of :class:`Form` whose class attributes are fields::

    class Settings(Form):
        FORM_TYPE = "urn:example:settings"
        title = "Settings"
        nick = TextSingle("Display name", required=True, regex=r"[a-z]+")
        age = Integer("Age", minimum=0, maximum=150)
        auto = Boolean("Accept followers", default=True)

    Settings.form()              # <x xmlns='jabber:x:data' type='form'>
    settings = Settings.parse(x) # a Settings: settings.nick is a str
    Settings.result(settings)    # <x type='result'> with the same values

:meth:`Form.parse` answers a :class:`~empc.StanzaError` ``bad-request``
naming the field and what is wrong, so an action can call it and let the
router turn a bad submission into the error reply. Parsing gives an instance
of the form class rather than a dict: its attributes are typed (``nick`` is
a ``str | None``, ``auto`` a ``bool``), so mypy checks the code that reads
them and a misspelt field is an error, not a silent ``None``.

Also here: the hidden ``FORM_TYPE`` field (XEP-0068), validation elements
(XEP-0122: ``xs:integer`` with a range, regular expressions, open lists,
how many values a list-multi takes), result tables (``<reported/>`` and
``<item/>``, read back with :meth:`Form.parse_table`), and cancel forms.

For chat, :func:`as_text` renders a result form or table as plain text, and
a form is asked one field at a time: :meth:`Field.prompt` is the question,
:meth:`Field.from_chat` reads the answer, validated as :meth:`Form.parse`
validates a submission. Forms are plain data: no reactor and no I/O.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable, Mapping, Sequence
from copy import copy
from typing import Any, ClassVar, Generic, Self, TypeVar, overload

from lxml import etree

from empc.protocol import JID, new_element
from empc.routing import StanzaError

NS_DATA = "jabber:x:data"
NS_VALIDATE = "http://jabber.org/protocol/xdata-validate"

T = TypeVar("T")
V = TypeVar("V")

Options = Sequence[str | tuple[str, str]]
"""The options of a list field: values, or (value, label) pairs."""


class Field(Generic[T]):
    """A field of a :class:`Form`, declared as a class attribute.

    On the form class the attribute is the field; on a form instance it is
    the field's value (of type ``T``).

    :param label: the label a client shows.
    :param desc: a longer description (``<desc/>``).
    :param required: whether a submission without a value is refused.
    :param default: the value a new form shows, and the value of a field
        submitted empty or left out.
    :param var: the field's name on the wire; the attribute's name if None.
    """

    type: ClassVar[str]
    name: str
    options: Mapping[str, str | None] = {}
    """A list field's options as value: label (None: no label); none for others."""
    chat_hint: ClassVar[str | None] = None
    """How to answer the field in a chat, if it needs saying."""

    def __init__(
        self,
        label: str | None = None,
        *,
        desc: str | None = None,
        required: bool = False,
        default: T | None = None,
        var: str | None = None,
    ) -> None:
        self.label = label
        self.desc = desc
        self.required = required
        self.default: Any = default
        self.var = var or ""

    def __set_name__(self, owner: builtins.type, name: str) -> None:
        self.name = name
        self.var = self.var or name

    @overload
    def __get__(self, instance: None, owner: builtins.type) -> Self: ...
    @overload
    def __get__(self, instance: Form, owner: builtins.type) -> T: ...
    def __get__(self, instance: Form | None, owner: builtins.type) -> Self | T:
        if instance is None:
            return self
        value: T = instance._values[self.name]
        return value

    def __set__(self, instance: Form, value: T) -> None:
        """Set the value, checked as when it is written in a form.

        :raises TypeError: if the value has the wrong type.
        :raises ValueError: if the field's validation refuses it.
        """
        if value is not None:
            self.encode(value)
        instance._values[self.name] = value

    def decode(self, texts: Sequence[str]) -> T:
        """The value of the ``<value/>`` texts (at least one not empty).

        :raises ValueError: with the text that tells the submitter what is
            wrong with them.
        """
        raise NotImplementedError

    def encode(self, value: Any) -> list[str]:
        """The ``<value/>`` texts of ``value`` (not None).

        :raises TypeError: if ``value`` has the wrong type.
        :raises ValueError: if the field's validation refuses it, so a form
            built with it would not parse back.
        """
        raise NotImplementedError

    def prompt(self) -> str:
        """The question that asks for this field in a chat: its label (or
        var) with how to answer, whether it is optional and its default;
        then its description; then a list field's options, numbered."""
        question = self.label or self.var
        if self.chat_hint:
            question += f" ({self.chat_hint})"
        state = [] if self.required else ["optional"]
        if offered := self._offered():
            state.append(f"default: {_display(self.type, offered)}")
        if state:
            question += f" ({', '.join(state)})"
        lines = [question, *([self.desc] if self.desc else [])]
        lines += [
            f"{n}. {label or value}" for n, (value, label) in enumerate(self.options.items(), 1)
        ]
        return "\n".join(lines)

    def from_chat(self, text: str) -> T:
        """The value of a chat user's answer ``text`` to :meth:`prompt`
        (spaces around it ignored), validated as :meth:`Form.parse` does. An
        empty answer takes the default (the value offered).

        :raises ValueError: with a short text the chat user can act on: an
            empty answer where one is required and nothing is offered, or an
            answer the field refuses.
        """
        texts = [part for part in self.chat_texts(text.strip()) if part] if text.strip() else []
        if texts:  # as parse reads a submission: values all empty are no value
            return self.decode(texts)
        if self.required and not self._offered():
            raise ValueError("an answer is required")
        value: T = copy(self.default)
        return value

    def chat_texts(self, text: str) -> list[str]:
        """The ``<value/>`` texts a chat answer (stripped, not empty) stands
        for: the text itself unless the field type reads answers otherwise.

        :raises ValueError: if the answer cannot stand for any.
        """
        return [text]

    def _offered(self) -> list[str]:
        """The default's ``<value/>`` texts, empty if there is no default."""
        return [] if self.default is None else [text for text in self.encode(self.default) if text]

    def _declare(self, field: etree._Element) -> None:
        """Add what a form (not a result) tells of the field beyond its values."""
        if self.desc:
            new_element(NS_DATA, "desc", parent=field).text = self.desc
        if self.required:
            new_element(NS_DATA, "required", parent=field)


class _Single(Field[V | None]):
    """A field with at most one value of type ``kind``."""

    kind: ClassVar[builtins.type]

    def parse_text(self, text: str) -> V:
        """The value of one ``<value/>``; raises ValueError if invalid."""
        raise NotImplementedError

    def check(self, value: V) -> None:
        """Raise ValueError if the field's validation refuses ``value``."""

    def decode(self, texts: Sequence[str]) -> V | None:
        if len(texts) > 1:
            raise ValueError(f"takes one value, got {len(texts)}")
        value = self.parse_text(texts[0])
        self.check(value)
        return value

    def encode(self, value: Any) -> list[str]:
        _check_type(value, self.kind)
        self.check(value)
        return [str(value)]


class TextSingle(_Single[str]):
    """A line of text (``text-single``): a ``str``, or None if left empty.

    :param regex: a regular expression the whole value must match
        (XEP-0122 ``<regex/>``); checked with Python's :mod:`re`, so keep to
        what it shares with XML Schema's syntax, which clients use.
    """

    type = "text-single"
    kind = str

    def __init__(
        self,
        label: str | None = None,
        *,
        desc: str | None = None,
        required: bool = False,
        default: str | None = None,
        var: str | None = None,
        regex: str | None = None,
    ) -> None:
        super().__init__(label, desc=desc, required=required, default=default, var=var)
        self.regex = None if regex is None else re.compile(regex)

    def parse_text(self, text: str) -> str:
        return text

    def check(self, value: str) -> None:
        if self.regex is not None and not self.regex.fullmatch(value):
            raise ValueError(f"{self._shown(value)} does not match {self.regex.pattern}")

    def _shown(self, value: str) -> str:
        """``value`` as an error message may quote it."""
        return repr(value)

    def _declare(self, field: etree._Element) -> None:
        super()._declare(field)
        if self.regex is not None:
            validate = new_element(NS_VALIDATE, "validate", {"datatype": "xs:string"}, field)
            new_element(NS_VALIDATE, "regex", parent=validate).text = self.regex.pattern


class TextPrivate(TextSingle):
    """A secret line of text, such as a password (``text-private``): never
    quoted in an error, nor shown by :func:`as_text` or :meth:`prompt`."""

    type = "text-private"

    def _shown(self, value: str) -> str:
        return "the value"


class Hidden(TextSingle):
    """A value the client sends back unchanged (``hidden``); give it a default."""

    type = "hidden"


class Integer(_Single[int]):
    """A whole number: a ``text-single`` field of datatype ``xs:integer``
    (XEP-0122), between ``minimum`` and ``maximum`` when given (inclusive)."""

    type = "text-single"
    kind = int

    def __init__(
        self,
        label: str | None = None,
        *,
        desc: str | None = None,
        required: bool = False,
        default: int | None = None,
        var: str | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> None:
        super().__init__(label, desc=desc, required=required, default=default, var=var)
        self.minimum = minimum
        self.maximum = maximum

    def parse_text(self, text: str) -> int:
        # xs:integer's lexical form; int() would also take "1_000", spaces
        # and other scripts' digits.
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise ValueError(f"{text!r} is not an integer")
        return int(text)

    def check(self, value: int) -> None:
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{value} is below the minimum {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{value} is above the maximum {self.maximum}")

    def _declare(self, field: etree._Element) -> None:
        super()._declare(field)
        validate = new_element(NS_VALIDATE, "validate", {"datatype": "xs:integer"}, field)
        if bounds := _bounds(self.minimum, self.maximum):
            new_element(NS_VALIDATE, "range", bounds, validate)


class JidSingle(_Single[JID]):
    """A JID (``jid-single``): an :class:`~empc.JID`, or None if left empty."""

    type = "jid-single"
    kind = JID

    def parse_text(self, text: str) -> JID:
        return JID.parse(text)  # InvalidJID is a ValueError naming what is wrong


class ListSingle(_Single[str]):
    """One of ``options`` (``list-single``): a ``str``, or None if left empty.

    :param open: whether a value outside the options is accepted too
        (declared as XEP-0122 ``<open/>``).
    """

    type = "list-single"
    kind = str

    def __init__(
        self,
        label: str | None = None,
        *,
        options: Options,
        desc: str | None = None,
        required: bool = False,
        default: str | None = None,
        var: str | None = None,
        open: bool = False,
    ) -> None:
        super().__init__(label, desc=desc, required=required, default=default, var=var)
        self.options = _options(options)
        self.open = open

    def parse_text(self, text: str) -> str:
        return text

    def check(self, value: str) -> None:
        _check_option(value, self.options, self.open)

    def chat_texts(self, text: str) -> list[str]:
        """An option's number or value (or, if open, any value)."""
        return [_choose(text, self.options, self.open)]

    def _declare(self, field: etree._Element) -> None:
        super()._declare(field)
        _declare_choices(field, self.options, self.open)


class Boolean(Field[bool]):
    """A yes or no (``boolean``): a ``bool``, False unless ``default`` says
    otherwise; ``1``, ``0``, ``true`` and ``false`` are accepted."""

    type = "boolean"
    chat_hint = "yes/no"

    def __init__(
        self,
        label: str | None = None,
        *,
        desc: str | None = None,
        required: bool = False,
        default: bool = False,
        var: str | None = None,
    ) -> None:
        super().__init__(label, desc=desc, required=required, default=default, var=var)

    def decode(self, texts: Sequence[str]) -> bool:
        if len(texts) > 1:
            raise ValueError(f"takes one value, got {len(texts)}")
        if texts[0] in ("1", "true"):
            return True
        if texts[0] in ("0", "false"):
            return False
        raise ValueError(f"{texts[0]!r} is not a boolean")

    def encode(self, value: Any) -> list[str]:
        _check_type(value, bool)
        return ["1" if value else "0"]

    def chat_texts(self, text: str) -> list[str]:
        """Yes, no, y, n, true, false, 1 or 0, in any case."""
        answer = text.lower()
        if answer in ("yes", "y", "true", "1"):
            return ["1"]
        if answer in ("no", "n", "false", "0"):
            return ["0"]
        raise ValueError(f"{text!r} is not an answer: say yes or no")


class TextMulti(Field[str | None]):
    """Several lines of text (``text-multi``): a ``str`` whose lines are the
    ``<value/>`` elements, or None if left empty."""

    type = "text-multi"

    def decode(self, texts: Sequence[str]) -> str:
        return "\n".join(texts)

    def encode(self, value: Any) -> list[str]:
        _check_type(value, str)
        return str(value).split("\n")


class ListMulti(Field[list[str]]):
    """Any of ``options`` (``list-multi``): a ``list[str]``, empty if none.

    :param open: whether values outside the options are accepted too
        (declared as XEP-0122 ``<open/>``).
    :param min_values: the fewest values that may be chosen, if any; 1 or
        more makes the field required (XEP-0122 ``<list-range/>``).
    :param max_values: the most values that may be chosen, if any.
    """

    type = "list-multi"
    chat_hint = "several, separated by commas or spaces"

    def __init__(
        self,
        label: str | None = None,
        *,
        options: Options,
        desc: str | None = None,
        required: bool = False,
        default: Sequence[str] = (),
        var: str | None = None,
        open: bool = False,
        min_values: int | None = None,
        max_values: int | None = None,
    ) -> None:
        super().__init__(
            label,
            desc=desc,
            required=required or bool(min_values),
            default=list(default),
            var=var,
        )
        self.options = _options(options)
        self.open = open
        self.min_values = min_values
        self.max_values = max_values

    def decode(self, texts: Sequence[str]) -> list[str]:
        values = [text for text in texts if text]
        for value in values:
            _check_option(value, self.options, self.open)
        # Left empty, the field is not decoded: its requirement applies instead.
        if values and self.min_values is not None and len(values) < self.min_values:
            raise ValueError(f"choose at least {self.min_values}, got {len(values)}")
        if self.max_values is not None and len(values) > self.max_values:
            raise ValueError(f"choose at most {self.max_values}, got {len(values)}")
        return values

    def chat_texts(self, text: str) -> list[str]:
        """Options' numbers or values (or, if open, any values), separated
        by commas or spaces; an option whose value has either is chosen by
        its number."""
        return [_choose(answer, self.options, self.open) for answer in _several(text)]

    def encode(self, value: Any) -> list[str]:
        _check_type(value, list)
        return self.decode([str(_check_type(item, str)) for item in value])

    def _declare(self, field: etree._Element) -> None:
        super()._declare(field)
        _declare_choices(field, self.options, self.open, _bounds(self.min_values, self.max_values))


class JidMulti(Field[list[JID]]):
    """Several JIDs (``jid-multi``): a ``list[JID]``, empty if none."""

    type = "jid-multi"
    chat_hint = "several, separated by commas or spaces"

    def __init__(
        self,
        label: str | None = None,
        *,
        desc: str | None = None,
        required: bool = False,
        default: Sequence[JID] = (),
        var: str | None = None,
    ) -> None:
        super().__init__(label, desc=desc, required=required, default=list(default), var=var)

    def decode(self, texts: Sequence[str]) -> list[JID]:
        return [JID.parse(text) for text in texts if text]

    def chat_texts(self, text: str) -> list[str]:
        """JIDs separated by commas or spaces."""
        return _several(text)

    def encode(self, value: Any) -> list[str]:
        _check_type(value, list)
        return [str(_check_type(item, JID)) for item in value]


class Fixed(Field[str]):
    """Text shown in the form, such as a section title (``fixed``); it has
    no ``var`` on the wire and is never submitted. Its value is ``text``."""

    type = "fixed"

    def __init__(self, text: str) -> None:
        super().__init__(default=text)

    def encode(self, value: Any) -> list[str]:
        return [self.default]

    def prompt(self) -> str:
        """Its text: a fixed field asks nothing."""
        text: str = self.default
        return text

    def from_chat(self, text: str) -> str:
        """Never: a fixed field takes no answer.

        :raises TypeError: always.
        """
        raise TypeError("a fixed field takes no answer")


class Form:
    """A data form, declared as a subclass whose attributes are fields.

    An instance holds one value per field (see each field type for the
    value's type); build one with keywords, ``Settings(nick="alice")``, or
    with :meth:`parse`.

    :cvar FORM_TYPE: the form's type (XEP-0068), sent as the first field,
        hidden, and required in what :meth:`parse` accepts; None for none.
    :cvar title: the form's title.
    :cvar instructions: instructions shown above the fields (each line an
        ``<instructions/>`` element).
    :cvar refuse_unknown_fields: whether :meth:`parse` refuses a field the
        class does not declare (``bad-request``) rather than ignore it.
    :raises TypeError: (constructor) for a keyword that is not a field, or a
        value of the wrong type.
    :raises ValueError: (constructor) for a value the field's validation
        refuses; (class statement) for two fields with the same ``var`` (or
        a field named ``FORM_TYPE``), or a default the field refuses.
    """

    FORM_TYPE: ClassVar[str | None] = None
    title: ClassVar[str | None] = None
    instructions: ClassVar[str | None] = None
    refuse_unknown_fields: ClassVar[bool] = False
    fields: ClassVar[Mapping[str, Field[Any]]] = {}
    """The fields by ``var``, in declaration order (base classes' first)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # By attribute name first, so a subclass's field replaces its base's.
        declared: dict[str, Field[Any]] = {}
        for klass in reversed(cls.__mro__):
            declared.update(
                (name, value) for name, value in vars(klass).items() if isinstance(value, Field)
            )
        fields: dict[str, Field[Any]] = {}
        for field in declared.values():
            if field.var in fields or field.var == "FORM_TYPE":
                raise ValueError(f"{cls.__name__}.{field.name}: var {field.var!r} is taken")
            if field.default is not None:  # a bad default fails here, not at the first form
                try:
                    field.encode(field.default)
                except (TypeError, ValueError) as error:
                    raise type(error)(f"{cls.__name__}.{field.name}: default {error}") from None
            fields[field.var] = field
        cls.fields = fields

    def __init__(self, **values: Any) -> None:
        self._values: dict[str, Any] = {}
        by_name = {field.name: field for field in self.fields.values()}
        for name in values.keys() - by_name.keys():
            raise TypeError(f"{type(self).__name__} has no field {name!r}")
        for name, field in by_name.items():
            value = values[name] if name in values else copy(field.default)
            try:
                field.__set__(self, value)
            except (TypeError, ValueError) as error:
                raise type(error)(f"field {field.var!r}: {error}") from None

    # Building

    @classmethod
    def form(cls, values: Mapping[str, Any] | Form | None = None) -> etree._Element:
        """A form to fill in (``type='form'``) with every field's label,
        description, requirement, validation and options, pre-filled with
        ``values`` (by attribute name; the defaults for those not given).

        :raises TypeError: for an unknown name or a value of the wrong type.
        :raises ValueError: for a value the field's validation refuses.
        """
        return cls._build("form", cls._instance(values or {}))

    @classmethod
    def result(cls, values: Mapping[str, Any] | Form) -> etree._Element:
        """A result form (``type='result'``) with ``values`` (a parsed form,
        or values by attribute name); also what an XEP-0128 extended disco
        info form is. Raises as :meth:`form` does."""
        return cls._build("result", cls._instance(values))

    @classmethod
    def submit(cls, values: Mapping[str, Any] | Form) -> etree._Element:
        """A filled-in form to send (``type='submit'``): the fields' vars and
        values only. Raises as :meth:`form` does."""
        return cls._build("submit", cls._instance(values))

    @classmethod
    def table(
        cls, rows: Iterable[Mapping[str, Any] | Form], *, title: str | None = None
    ) -> etree._Element:
        """A result table (``type='result'``): the fields as the columns of
        ``<reported/>``, then one ``<item/>`` per row (fixed fields left
        out). Raises as :meth:`form` does."""
        x = new_element(NS_DATA, "x", {"type": "result"})
        if title or cls.title:
            new_element(NS_DATA, "title", parent=x).text = title or cls.title
        cls._form_type(x)
        columns = [field for field in cls.fields.values() if not isinstance(field, Fixed)]
        reported = new_element(NS_DATA, "reported", parent=x)
        for field in columns:
            attributes = {"var": field.var, "type": field.type}
            if field.label:
                attributes["label"] = field.label
            new_element(NS_DATA, "field", attributes, reported)
        for row in rows:
            instance = cls._instance(row)
            item = new_element(NS_DATA, "item", parent=x)
            for field in columns:
                _values(new_element(NS_DATA, "field", {"var": field.var}, item), field, instance)
        return x

    @staticmethod
    def cancel() -> etree._Element:
        """A cancel form: ``<x xmlns='jabber:x:data' type='cancel'/>``."""
        return new_element(NS_DATA, "x", {"type": "cancel"})

    @classmethod
    def _instance(cls, values: Mapping[str, Any] | Form) -> Self:
        if isinstance(values, cls):
            return values
        if isinstance(values, Form):
            raise TypeError(f"a {type(values).__name__} is not a {cls.__name__}")
        return cls(**values)

    @classmethod
    def _form_type(cls, x: etree._Element) -> None:
        if cls.FORM_TYPE is not None:
            field = new_element(NS_DATA, "field", {"var": "FORM_TYPE", "type": "hidden"}, x)
            new_element(NS_DATA, "value", parent=field).text = cls.FORM_TYPE

    @classmethod
    def _build(cls, form_type: str, instance: Form) -> etree._Element:
        x = new_element(NS_DATA, "x", {"type": form_type})
        if form_type != "submit" and cls.title:
            new_element(NS_DATA, "title", parent=x).text = cls.title
        if form_type == "form" and cls.instructions:
            for line in cls.instructions.split("\n"):
                new_element(NS_DATA, "instructions", parent=x).text = line
        cls._form_type(x)
        for field in cls.fields.values():
            if form_type == "submit" and isinstance(field, Fixed):
                continue
            attributes = {} if isinstance(field, Fixed) else {"var": field.var}
            if form_type != "submit":
                attributes["type"] = field.type
                if field.label:
                    attributes["label"] = field.label
            element = new_element(NS_DATA, "field", attributes, x)
            if form_type == "form":
                field._declare(element)
            _values(element, field, instance)
        return x

    # Parsing

    @classmethod
    def parse(cls, x: etree._Element | None, *, type: str = "submit") -> Self:
        """The values of the submitted form ``x`` (None: none was sent).

        A field submitted empty or left out takes its default. Fields with
        no ``var`` (fixed ones) are ignored, and so are fields the class does
        not declare unless :attr:`refuse_unknown_fields` says otherwise.

        :param type: the form type expected: ``submit``, or ``result`` to
            read a result form.
        :raises StanzaError: ``bad-request``, its text naming the field and
            what is wrong: no form, not a data form, another form type, a
            missing or other ``FORM_TYPE``, a field given twice, an unknown
            field (when refused), a required field left empty, more than one
            value for a single-valued field, or a value the field refuses (a
            value outside the options, a malformed JID or integer, a value
            out of range or not matching the regular expression, fewer or
            more list values than the field's range allows).
        """
        return cls._read(cls._submitted(cls._data_form(x, type)))

    @classmethod
    def parse_table(cls, x: etree._Element | None) -> list[Self]:
        """The rows of the result table ``x`` (as :meth:`table` builds it),
        one instance per ``<item/>``, each read as :meth:`parse` reads a form.

        :raises StanzaError: ``bad-request``: no form, not a data form, a
            form not of type ``result``, a missing or other ``FORM_TYPE``,
            no ``<reported/>`` (a plain result, not a table), or an item
            that :meth:`parse` would refuse as a form, the text then
            starting with the item's number (``item 2: field 'age': ...``).
        """
        x = cls._data_form(x, "result")
        cls._submitted(x)  # for its FORM_TYPE check
        if x.find(f"{{{NS_DATA}}}reported") is None:
            raise StanzaError("bad-request", "the form is not a table (no <reported/>)")
        rows = []
        for number, item in enumerate(x.iterchildren(f"{{{NS_DATA}}}item"), 1):
            try:
                rows.append(cls._read(cls._submitted(item, form_type=False)))
            except StanzaError as error:
                raise StanzaError("bad-request", f"item {number}: {error.text}") from None
        return rows

    @staticmethod
    def _data_form(x: etree._Element | None, type: str) -> etree._Element:
        """``x``, if it is a data form of type ``type``; else bad-request."""
        if x is None or x.tag != f"{{{NS_DATA}}}x":
            raise StanzaError("bad-request", "a data form (jabber:x:data) is required")
        if x.get("type") != type:
            raise StanzaError("bad-request", f"the form is of type {x.get('type')!r}, not {type!r}")
        return x

    @classmethod
    def _submitted(cls, parent: etree._Element, *, form_type: bool = True) -> dict[str, list[str]]:
        """The ``<value/>`` texts of the fields in ``parent`` by var, without
        ``FORM_TYPE``, checked (when ``form_type``) to be the class's."""
        submitted: dict[str, list[str]] = {}
        for element in parent.iterchildren(f"{{{NS_DATA}}}field"):
            var = element.get("var")
            if not var:
                continue
            if var in submitted:
                raise StanzaError("bad-request", f"field {var!r} is given twice")
            submitted[var] = _texts(element)
        given = submitted.pop("FORM_TYPE", None)
        if form_type and cls.FORM_TYPE is not None and given != [cls.FORM_TYPE]:
            shown = "missing" if given is None else repr("\n".join(given))
            raise StanzaError("bad-request", f"FORM_TYPE is {shown}, expected {cls.FORM_TYPE!r}")
        return submitted

    @classmethod
    def _read(cls, submitted: Mapping[str, list[str]]) -> Self:
        """An instance with the ``submitted`` texts by var, decoded."""
        unknown = [var for var in submitted if var not in cls.fields]
        if unknown and cls.refuse_unknown_fields:
            raise StanzaError("bad-request", f"unknown field {unknown[0]!r}")
        instance = cls.__new__(cls)
        instance._values = {}
        for var, field in cls.fields.items():
            texts = submitted.get(var, [])
            value = copy(field.default)  # a list default is not shared between instances
            if isinstance(field, Fixed):
                pass
            elif any(texts):
                try:
                    value = field.decode(texts)
                except ValueError as error:
                    raise StanzaError("bad-request", f"field {var!r}: {error}") from None
            elif field.required:
                raise StanzaError("bad-request", f"field {var!r} is required")
            instance._values[field.name] = value
        return instance

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Form) and type(other) is type(self) and self._values == other._values
        )

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={value!r}" for name, value in self._values.items())
        return f"{type(self).__name__}({values})"


def values_of(form: Form) -> dict[str, Any]:
    """The values of ``form`` by field attribute name, as its class takes
    them back: ``type(form)(**values_of(form))`` equals ``form``."""
    return dict(form._values)


def _values(element: etree._Element, field: Field[Any], instance: Form) -> None:
    """Add the ``<value/>`` elements of the field's value in ``instance``."""
    value = instance._values[field.name]
    for text in [] if value is None else field.encode(value):
        new_element(NS_DATA, "value", parent=element).text = text


def _check_type(value: Any, kind: type) -> Any:
    """``value``, if it is a ``kind`` (a bool is not an int here)."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _options(options: Options) -> dict[str, str | None]:
    """The options as value: label (None: no label)."""
    return {
        option if isinstance(option, str) else option[0]: (
            None if isinstance(option, str) else option[1]
        )
        for option in options
    }


def _check_option(value: str, options: Mapping[str, str | None], open: bool) -> None:
    if not open and value not in options:
        raise ValueError(f"{value!r} is not one of the options")


def _choose(answer: str, options: Mapping[str, str | None], open: bool) -> str:
    """The option a chat answer names: by its number first (as the prompt
    shows them), then by its value; any value if the list is open."""
    values = list(options)
    if re.fullmatch(r"[0-9]+", answer) and 1 <= int(answer) <= len(values):
        return values[int(answer) - 1]
    if answer in options or open:
        return answer
    raise ValueError(f"{answer!r} is not one of the options: answer 1 to {len(values)}")


def _several(text: str) -> list[str]:
    """The answers in a chat text, separated by commas or spaces."""
    return [answer for answer in re.split(r"[,\s]+", text) if answer]


def _bounds(minimum: int | None, maximum: int | None) -> dict[str, str]:
    """The ``min`` and ``max`` attributes of an XEP-0122 range, those given."""
    bounds = {"min": minimum, "max": maximum}
    return {key: str(bound) for key, bound in bounds.items() if bound is not None}


def _declare_choices(
    field: etree._Element,
    options: Mapping[str, str | None],
    open: bool,
    list_range: Mapping[str, str] | None = None,
) -> None:
    """Add a list field's XEP-0122 validation (if open or ranged) and options."""
    if open or list_range:
        validate = new_element(NS_VALIDATE, "validate", {"datatype": "xs:string"}, field)
        if open:
            new_element(NS_VALIDATE, "open", parent=validate)
        if list_range:
            new_element(NS_VALIDATE, "list-range", list_range, validate)
    for value, label in options.items():
        option = new_element(NS_DATA, "option", {"label": label} if label else None, field)
        new_element(NS_DATA, "value", parent=option).text = value


def as_text(x: etree._Element) -> str:
    """A result form or table ``x`` as plain text, for a chat message.

    The title comes first. A form then has one line per field,
    ``Label: value`` (the var if it has no label): several values joined by
    ", ", a ``text-multi`` field's lines each on a line of its own after
    ``Label:``, a boolean as yes or no, a fixed field as its text. A table
    (with ``<reported/>``) then has a header line of the columns' labels
    and one line per item, the columns separated by " | " (a ``text-multi``
    cell's lines joined by ", " to keep the item on one line). Hidden fields
    and ``FORM_TYPE`` are left out.

    :raises ValueError: if ``x`` is not a data form.
    """
    if x.tag != f"{{{NS_DATA}}}x":
        raise ValueError("not a data form (jabber:x:data)")
    title = x.findtext(f"{{{NS_DATA}}}title")
    lines = [title] if title else []
    reported = x.find(f"{{{NS_DATA}}}reported")
    if reported is None:
        lines += [_field_text(field) for field in _shown_fields(x)]
        return "\n".join(lines)
    columns = _shown_fields(reported)
    lines.append(" | ".join(column.get("label") or column.get("var") or "" for column in columns))
    for item in x.iterchildren(f"{{{NS_DATA}}}item"):
        cells = {
            field.get("var"): _texts(field) for field in item.iterchildren(f"{{{NS_DATA}}}field")
        }
        shown = [
            _display(column.get("type"), cells.get(column.get("var"), [])) for column in columns
        ]
        lines.append(" | ".join(shown))
    return "\n".join(lines)


def _shown_fields(parent: etree._Element) -> list[etree._Element]:
    """The fields of ``parent`` a person is shown: not hidden, not FORM_TYPE."""
    return [
        field
        for field in parent.iterchildren(f"{{{NS_DATA}}}field")
        if field.get("type") != "hidden" and field.get("var") != "FORM_TYPE"
    ]


def _texts(field: etree._Element) -> list[str]:
    """The texts of the field's ``<value/>`` elements."""
    return [value.text or "" for value in field.iterchildren(f"{{{NS_DATA}}}value")]


def _field_text(field: etree._Element) -> str:
    """A field of a form as text: ``Label: value``, or a fixed field's text."""
    kind, texts = field.get("type"), _texts(field)
    if kind == "fixed":
        return "\n".join(texts)
    label = field.get("label") or field.get("var")
    if kind == "text-multi":
        return "\n".join([f"{label}:", *texts])
    return f"{label}: {_display(kind, texts)}".rstrip()


def _display(kind: str | None, texts: Sequence[str]) -> str:
    """Values as a person reads them, on one line: a boolean as yes or no,
    a secret as stars, several joined by ", "."""
    if kind == "boolean" and texts:
        return "yes" if texts[0] in ("1", "true") else "no"
    if kind == "text-private" and texts:
        return "********"
    return ", ".join(" ".join(text.split("\n")) for text in texts)


__all__ = [
    "NS_DATA",
    "NS_VALIDATE",
    "Boolean",
    "Field",
    "Fixed",
    "Form",
    "Hidden",
    "Integer",
    "JidMulti",
    "JidSingle",
    "ListMulti",
    "ListSingle",
    "Options",
    "TextMulti",
    "TextPrivate",
    "TextSingle",
    "as_text",
    "values_of",
]
