"""Data forms (XEP-0004) declared as classes: built, parsed back, refused."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from support import error_of, one

from empc import JID, Handler, StanzaError, iq
from empc.forms import (
    NS_DATA,
    NS_VALIDATE,
    Boolean,
    Field,
    Fixed,
    Form,
    Hidden,
    Integer,
    JidMulti,
    JidSingle,
    ListMulti,
    ListSingle,
    TextMulti,
    TextPrivate,
    TextSingle,
    as_text,
)
from empc.forms import values_of as form_values
from empc.testing import FakeServer

X = f"{{{NS_DATA}}}"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


class Profile(Form):
    """Every field type."""

    FORM_TYPE = "urn:example:profile"
    title = "Profile"
    instructions = "Tell us about you\nAll fields are public"

    intro = Fixed("About you")
    nick = TextSingle("Display name", required=True, regex=r"[a-z]+", desc="Lower case")
    password = TextPrivate("Password")
    session = Hidden(default="s-1")
    bio = TextMulti("Biography")
    age = Integer("Age", minimum=0, maximum=150)
    followers = Boolean("Accept followers", default=True)
    color = ListSingle("Color", options=[("red", "Red"), ("blue", "Blue")])
    topics = ListMulti("Topics", options=["xmpp", "python"])
    home = JidSingle("Home server")
    friends = JidMulti("Friends", var="friend-list")


def submission(
    *fields: str, form_type: str | None = Profile.FORM_TYPE, type: str = "submit"
) -> etree._Element:
    """A submitted form with ``fields`` (XML text) after its FORM_TYPE."""
    hidden = (
        "" if form_type is None else f"<field var='FORM_TYPE'><value>{form_type}</value></field>"
    )
    return etree.fromstring(f"<x xmlns='{NS_DATA}' type='{type}'>{hidden}{''.join(fields)}</x>")


def field(var: str, *values: str) -> str:
    return f"<field var='{var}'>{''.join(f'<value>{v}</value>' for v in values)}</field>"


def refusal(x: etree._Element | None, form: type[Form] = Profile) -> str | None:
    """The text of the bad-request that parsing ``x`` raises."""
    with pytest.raises(StanzaError) as raised:
        form.parse(x)
    assert raised.value.condition == "bad-request"
    return raised.value.text


def fields_of(x: etree._Element) -> dict[str | None, etree._Element]:
    return {f.get("var"): f for f in x.findall(f"{X}field")}


def values_of(field: etree._Element) -> list[str | None]:
    return [value.text for value in field.findall(f"{X}value")]


# Building a form


def test_form_is_a_jabber_x_data_form_of_type_form_with_title_and_instructions() -> None:
    x = Profile.form()
    assert (x.tag, x.get("type"), x.findtext(f"{X}title")) == (f"{X}x", "form", "Profile")
    assert [i.text for i in x.findall(f"{X}instructions")] == [
        "Tell us about you",
        "All fields are public",
    ]


def test_form_type_is_the_first_field_and_hidden() -> None:
    first = Profile.form().find(f"{X}field")
    assert first is not None
    assert (first.get("var"), first.get("type"), values_of(first)) == (
        "FORM_TYPE",
        "hidden",
        ["urn:example:profile"],
    )


def test_form_without_form_type_has_no_form_type_field() -> None:
    class Plain(Form):
        name = TextSingle()

    assert list(fields_of(Plain.form())) == ["name"]


def test_every_field_type_is_declared_with_its_type_and_label_in_declaration_order() -> None:
    declared = [(f.get("var"), f.get("type"), f.get("label")) for f in Profile.form()]
    assert [d for d in declared if d != (None, None, None)] == [
        ("FORM_TYPE", "hidden", None),
        (None, "fixed", None),
        ("nick", "text-single", "Display name"),
        ("password", "text-private", "Password"),
        ("session", "hidden", None),
        ("bio", "text-multi", "Biography"),
        ("age", "text-single", "Age"),
        ("followers", "boolean", "Accept followers"),
        ("color", "list-single", "Color"),
        ("topics", "list-multi", "Topics"),
        ("home", "jid-single", "Home server"),
        ("friend-list", "jid-multi", "Friends"),
    ]


def test_a_field_s_var_is_its_attribute_name_unless_given() -> None:
    assert (Profile.nick.var, Profile.friends.var) == ("nick", "friend-list")


def test_form_carries_descriptions_and_required_flags() -> None:
    nick = fields_of(Profile.form())["nick"]
    assert nick.findtext(f"{X}desc") == "Lower case"
    assert nick.find(f"{X}required") is not None
    assert fields_of(Profile.form())["password"].find(f"{X}required") is None


def test_fixed_field_shows_its_text_and_has_no_var() -> None:
    fixed = Profile.form().findall(f"{X}field")[1]
    assert (fixed.get("var"), values_of(fixed)) == (None, ["About you"])


def test_form_is_prefilled_with_the_defaults() -> None:
    fields = fields_of(Profile.form())
    assert values_of(fields["followers"]) == ["1"]
    assert values_of(fields["session"]) == ["s-1"]
    assert values_of(fields["nick"]) == []


def test_form_is_prefilled_with_the_values_given() -> None:
    fields = fields_of(
        Profile.form(
            {"nick": "alice", "bio": "one\ntwo", "friends": [JID.parse("bob@example.org")]}
        )
    )
    assert values_of(fields["nick"]) == ["alice"]
    assert values_of(fields["bio"]) == ["one", "two"]
    assert values_of(fields["friend-list"]) == ["bob@example.org"]


def test_list_fields_offer_their_options_with_labels() -> None:
    fields = fields_of(Profile.form())
    color = [
        (o.get("label"), o.findtext(f"{X}value")) for o in fields["color"].findall(f"{X}option")
    ]
    topics = [
        (o.get("label"), o.findtext(f"{X}value")) for o in fields["topics"].findall(f"{X}option")
    ]
    assert color == [("Red", "red"), ("Blue", "blue")]
    assert topics == [(None, "xmpp"), (None, "python")]


def test_integer_field_declares_xs_integer_with_its_range() -> None:
    validate = fields_of(Profile.form())["age"].find(f"{{{NS_VALIDATE}}}validate")
    assert validate is not None and validate.get("datatype") == "xs:integer"
    limits = validate.find(f"{{{NS_VALIDATE}}}range")
    assert limits is not None and sorted(limits.items()) == [("max", "150"), ("min", "0")]


def test_integer_field_without_bounds_declares_no_range() -> None:
    class Count(Form):
        n = Integer(maximum=None)

    validate = fields_of(Count.form())["n"].find(f"{{{NS_VALIDATE}}}validate")
    assert validate is not None and len(validate) == 0


def test_regex_field_declares_its_regular_expression() -> None:
    validate = fields_of(Profile.form())["nick"].find(f"{{{NS_VALIDATE}}}validate")
    assert validate is not None and validate.get("datatype") == "xs:string"
    assert validate.findtext(f"{{{NS_VALIDATE}}}regex") == "[a-z]+"


class Event(Form):
    """List fields open to values outside their options (XEP-0122)."""

    category = ListSingle("Category", options=["holiday", "reminder"], open=True)
    notify = ListMulti("Notify me by", options=["mail", "xmpp", "phone"], open=True)


class Channels(Form):
    """List fields with selection ranges (XEP-0122)."""

    channels = ListMulti(options=["mail", "xmpp", "phone"], min_values=2, max_values=2)
    extras = ListMulti(options=["mail", "xmpp", "phone"], max_values=1)


def validation_of(x: etree._Element, var: str) -> list[tuple[str, dict[str, str]]]:
    """The children of the field's ``<validate/>`` as (name, attributes)."""
    validate = fields_of(x)[var].find(f"{{{NS_VALIDATE}}}validate")
    assert validate is not None and validate.get("datatype") == "xs:string"
    return [(etree.QName(child).localname, dict(child.attrib)) for child in validate]


