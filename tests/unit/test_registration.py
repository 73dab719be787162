"""In-band registration (XEP-0077) and the gateway's subscriptions (XEP-0100)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from support import error_of, one
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs

from empc import JID, StanzaError
from empc.forms import NS_DATA, Form, Integer, TextPrivate, TextSingle
from empc.registration import NS_REGISTER, Registration, RegistrationForm
from empc.testing import DEFAULT_SENDER, FakeServer

R = f"{{{NS_REGISTER}}}"
X = f"{{{NS_DATA}}}"
USER = JID.parse(DEFAULT_SENDER).bare


class Account(RegistrationForm):
    instructions = "Give your legacy account"
    username = TextSingle("User name", required=True, regex=r"[a-z]+")
    password = TextPrivate("Password", required=True)
    email = TextSingle("Email")
    age = Integer("Age", minimum=0)


class Gateway(Registration[Account]):
    """Keeps registrations in a dict; refuses a user name already taken."""

    form = Account
    # Not in the schema's order, which the answers follow.
    legacy: ClassVar[Mapping[str, str]] = {
        "password": "password",
        "username": "username",
        "email": "email",
    }
    subscribe = True

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.accounts: dict[JID, Account] = {}
        self.calls: list[tuple[str, JID]] = []

    def registered(self, user: JID) -> Account | None:
        return self.accounts.get(user)

    def register(self, user: JID, form: Account) -> None:
        self.calls.append(("register", user))
        if any(a.username == form.username for j, a in self.accounts.items() if j != user):
            raise StanzaError("conflict", "that user name is taken")
        self.accounts[user] = form

    def unregister(self, user: JID) -> None:
        self.calls.append(("unregister", user))
        del self.accounts[user]


def query(content: str = "", type: str = "set", sender: str = DEFAULT_SENDER) -> str:
    return f"<iq type='{type}' from='{sender}'><query xmlns='{NS_REGISTER}'>{content}</query></iq>"


def data_form(username: str = "romeo", password: str = "juliet", *more: str) -> str:
    fields = [
        f"<field var='FORM_TYPE'><value>{NS_REGISTER}</value></field>",
        f"<field var='username'><value>{username}</value></field>",
        f"<field var='password'><value>{password}</value></field>",
        *more,
    ]
    return f"<x xmlns='{NS_DATA}' type='submit'>{''.join(fields)}</x>"


def legacy(username: str = "romeo", password: str = "juliet", email: str = "r@example.org") -> str:
    return f"<username>{username}</username><password>{password}</password><email>{email}</email>"


def registered(server: FakeServer, handler: Gateway, sender: str = DEFAULT_SENDER) -> None:
    """Register ``sender`` as romeo, then forget what was sent."""
    server.deliver(query(data_form(), sender=sender))
    assert JID.parse(sender).bare in handler.accounts
    server.clear()


def types(stanzas: list[etree._Element]) -> list[tuple[str, str | None]]:
    """Each stanza's (kind, type)."""
    return [(etree.QName(stanza).localname, stanza.get("type")) for stanza in stanzas]


def serving(**attributes: Any) -> tuple[FakeServer, Gateway]:
    """A FakeServer with a Gateway whose class attributes are ``attributes``."""
    handler = type("Custom", (Gateway,), attributes)() if attributes else Gateway()
    return FakeServer([handler]), handler


def payload(reply: etree._Element) -> etree._Element:
    assert reply.get("type") == "result", etree.tostring(reply)
    found = reply.find(f"{R}query")
    assert found is not None, etree.tostring(reply)
    return found


def form_values(query: etree._Element) -> dict[str, list[str]]:
    x = query.find(f"{X}x")
    assert x is not None and x.get("type") == "form", etree.tostring(query)
    return {
        field.get("var", ""): [value.text or "" for value in field.iter(f"{X}value")]
        for field in x.iter(f"{X}field")
    }


# Declaring


def test_a_form_of_another_form_type_is_refused_at_the_class_statement() -> None:
    class Other(Form):
        FORM_TYPE = "urn:example:other"

    with pytest.raises(ValueError, match="FORM_TYPE is 'urn:example:other'"):
        type("Bad", (Registration,), {"form": Other})