def test_open_list_single_declares_open_validation() -> None:
    assert validation_of(Event.form(), "category") == [("open", {})]


def test_open_list_multi_declares_open_validation() -> None:
    assert validation_of(Event.form(), "notify") == [("open", {})]


def test_list_multi_with_a_selection_range_declares_its_list_range() -> None:
    assert validation_of(Channels.form(), "channels") == [("list-range", {"min": "2", "max": "2"})]


def test_list_multi_with_a_maximum_only_declares_only_max() -> None:
    assert validation_of(Channels.form(), "extras") == [("list-range", {"max": "1"})]


def test_closed_list_without_range_declares_no_validation() -> None:
    assert fields_of(Profile.form())["topics"].find(f"{{{NS_VALIDATE}}}validate") is None


def test_a_minimum_of_values_makes_the_list_multi_required() -> None:
    assert fields_of(Channels.form())["channels"].find(f"{X}required") is not None


def test_open_list_single_accepts_a_value_outside_the_options() -> None:
    assert Event.parse(submission(field("category", "party"), form_type=None)).category == "party"


def test_open_list_multi_accepts_values_outside_the_options() -> None:
    x = submission(field("notify", "mail", "pigeon"), form_type=None)
    assert Event.parse(x).notify == ["mail", "pigeon"]


def test_building_with_an_unknown_field_raises_type_error() -> None:
    with pytest.raises(TypeError, match="no field 'nickname'"):
        Profile.form({"nickname": "alice"})


def test_building_with_a_value_of_the_wrong_type_raises_type_error() -> None:
    with pytest.raises(TypeError, match="field 'age': expected int, got str"):
        Profile.form({"age": "3"})


def test_building_with_a_value_the_field_refuses_raises_value_error() -> None:
    with pytest.raises(ValueError, match="field 'color': 'green' is not one of the options"):
        Profile(color="green")


def test_a_default_outside_the_options_is_refused_when_the_class_is_declared() -> None:
    with pytest.raises(ValueError, match=r"Bad\.color: default 'green' is not one of the options"):

        class Bad(Form):
            color = ListSingle(options=["red"], default="green")


def test_two_fields_with_the_same_var_are_refused_when_the_class_is_declared() -> None:
    with pytest.raises(ValueError, match=r"Bad\.other: var 'name' is taken"):

        class Bad(Form):
            name = TextSingle()
            other = TextSingle(var="name")


def test_a_field_named_form_type_is_refused_when_the_class_is_declared() -> None:
    with pytest.raises(ValueError, match="var 'FORM_TYPE' is taken"):

        class Bad(Form):
            FORM_TYPE = "urn:example:bad"
            kind = Hidden(var="FORM_TYPE")


def test_a_subclass_field_replaces_its_base_s_field_of_the_same_name() -> None:
    class Older(Profile):
        age = Integer("Age", minimum=18)

    assert Older.fields["age"] is Older.age and list(Older.fields) == list(Profile.fields)


def test_cancel_is_an_empty_form_of_type_cancel() -> None:
    assert etree.tostring(Form.cancel()) == b'<x xmlns="jabber:x:data" type="cancel"/>'


# Results and tables


def test_result_carries_the_values_types_and_labels_but_no_declarations() -> None:
    x = Profile.result({"nick": "alice", "age": 30})
    assert (x.get("type"), x.findtext(f"{X}title"), x.find(f"{X}instructions")) == (
        "result",
        "Profile",
        None,
    )
    age = fields_of(x)["age"]
    assert (age.get("type"), age.get("label"), values_of(age)) == ("text-single", "Age", ["30"])
    assert x.find(f".//{X}desc") is None and x.find(f".//{{{NS_VALIDATE}}}validate") is None


def test_result_of_a_parsed_form_has_its_values() -> None:
    parsed = Profile.parse(submission(field("nick", "alice")))
    assert values_of(fields_of(Profile.result(parsed))["nick"]) == ["alice"]


def test_submit_carries_only_vars_and_values_and_no_fixed_field() -> None:
    x = Profile.submit({"nick": "alice"})
    assert x.get("type") == "submit" and x.find(f"{X}title") is None
    assert None not in fields_of(x)
    assert fields_of(x)["nick"].items() == [("var", "nick")]


class Hit(Form):
    """A row of search results."""

    jid = JidSingle("JID")
    name = TextSingle("Name")
    note = Fixed("not a column")


def test_table_reports_the_columns_then_one_item_per_row() -> None:
    x = Hit.table(
        [{"jid": JID.parse("a@example.org"), "name": "A"}, Hit(jid=JID.parse("b@example.org"))],
        title="Search",
    )
    assert (x.get("type"), x.findtext(f"{X}title")) == ("result", "Search")
    reported = x.find(f"{X}reported")
    assert reported is not None
    assert [dict(f.attrib) for f in reported] == [
        {"var": "jid", "type": "jid-single", "label": "JID"},
        {"var": "name", "type": "text-single", "label": "Name"},
    ]
    rows = [{f.get("var"): values_of(f) for f in item} for item in x.findall(f"{X}item")]
    assert rows == [
        {"jid": ["a@example.org"], "name": ["A"]},
        {"jid": ["b@example.org"], "name": []},
    ]


def test_table_of_a_form_with_form_type_carries_it_before_the_reported_fields() -> None:
    class Row(Form):
        FORM_TYPE = "urn:example:rows"
        name = TextSingle()

    x = Row.table([])
    assert [etree.QName(child).localname for child in x] == ["field", "reported"]
    assert fields_of(x)["FORM_TYPE"].findtext(f"{X}value") == "urn:example:rows"


def test_parse_table_gives_one_instance_per_item_in_order() -> None:
    rows = [Hit(jid=JID.parse("a@example.org"), name="A"), Hit(name="B")]
    assert Hit.parse_table(Hit.table(rows)) == rows


def test_parse_table_of_a_table_without_items_is_empty() -> None:
    assert Hit.parse_table(Hit.table([])) == []


def table_refusal(x: etree._Element | None, form: type[Form] = Hit) -> str | None:
    """The text of the bad-request that reading the table ``x`` raises."""
    with pytest.raises(StanzaError) as raised:
        form.parse_table(x)
    assert raised.value.condition == "bad-request"
    return raised.value.text


def test_parse_table_refuses_no_form() -> None:
    assert table_refusal(None) == "a data form (jabber:x:data) is required"