def test_a_legacy_element_the_xep_does_not_define_is_refused() -> None:
    with pytest.raises(ValueError, match="XEP-0077 defines no <age/>"):
        type("Bad", (Gateway,), {"legacy": {"username": "username", "age": "age"}})


def test_a_legacy_element_for_no_field_of_the_form_is_refused() -> None:
    with pytest.raises(ValueError, match="Account has no field 'nick'"):
        type("Bad", (Gateway,), {"legacy": {"username": "username", "nick": "nick"}})


def test_a_required_field_without_a_legacy_element_is_refused_when_legacy_is_offered() -> None:
    with pytest.raises(ValueError, match="required field 'password' has no legacy element"):
        type("Bad", (Gateway,), {"legacy": {"username": "username"}})


def test_a_handler_without_a_form_cannot_be_made() -> None:
    class Formless(Registration[Account]):
        pass

    with pytest.raises(TypeError, match="Formless declares no registration form"):
        Formless()


def test_disco_info_advertises_registration() -> None:
    server, _ = serving()
    (reply,) = server.deliver(
        "<iq type='get'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    assert reply.find(f".//*[@var='{NS_REGISTER}']") is not None


# Asking for the form


def test_get_from_a_new_user_gives_instructions_empty_legacy_fields_and_the_form() -> None:
    server, _ = serving()
    answer = payload(one(server.deliver(query(type="get"))))
    assert [etree.QName(child).localname for child in answer] == [
        "instructions",
        "username",
        "password",
        "email",
        "x",
    ]
    assert answer.findtext(f"{R}instructions") == "Give your legacy account"
    assert all(not child.text for child in list(answer)[1:4])
    assert form_values(answer) == {
        "FORM_TYPE": [NS_REGISTER],
        "username": [],
        "password": [],
        "email": [],
        "age": [],
    }


def test_get_without_legacy_fields_gives_instructions_and_the_form_only() -> None:
    server, _ = serving(legacy={})
    answer = payload(one(server.deliver(query(type="get"))))
    assert [etree.QName(child).localname for child in answer] == ["instructions", "x"]


def test_get_from_a_registered_user_gives_registered_and_the_values_on_file() -> None:
    server, handler = serving()
    registered(server, handler)
    answer = payload(one(server.deliver(query(type="get"))))
    assert etree.QName(answer[0]).localname == "registered"
    assert answer.findtext(f"{R}username") == "romeo"
    assert answer.findtext(f"{R}password") == "juliet"
    assert answer.findtext(f"{R}email") == ""  # no email on file
    values = form_values(answer)
    assert values["username"] == ["romeo"] and values["email"] == []


def test_a_value_left_out_of_the_registration_on_file_is_not_shown() -> None:
    server, handler = serving()
    registered(server, handler)
    handler.accounts[USER].password = None  # a handler that does not show passwords
    answer = payload(one(server.deliver(query(type="get"))))
    assert answer.findtext(f"{R}password") == ""
    assert form_values(answer)["password"] == []


def test_every_resource_of_a_user_shares_one_registration() -> None:
    server, handler = serving()
    registered(server, handler, sender="user@example.org/phone")
    answer = payload(one(server.deliver(query(type="get", sender="user@example.org/laptop"))))
    assert answer.find(f"{R}registered") is not None
    assert handler.calls == [("register", USER)]


# Registering


def test_a_submitted_data_form_registers_the_bare_jid_with_its_values() -> None:
    server, handler = serving()
    reply = server.deliver(
        query(data_form("romeo", "juliet", "<field var='age'><value>16</value></field>"))
    )[0]
    assert reply.get("type") == "result" and len(reply) == 0
    assert handler.accounts == {USER: Account(username="romeo", password="juliet", age=16)}


def test_a_bad_data_form_is_a_bad_request_naming_the_field() -> None:
    server, handler = serving()
    reply = one(server.deliver(query(data_form("Romeo"))))
    assert error_of(reply) == (
        "bad-request",
        "modify",
        "field 'username': 'Romeo' does not match [a-z]+",
    )
    assert handler.calls == []


def test_legacy_fields_register_when_no_data_form_is_sent() -> None:
    server, handler = serving()
    reply = server.deliver(query(legacy()))[0]
    assert reply.get("type") == "result"
    assert handler.accounts == {
        USER: Account(username="romeo", password="juliet", email="r@example.org")
    }


@pytest.mark.parametrize(
    "content",
    [
        "<username>romeo</username><email>r@example.org</email>",
        "<username>romeo</username><password/><email>r@example.org</email>",
    ],
    ids=["missing", "empty"],
)
def test_a_legacy_submission_without_a_field_is_not_acceptable(content: str) -> None:
    server, handler = serving()
    reply = one(server.deliver(query(content)))
    assert error_of(reply) == ("not-acceptable", "modify", "<password/> is required")
    assert handler.calls == []


def test_a_legacy_value_the_field_refuses_is_a_bad_request_naming_the_element() -> None:
    server, _ = serving()
    reply = one(server.deliver(query(legacy(username="Romeo"))))
    assert error_of(reply) == (
        "bad-request",
        "modify",
        "<username/>: 'Romeo' does not match [a-z]+",
    )


def test_without_legacy_fields_a_set_needs_a_data_form() -> None:
    server, _ = serving(legacy={})
    reply = one(server.deliver(query(legacy())))
    assert error_of(reply) == ("bad-request", "modify", "a data form (jabber:x:data) is required")


def test_the_data_form_takes_precedence_over_legacy_fields() -> None:
    server, handler = serving()
    server.deliver(query(legacy(username="tybalt") + data_form("romeo")))
    assert handler.accounts[USER].username == "romeo"


def test_what_register_raises_is_the_answer() -> None:
    server, handler = serving()
    registered(server, handler, sender="tybalt@example.org/x")
    reply = one(server.deliver(query(data_form("romeo"))))
    assert error_of(reply) == ("conflict", "cancel", "that user name is taken")
    assert USER not in handler.accounts


def test_a_registered_user_updates_the_registration() -> None:
    server, handler = serving()
    registered(server, handler)
    reply = one(server.deliver(query(data_form("romeo", "balcony"))))
    assert reply.get("type") == "result"
    assert handler.accounts[USER].password == "balcony"


def test_registration_closed_refuses_new_users_not_allowed() -> None:
    server, handler = serving(open=False)
    for content, type in (("", "get"), (data_form(), "set"), (legacy(), "set")):
        reply = one(server.deliver(query(content, type=type)))
        assert error_of(reply) == ("not-allowed", "cancel", "registration is closed")
    assert handler.calls == []


def test_registration_closed_still_serves_registered_users() -> None:
    server, handler = serving(open=False)
    handler.accounts[USER] = Account(username="romeo", password="juliet")
    assert payload(one(server.deliver(query(type="get")))).find(f"{R}registered") is not None
    assert types(server.deliver(query(data_form("romeo", "balcony"))))[0] == ("iq", "result")
    assert types(server.deliver(query("<remove/>")))[0] == ("iq", "result")
    assert handler.calls == [("register", USER), ("unregister", USER)]


def test_hooks_left_unimplemented_answer_feature_not_implemented() -> None:
    class Bare(Registration[Account]):
        form = Account

    server = FakeServer([Bare()])
    reply = one(server.deliver(query(type="get")))
    assert error_of(reply)[0] == "feature-not-implemented"


# Removing


def test_remove_unregisters_the_user() -> None:
    server, handler = serving()
    registered(server, handler)
    reply = server.deliver(query("<remove/>"))[0]
    assert reply.get("type") == "result" and len(reply) == 0
    assert handler.accounts == {}


def test_remove_from_a_user_not_registered_is_registration_required() -> None:
    server, handler = serving()
    reply = one(server.deliver(query("<remove/>")))
    assert error_of(reply) == ("registration-required", "auth", "you are not registered")
    assert handler.calls == []


def test_remove_with_other_elements_is_a_bad_request() -> None:
    server, handler = serving()
    registered(server, handler)
    reply = one(server.deliver(query("<remove/><username>romeo</username>")))
    assert error_of(reply) == (
        "bad-request",
        "modify",
        "<remove/> must be the only child of <query/>",
    )
    assert USER in handler.accounts


# The gateway's subscriptions


def test_a_first_registration_asks_the_bare_jid_for_a_subscription_after_the_result() -> None:
    server, _ = serving()
    sent = server.deliver(query(data_form()))
    assert types(sent) == [("iq", "result"), ("presence", "subscribe")]
    assert sent[1].get("to") == str(USER)
    assert sent[1].get("from") == server.domain


def test_an_update_asks_for_no_subscription() -> None:
    server, handler = serving()
    registered(server, handler)
    assert types(server.deliver(query(data_form()))) == [("iq", "result")]


def test_a_removal_cancels_both_subscriptions_after_the_result() -> None:
    server, handler = serving()
    registered(server, handler)
    sent = server.deliver(query("<remove/>"))
    assert types(sent) == [
        ("iq", "result"),
        ("presence", "unsubscribe"),
        ("presence", "unsubscribed"),
        ("presence", "unavailable"),
    ]
    assert {stanza.get("to") for stanza in sent[1:]} == {str(USER)}


def test_a_refused_registration_asks_for_no_subscription() -> None:
    server, _ = serving()
    assert types(server.deliver(query(data_form("Romeo")))) == [("iq", "error")]


def test_without_subscribe_no_presence_is_sent() -> None:
    server, _ = serving(subscribe=False)
    assert types(server.deliver(query(data_form()))) == [("iq", "result")]
    assert types(server.deliver(query("<remove/>"))) == [("iq", "result")]
    assert server.deliver("<presence type='subscribe'/>") == []


@pytest.mark.parametrize("is_registered, answer", [(True, "subscribed"), (False, "unsubscribed")])
def test_a_users_subscription_to_the_component_is_approved_if_registered(
    is_registered: bool, answer: str
) -> None:
    server, handler = serving()
    if is_registered:
        registered(server, handler)
    sent = one(server.deliver("<presence type='subscribe' from='user@example.org'/>"))
    assert types([sent]) == [("presence", answer)]
    assert sent.get("to") == str(USER)


def test_a_subscription_to_an_address_in_the_domain_is_left_to_other_routes() -> None:
    server, handler = serving()
    registered(server, handler)
    assert server.deliver(f"<presence type='subscribe' to='contact@{server.domain}'/>") == []


class Later(Gateway):
    """Its ``register`` and ``unregister`` finish when the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.later: list[Deferred[None]] = []

    async def registered(self, user: JID) -> Account | None:  # type: ignore[override]
        return self.accounts.get(user)

    def register(self, user: JID, form: Account) -> Deferred[None]:  # type: ignore[override]
        super().register(user, form)
        self.later.append(Deferred())
        return self.later[-1]


def test_hooks_may_answer_later_with_deferreds_and_coroutines() -> None:
    handler = Later()
    server = FakeServer([handler])
    assert server.deliver(query(data_form())) == []
    handler.later[0].callback(None)
    server.clock.advance(0)
    assert types(server.sent) == [("iq", "result"), ("presence", "subscribe")]


def test_a_presence_that_cannot_be_sent_once_the_stream_ends_is_logged_and_dropped() -> None:
    handler = Later()
    server = FakeServer([handler])
    server.deliver(query(data_form()))
    server.close_stream()  # the result is still due, but nothing else may go
    with capturedLogs() as events:
        handler.later[0].callback(None)
        server.clock.advance(0)
    assert types(server.sent) == [("iq", "result")]
    assert [event["type"] for event in events if "presence to" in event["log_format"]] == [
        "subscribe"
    ]


# Properties

users = st.sampled_from(["alice@example.org/a", "alice@example.org/b", "bob@example.org/c"])
steps = st.lists(st.tuples(st.sampled_from(["get", "register", "remove"]), users), max_size=12)


@settings(deadline=None, max_examples=100)
@given(steps)
def test_any_sequence_of_requests_follows_the_registrations_on_file(
    sequence: list[tuple[str, str]],
) -> None:
    """Against a model (the set of registered bare JIDs): a get says
    registered exactly for those, a remove of anyone else is
    registration-required, and subscribe goes out exactly on a user's
    first registration, unsubscribe exactly on a removal."""
    server, _ = serving()
    model: set[str] = set()
    for operation, sender in sequence:
        bare = sender.partition("/")[0]
        name = bare.partition("@")[0]  # one user name per bare JID: no conflicts
        if operation == "get":
            answer = payload(server.deliver(query(type="get", sender=sender))[0])
            assert (answer.find(f"{R}registered") is not None) == (bare in model)
        elif operation == "register":
            sent = server.deliver(query(data_form(name), sender=sender))
            expected = [("iq", "result")] + ([] if bare in model else [("presence", "subscribe")])
            assert types(sent) == expected
            model.add(bare)
        else:
            sent = server.deliver(query("<remove/>", sender=sender))
            if bare in model:
                assert types(sent)[:2] == [("iq", "result"), ("presence", "unsubscribe")]
                model.discard(bare)
            else:
                assert error_of(one(sent))[0] == "registration-required"


legacy_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    min_size=1,
)


@settings(deadline=None, max_examples=100)
@given(legacy_text, legacy_text)
def test_legacy_values_come_back_as_submitted(password: str, email: str) -> None:
    server, _ = serving()
    submission = etree.fromstring(query(legacy(password="x", email="x")))
    submission[0].find(f"{R}password").text = password  # type: ignore[union-attr]
    submission[0].find(f"{R}email").text = email  # type: ignore[union-attr]
    assert types(server.deliver(submission))[0] == ("iq", "result")
    answer = payload(server.deliver(query(type="get"))[0])
    assert (answer.findtext(f"{R}password"), answer.findtext(f"{R}email")) == (password, email)
    assert form_values(answer)["email"] == [email]


# Updates keep what they do not change


def test_a_legacy_update_keeps_the_fields_legacy_clients_cannot_send() -> None:
    server, handler = serving()
    server.deliver(
        query(data_form("romeo", "juliet", "<field var='age'><value>16</value></field>"))
    )
    assert one(server.deliver(query(legacy(email="new@example.org")))).get("type") == "result"
    account = handler.accounts[USER]
    assert (account.email, account.age) == ("new@example.org", 16)


def test_an_empty_legacy_element_in_an_update_keeps_the_value_on_file() -> None:
    server, handler = serving()
    registered(server, handler)
    update = "<username>romeo</username><password/><email>new@example.org</email>"
    assert one(server.deliver(query(update))).get("type") == "result"
    assert handler.accounts[USER].password == "juliet"
    assert handler.accounts[USER].email == "new@example.org"


def test_an_empty_legacy_element_in_a_first_registration_is_not_acceptable() -> None:
    server, _ = serving()
    reply = one(server.deliver(query("<username>romeo</username><password/><email>e</email>")))
    assert error_of(reply)[0] == "not-acceptable"


def test_a_data_form_update_with_the_secret_left_empty_keeps_it() -> None:
    server, handler = serving()
    registered(server, handler)
    assert one(server.deliver(query(data_form("romeo", "")))).get("type") == "result"
    assert handler.accounts[USER].password == "juliet"


def test_a_refused_secret_is_not_quoted_back() -> None:
    class Strict(RegistrationForm):
        username = TextSingle("User name", required=True)
        password = TextPrivate("Password", required=True, regex=".{8,}")

    class StrictGateway(Gateway):
        form = Strict  # type: ignore[assignment]
        legacy: ClassVar[Mapping[str, str]] = {}

    server = FakeServer([StrictGateway()])
    reply = one(server.deliver(query(data_form("romeo", "hunter2"))))
    condition, _, text = error_of(reply)
    assert condition == "bad-request"
    assert text is not None and "hunter2" not in text