def test_parse_table_refuses_a_form_not_of_type_result() -> None:
    assert table_refusal(Hit.form()) == "the form is of type 'form', not 'result'"


def test_parse_table_refuses_a_result_without_reported_fields() -> None:
    assert table_refusal(Hit.result({"name": "A"})) == "the form is not a table (no <reported/>)"


def test_parse_table_refuses_another_form_type() -> None:
    class Row(Form):
        FORM_TYPE = "urn:example:rows"
        name = TextSingle()

    class Other(Row):
        FORM_TYPE = "urn:example:other"

    assert table_refusal(Other.table([]), Row) == (
        "FORM_TYPE is 'urn:example:other', expected 'urn:example:rows'"
    )


def hits(*items: Sequence[str]) -> etree._Element:
    """A table of :class:`Hit` whose items have ``items`` (fields as XML text)."""
    reported = "<reported><field var='jid'/><field var='name'/></reported>"
    rows = "".join(f"<item>{''.join(fields)}</item>" for fields in items)
    return etree.fromstring(f"<x xmlns='{NS_DATA}' type='result'>{reported}{rows}</x>")


def test_parse_table_reads_items_written_by_hand() -> None:
    x = hits([field("name", "A")], [field("jid", "b@example.org")])
    assert Hit.parse_table(x) == [Hit(name="A"), Hit(jid=JID("b", "example.org"))]


def test_parse_table_refuses_a_bad_item_naming_its_number_and_field() -> None:
    x = hits([field("name", "A")], [field("jid", "@example.org")])
    assert table_refusal(x) == "item 2: field 'jid': invalid local part in JID '@example.org'"


def test_parse_table_refuses_an_item_with_a_field_given_twice() -> None:
    x = hits([field("name", "A"), field("name", "B")])
    assert table_refusal(x) == "item 1: field 'name' is given twice"


def test_parsed_forms_do_not_share_a_list_default() -> None:
    first, second = Profile.parse_table(Profile.table([{"nick": "a"}, {"nick": "b"}]))
    first.topics.append("xmpp")
    assert second.topics == [] and Profile.topics.default == []


def test_constructed_forms_do_not_share_a_list_default() -> None:
    Profile().topics.append("xmpp")
    assert Profile().topics == []


# Parsing: typed values


def test_parse_gives_an_instance_with_typed_values() -> None:
    parsed = Profile.parse(
        submission(
            field("nick", "alice"),
            field("password", "secret"),
            field("session", "s-9"),
            field("bio", "one", "two"),
            field("age", "30"),
            field("followers", "false"),
            field("color", "blue"),
            field("topics", "xmpp", "python"),
            field("home", "example.org"),
            field("friend-list", "bob@example.org", "carol@example.org/phone"),
        )
    )
    assert parsed == Profile(
        nick="alice",
        password="secret",
        session="s-9",
        bio="one\ntwo",
        age=30,
        followers=False,
        color="blue",
        topics=["xmpp", "python"],
        home=JID(None, "example.org"),
        friends=[JID("bob", "example.org"), JID("carol", "example.org", "phone")],
    )
    assert isinstance(parsed.home, JID) and parsed.age == 30 and parsed.intro == "About you"


@pytest.mark.parametrize(
    ("text", "value"), [("1", True), ("true", True), ("0", False), ("false", False)]
)
def test_boolean_accepts_1_0_true_and_false(text: str, value: bool) -> None:
    assert (
        Profile.parse(submission(field("nick", "a"), field("followers", text))).followers is value
    )


def test_fields_left_out_or_empty_take_their_defaults() -> None:
    parsed = Profile.parse(submission(field("nick", "a"), field("age"), field("bio", "")))
    assert (parsed.age, parsed.bio, parsed.followers, parsed.session, parsed.topics) == (
        None,
        None,
        True,
        "s-1",
        [],
    )


def test_unknown_fields_and_fields_without_var_are_ignored_by_default() -> None:
    x = submission(field("nick", "a"), field("extra", "x"), "<field><value>y</value></field>")
    assert Profile.parse(x).nick == "a"


def test_a_form_type_sent_to_a_form_without_one_is_ignored() -> None:
    class Plain(Form):
        name = TextSingle()

    assert Plain.parse(submission(field("name", "a"))).name == "a"


def test_parse_reads_a_result_form_when_asked() -> None:
    x = Profile.result({"nick": "alice"})
    assert Profile.parse(x, type="result").nick == "alice"


def test_instances_assign_checked_values() -> None:
    profile = Profile(nick="alice")
    profile.age = 40
    assert profile.age == 40
    with pytest.raises(ValueError, match="above the maximum"):
        profile.age = 151


# Parsing: refusals


def test_no_form_is_refused() -> None:
    assert refusal(None) == "a data form (jabber:x:data) is required"


def test_an_element_that_is_not_a_data_form_is_refused() -> None:
    assert refusal(etree.fromstring("<x xmlns='urn:other' type='submit'/>")) == (
        "a data form (jabber:x:data) is required"
    )


@pytest.mark.parametrize("kind", ["form", "result", "cancel"])
def test_a_form_of_another_type_than_submit_is_refused(kind: str) -> None:
    assert refusal(submission(field("nick", "a"), type=kind)) == (
        f"the form is of type {kind!r}, not 'submit'"
    )


def test_a_missing_form_type_is_refused() -> None:
    assert refusal(submission(field("nick", "a"), form_type=None)) == (
        "FORM_TYPE is missing, expected 'urn:example:profile'"
    )


def test_another_form_type_is_refused() -> None:
    assert refusal(submission(field("nick", "a"), form_type="urn:example:other")) == (
        "FORM_TYPE is 'urn:example:other', expected 'urn:example:profile'"
    )


def test_a_missing_required_field_is_refused() -> None:
    assert refusal(submission(field("age", "3"))) == "field 'nick' is required"


def test_an_empty_required_field_is_refused() -> None:
    assert refusal(submission(field("nick", ""))) == "field 'nick' is required"


BAD_VALUES = {
    "a value outside the options": (
        field("color", "green"),
        "field 'color': 'green' is not one of the options",
    ),
    "a list-multi value outside the options": (
        field("topics", "xmpp", "perl"),
        "field 'topics': 'perl' is not one of the options",
    ),
    "a malformed JID": (
        field("home", "@example.org"),
        "field 'home': invalid local part in JID '@example.org'",
    ),
    "a malformed JID among several": (
        field("friend-list", "a@b", "x y"),
        "field 'friend-list': invalid character in JID 'x y'",
    ),
    "an integer below the minimum": (field("age", "-1"), "field 'age': -1 is below the minimum 0"),
    "an integer above the maximum": (
        field("age", "+151"),
        "field 'age': 151 is above the maximum 150",
    ),
    "a malformed boolean": (field("followers", "yes"), "field 'followers': 'yes' is not a boolean"),
    "several values for a single-valued field": (
        field("color", "red", "blue"),
        "field 'color': takes one value, got 2",
    ),
}


RANGE_REFUSALS = {
    "fewer values than the minimum": (
        [field("channels", "mail")],
        "field 'channels': choose at least 2, got 1",
    ),
    "more values than the maximum": (
        [field("channels", "mail", "xmpp", "phone")],
        "field 'channels': choose at most 2, got 3",
    ),
    "no value where a minimum is set": ([field("channels")], "field 'channels' is required"),
    "more values than a maximum alone": (
        [field("channels", "mail", "xmpp"), field("extras", "mail", "xmpp")],
        "field 'extras': choose at most 1, got 2",
    ),
}


@pytest.mark.parametrize(("submitted", "text"), RANGE_REFUSALS.values(), ids=RANGE_REFUSALS.keys())
def test_a_list_multi_outside_its_selection_range_is_refused(
    submitted: list[str], text: str
) -> None:
    assert refusal(submission(*submitted, form_type=None), Channels) == text


def test_a_list_multi_within_its_selection_range_is_accepted() -> None:
    x = submission(field("channels", "mail", "phone"), field("extras", "xmpp"), form_type=None)
    parsed = Channels.parse(x)
    assert (parsed.channels, parsed.extras) == (["mail", "phone"], ["xmpp"])


@pytest.mark.parametrize(("submitted", "text"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_value_is_refused_with_a_text_naming_the_field_and_the_fault(
    submitted: str, text: str
) -> None:
    assert refusal(submission(field("nick", "a"), submitted)) == text


@pytest.mark.parametrize("text", ["3.5", "three", " 3", "1_000", "\u0663"])
def test_a_malformed_integer_is_refused(text: str) -> None:
    assert refusal(submission(field("nick", "a"), field("age", text))) == (
        f"field 'age': {text!r} is not an integer"
    )


@pytest.mark.parametrize("nick", ["Alice", "alice!"])
def test_a_value_not_wholly_matching_the_regex_is_refused(nick: str) -> None:
    assert refusal(submission(field("nick", nick))) == (
        f"field 'nick': {nick!r} does not match [a-z]+"
    )


def test_a_field_given_twice_is_refused() -> None:
    assert refusal(submission(field("nick", "a"), field("nick", "b"))) == (
        "field 'nick' is given twice"
    )


def test_unknown_fields_are_refused_when_the_form_says_so() -> None:
    class Strict(Form):
        refuse_unknown_fields = True
        name = TextSingle()

    x = submission(field("name", "a"), field("extra", "x"), form_type=None)
    assert refusal(x, Strict) == "unknown field 'extra'"


def test_a_refusal_raised_in_an_action_answers_bad_request_with_its_text() -> None:
    class Settings(Handler):
        @iq("set", "{urn:example:settings}settings")
        def save(self, stanza: etree._Element) -> None:
            Profile.parse(stanza[0].find(f"{X}x"))

    server = FakeServer([Settings()])
    x = etree.tostring(submission(field("nick", "Alice"))).decode()
    reply = one(
        server.deliver(f"<iq type='set'><settings xmlns='urn:example:settings'>{x}</settings></iq>")
    )
    assert error_of(reply) == (
        "bad-request",
        "modify",
        "field 'nick': 'Alice' does not match [a-z]+",
    )


# Property: what is built parses back


xml_text = st.text(
    st.characters(
        codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="\ufffe\uffff"
    ),
    min_size=1,
    max_size=20,
)
jids = st.builds(
    JID,
    st.none() | st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
    st.from_regex(r"[a-z0-9]{1,8}(\.[a-z]{2,4})?", fullmatch=True),
    st.none() | xml_text,
)


class Anything(Form):
    FORM_TYPE = "urn:example:anything"
    text = TextSingle()
    secret = TextPrivate()
    hidden = Hidden()
    lines = TextMulti()
    number = Integer(minimum=-(10**20), maximum=10**20)
    flag = Boolean()
    pick = ListSingle(options=["a", "b", "c"])
    picks = ListMulti(options=["a", "b", "c"])
    who = JidSingle()
    whom = JidMulti()


values = st.fixed_dictionaries(
    {},
    optional={
        "text": xml_text,
        "secret": xml_text,
        "hidden": xml_text,
        "lines": st.lists(xml_text | st.just(""), min_size=1, max_size=4)
        .filter(any)
        .map("\n".join),
        "number": st.integers(-(10**20), 10**20),
        "flag": st.booleans(),
        "pick": st.sampled_from("abc"),
        "picks": st.lists(st.sampled_from("abc"), max_size=4),
        "who": jids,
        "whom": st.lists(jids, max_size=3),
    },
)


@settings(deadline=None, max_examples=150)
@given(values)
def test_any_submitted_form_parses_back_to_the_same_values(given_values: dict[str, Any]) -> None:
    sent = etree.tostring(Anything.submit(given_values))
    assert Anything.parse(etree.fromstring(sent)) == Anything(**given_values)


@settings(deadline=None, max_examples=50)
@given(values)
def test_any_result_form_parses_back_to_the_same_values(given_values: dict[str, Any]) -> None:
    sent = etree.tostring(Anything.result(given_values))
    assert Anything.parse(etree.fromstring(sent), type="result") == Anything(**given_values)


@settings(deadline=None, max_examples=50)
@given(st.lists(values, max_size=4))
def test_any_rows_built_as_a_table_parse_back_to_the_same_instances(
    rows: list[dict[str, Any]],
) -> None:
    sent = etree.tostring(Anything.table(rows))
    assert Anything.parse_table(etree.fromstring(sent)) == [Anything(**row) for row in rows]


# Plain text for chat


def text_lines(x: etree._Element) -> list[str]:
    return as_text(x).split("\n")


def test_as_text_of_a_result_starts_with_its_title() -> None:
    assert text_lines(Profile.result({"nick": "alice"}))[0] == "Profile"


def test_as_text_of_a_result_without_title_starts_with_its_first_field() -> None:
    class Plain(Form):
        name = TextSingle("Name")

    assert as_text(Plain.result({"name": "alice"})) == "Name: alice"


def test_as_text_shows_a_field_as_label_and_value() -> None:
    assert "Display name: alice" in text_lines(Profile.result({"nick": "alice"}))


def test_as_text_shows_a_field_without_label_by_its_var() -> None:
    assert "text: x" in text_lines(Anything.result({"text": "x"}))


def test_as_text_shows_an_empty_field_as_its_label_alone() -> None:
    assert "Age:" in text_lines(Profile.result({"nick": "alice"}))


def test_as_text_joins_several_values_with_commas() -> None:
    x = Profile.result({"topics": ["xmpp", "python"]})
    assert "Topics: xmpp, python" in text_lines(x)


def test_as_text_keeps_a_text_multi_field_s_lines_on_their_own_lines() -> None:
    x = Profile.result({"bio": "one\ntwo", "age": 3})
    assert "\nBiography:\none\ntwo\nAge: 3\n" in as_text(x)


@pytest.mark.parametrize(("value", "shown"), [(True, "yes"), (False, "no")])
def test_as_text_shows_a_boolean_as_yes_or_no(value: bool, shown: str) -> None:
    assert f"Accept followers: {shown}" in text_lines(Profile.result({"followers": value}))


def test_as_text_shows_a_fixed_field_as_its_text() -> None:
    assert text_lines(Profile.result({}))[1] == "About you"


def test_as_text_leaves_out_hidden_fields_and_form_type() -> None:
    shown = as_text(Profile.result({}))
    assert "s-1" not in shown and "urn:example:profile" not in shown


def test_as_text_of_a_table_has_a_header_line_then_one_line_per_item() -> None:
    x = Hit.table([Hit(jid=JID("a", "example.org"), name="A"), Hit(name="B")], title="Search")
    assert as_text(x) == "Search\nJID | Name\na@example.org | A\n | B"


def test_as_text_of_a_table_shows_cells_as_a_form_s_values() -> None:
    class Row(Form):
        flag = Boolean("Flag")
        lines = TextMulti("Lines")

    assert text_lines(Row.table([Row(flag=True, lines="a\nb")]))[1] == "yes | a, b"


def test_as_text_of_a_table_leaves_out_hidden_columns() -> None:
    class Row(Form):
        key = Hidden()
        name = TextSingle("Name")

    assert as_text(Row.table([Row(key="k", name="n")])) == "Name\nn"


def test_as_text_of_an_element_that_is_not_a_data_form_raises_value_error() -> None:
    with pytest.raises(ValueError, match="not a data form"):
        as_text(etree.fromstring("<x xmlns='urn:other'/>"))


class Ask(Form):
    """A form asked one field at a time in a chat."""

    intro = Fixed("Welcome")
    name = TextSingle("Name", required=True)
    city = TextSingle("City", required=True, desc="Where you live")
    note = TextSingle()
    code = TextSingle("Code", regex="[a-z]+")
    bio = TextMulti("Bio")
    age = Integer("Age", minimum=0, maximum=150, default=30)
    agree = Boolean("Agree", default=True)
    color = ListSingle("Color", options=[("red", "Red"), "blue"], required=True)
    other = ListSingle("Other", options=["a"], open=True)
    topics = ListMulti("Topics", options=["xmpp", "python", "web"], max_values=2)
    friends = JidMulti("Friends")
    level = Integer("Level", required=True, default=1)
    rank = ListSingle("Rank", options=["3", "2", "1"])


PROMPTS = {
    "a required field's is its label": (Ask.name, "Name"),
    "a field without label's is its var": (Ask.note, "note (optional)"),
    "an optional field's says so": (Ask.bio, "Bio (optional)"),
    "the description is on the next line": (Ask.city, "City\nWhere you live"),
    "the default is shown": (Ask.age, "Age (optional, default: 30)"),
    "a boolean's asks yes or no": (Ask.agree, "Agree (yes/no) (optional, default: yes)"),
    "a list field's numbers its options": (Ask.color, "Color\n1. Red\n2. blue"),
    "a multi-valued field's says how to give several": (
        Ask.friends,
        "Friends (several, separated by commas or spaces) (optional)",
    ),
    "a fixed field's is its text": (Ask.intro, "Welcome"),
}


@pytest.mark.parametrize(("asked", "question"), PROMPTS.values(), ids=PROMPTS.keys())
def test_prompt_asks_for_the_field(asked: Field[Any], question: str) -> None:
    assert asked.prompt() == question


def test_from_chat_takes_the_answer_without_surrounding_spaces() -> None:
    assert Ask.name.from_chat("  alice \n") == "alice"


@pytest.mark.parametrize(("field_name", "value"), [("age", 30), ("note", None), ("topics", [])])
def test_from_chat_takes_the_default_for_an_empty_answer(field_name: str, value: Any) -> None:
    assert Ask.fields[field_name].from_chat(" ") == value


def test_from_chat_refuses_an_empty_answer_to_a_required_field() -> None:
    with pytest.raises(ValueError, match=r"^an answer is required$"):
        Ask.name.from_chat("")


@pytest.mark.parametrize(("answer", "value"), [("2", "blue"), ("red", "red"), ("blue", "blue")])
def test_from_chat_takes_an_option_by_its_number_or_value(answer: str, value: str) -> None:
    assert Ask.color.from_chat(answer) == value


@pytest.mark.parametrize("answer", ["green", "3", "0", "Red"])
def test_from_chat_refuses_an_answer_that_names_no_option(answer: str) -> None:
    with pytest.raises(ValueError, match=f"^{answer!r} is not one of the options: answer 1 to 2$"):
        Ask.color.from_chat(answer)


def test_from_chat_reads_a_number_as_an_option_s_number_before_its_value() -> None:
    assert Ask.rank.from_chat("1") == "3"


def test_from_chat_takes_the_default_of_a_required_field_for_an_empty_answer() -> None:
    assert Ask.level.from_chat("") == 1


def test_from_chat_takes_any_value_for_an_open_list() -> None:
    assert Ask.other.from_chat("zzz") == "zzz"


@pytest.mark.parametrize("answer", ["1,python", "1, python", "1 python", " 1 ,  python "])
def test_from_chat_takes_several_options_separated_by_commas_or_spaces(answer: str) -> None:
    assert Ask.topics.from_chat(answer) == ["xmpp", "python"]


def test_from_chat_refuses_more_options_than_the_field_takes() -> None:
    with pytest.raises(ValueError, match=r"^choose at most 2, got 3$"):
        Ask.topics.from_chat("1 2 3")


@pytest.mark.parametrize(
    ("answer", "value"),
    [(a, True) for a in ["yes", "Y", "TRUE", "1"]]
    + [(a, False) for a in ["no", "n", "False", "0"]],
)
def test_from_chat_takes_yes_no_true_false_1_0_in_any_case(answer: str, value: bool) -> None:
    assert Ask.agree.from_chat(answer) is value


def test_from_chat_refuses_a_boolean_answer_that_is_not_yes_or_no() -> None:
    with pytest.raises(ValueError, match=r"^'maybe' is not an answer: say yes or no$"):
        Ask.agree.from_chat("maybe")


def test_from_chat_takes_several_jids_separated_by_commas_or_spaces() -> None:
    assert Ask.friends.from_chat("a@example.org, b@example.org c@example.org") == [
        JID("a", "example.org"),
        JID("b", "example.org"),
        JID("c", "example.org"),
    ]


def test_from_chat_refuses_a_malformed_jid() -> None:
    with pytest.raises(ValueError, match=r"^invalid local part in JID '@example\.org'$"):
        Ask.friends.from_chat("a@example.org @example.org")


@pytest.mark.parametrize(
    ("answer", "text"),
    [("thirty", "'thirty' is not an integer"), ("200", "200 is above the maximum 150")],
)
def test_from_chat_validates_an_integer_as_parse_does(answer: str, text: str) -> None:
    with pytest.raises(ValueError, match=f"^{text}$"):
        Ask.age.from_chat(answer)


def test_from_chat_validates_the_regex_as_parse_does() -> None:
    with pytest.raises(ValueError, match=r"^'ABC' does not match \[a-z\]\+$"):
        Ask.code.from_chat("ABC")


def test_from_chat_keeps_the_lines_of_a_text_multi_answer() -> None:
    assert Ask.bio.from_chat("one\ntwo") == "one\ntwo"


def test_from_chat_of_a_fixed_field_raises_type_error() -> None:
    with pytest.raises(TypeError, match="takes no answer"):
        Ask.intro.from_chat("hello")


# XEP-0128: extended information in disco#info


class Contact(Form):
    FORM_TYPE = "http://jabber.org/network/serverinfo"
    admins = JidMulti(var="admin-addresses")


class Operated(Handler):
    """A handler that tells who runs the service."""

    def disco_forms(self, node: str | None) -> Sequence[etree._Element]:
        return (
            [Contact.result({"admins": [JID.parse("admin@example.org")]})] if node is None else []
        )


def test_a_handler_s_extended_information_form_appears_in_disco_info() -> None:
    server = FakeServer([Operated()])
    reply = one(server.deliver(f"<iq type='get'><query xmlns='{NS_DISCO_INFO}'/></iq>"))
    forms = reply.findall(f"{{{NS_DISCO_INFO}}}query/{X}x")
    assert len(forms) == 1
    assert Contact.parse(forms[0], type="result").admins == [JID("admin", "example.org")]


class Secrets(Form):
    pin = TextPrivate("PIN", default="1234", regex="[0-9]{4}")
    tags = ListMulti("Tags", options=["a", "b"], required=True)
    name = TextSingle("Name")


def test_as_text_hides_a_secret() -> None:
    assert as_text(Secrets.result({"pin": "9876", "tags": ["a"]})).split("\n")[0] == (
        "PIN: ********"
    )


def test_prompt_hides_a_secret_default() -> None:
    assert Secrets.pin.prompt() == "PIN (optional, default: ********)"


def test_a_refused_secret_is_not_quoted() -> None:
    with pytest.raises(ValueError) as refused:
        Secrets.pin.from_chat("12ab")
    assert "12ab" not in str(refused.value)


def test_as_text_keeps_a_single_line_value_on_one_line() -> None:
    shown = as_text(Secrets.result({"name": "bob\nAdmin: yes", "tags": ["a"]}))
    assert shown.split("\n")[-1] == "Name: bob Admin: yes"


@pytest.mark.parametrize("answer", [",", " , ,"])
def test_a_chat_answer_of_separators_alone_is_no_answer(answer: str) -> None:
    with pytest.raises(ValueError, match="an answer is required"):
        Secrets.tags.from_chat(answer)


def test_values_of_gives_what_the_form_class_takes_back() -> None:
    form = Secrets(pin="9876", tags=["a", "b"], name="bob")
    assert form_values(form) == {"pin": "9876", "tags": ["a", "b"], "name": "bob"}
    assert Secrets(**form_values(form)) == form
