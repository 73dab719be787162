"""Ad-hoc commands (XEP-0050) and their chat face, through Prosody and
ejabberd, by a real client using slixmpp's own XEP-0050 plugin.

The component (``command_handlers:Kitchen``) runs once per server for the
whole module; carol is its admin, alice is not. Every test ends the
command sessions it opens, so the next one starts with none. A second
component whose sessions expire after a moment serves the tests of the
idle time.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from client import CommandAction, CommandAnswer, FormValues, XmppClient, login, login_all
from command_handlers import Delivery, Order, Pizza, Salad, menu_table
from component import ComponentProcess, ComponentStarter
from servers import SERVER_CLASSES, XmppServer

from empc.commands import CANCEL_HINT
from empc.forms import Field, Form, as_text


def question(field: Field[Any]) -> str:
    """How a chat dialog asks for ``field``."""
    return f"{field.prompt()}\n{CANCEL_HINT}"


pytestmark = pytest.mark.integration

KITCHEN = "second.localhost"
HURRIED = "echo.localhost"
HANDLER = "command_handlers:Kitchen"
NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_DATA = "jabber:x:data"
CONNECT_TIMEOUT = 20.0
IDLE_TIMEOUT = 1.5  # the hurried component's, in seconds
# Twisted's log lines of unhandled failures; empc's own errors.
LOGGED_FAILURE = r"Traceback|Unhandled|#(?:warn|error|critical)\]"
ORDERED = re.compile(r"Order #(\d+): (.*)\.")

ALICE_COMMANDS = {("order", "Order a meal"), ("menu", "The menu")}
ALICE_HELP = [
    "Commands (send them to me, one per message):",
    "order <dish> <how many>: Order a meal",
    "menu: The menu",
    "help: this list",
    "cancel: stop a command that asks you questions",
]


# -- the components, once per server ---------------------------------------------


@dataclass
class Service:
    server: XmppServer
    process: ComponentProcess
    domain: str


@pytest.fixture(scope="module", params=sorted(SERVER_CLASSES))
def server(request: pytest.FixtureRequest) -> XmppServer:
    """Each server in turn, for the whole module."""
    found: XmppServer = request.getfixturevalue(f"{request.param}_server")
    found.start()
    return found


def _serve(
    server: XmppServer, workdir: Path, domain: str, handlers: list[object]
) -> Iterator[Service]:
    """``twistd empc`` serving ``domain`` with ``handlers``; its log is left
    in ``workdir`` for a look after the run."""
    starter = ComponentStarter(workdir)
    try:
        process = starter(
            server, domain=domain, handlers=handlers, access_lists={"admins": ["carol@localhost"]}
        )
        process.wait_for(re.escape(f"Component {domain} connected"), CONNECT_TIMEOUT)
        yield Service(server, process, domain)
    finally:
        starter.stop_all()
        for process in starter.started:
            (workdir / "empc.log").write_text(process.output() + "\n")


@pytest.fixture(scope="module")
def kitchen_service(
    server: XmppServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    yield from _serve(server, tmp_path_factory.mktemp(f"kitchen-{server.name}"), KITCHEN, [HANDLER])


@pytest.fixture(scope="module")
def hurried_service(
    server: XmppServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    commands = {"class": "empc.commands:Commands", "config": {"idle_timeout": IDLE_TIMEOUT}}
    workdir = tmp_path_factory.mktemp(f"hurried-{server.name}")
    yield from _serve(server, workdir, HURRIED, [HANDLER, commands])


def _watched(service: Service) -> Iterator[Service]:
    """The running service; after the test, the component must not have
    logged a traceback or an error."""
    process = service.process
    if process.returncode is not None:
        pytest.fail(f"the {service.domain} component has exited:\n{process.output()}")
    seen = len(process.lines)
    yield service
    logged = process.lines[seen:]
    failures = [line for line in logged if re.search(LOGGED_FAILURE, line)]
    assert not failures, "the component logged failures:\n" + "\n".join(logged)


@pytest.fixture
def kitchen(kitchen_service: Service) -> Iterator[Service]:
    yield from _watched(kitchen_service)


@pytest.fixture
def hurried(hurried_service: Service) -> Iterator[Service]:
    yield from _watched(hurried_service)


@pytest.fixture
def alice(server: XmppServer) -> Iterator[XmppClient]:
    jid, password = server.account("alice")
    with login(jid, password, server.c2s_port) as client:
        yield client


# -- helpers ------------------------------------------------------------------------


def asks(answer: CommandAnswer, form: type[Form], *actions: str) -> str:
    """Check that ``answer`` asks ``form``, offering ``actions``; its session."""
    assert answer.reply.type == "result", answer.reply.xml
    assert answer.status == "executing", answer.reply.xml
    assert answer.actions == set(actions), answer.reply.xml
    assert answer.fields["FORM_TYPE"].values == [form.FORM_TYPE], answer.reply.xml
    assert answer.sessionid is not None
    return answer.sessionid


def values(answer: CommandAnswer) -> dict[str, list[str]]:
    """The form's values by var, FORM_TYPE left out."""
    return {var: f.values for var, f in answer.fields.items() if var != "FORM_TYPE"}


def completed_note(answer: CommandAnswer) -> str:
    """Check that ``answer`` completes the command with one info note; its text."""
    assert answer.status == "completed", answer.reply.xml
    assert len(answer.notes) == 1, answer.reply.xml
    note_type, text = answer.notes[0]
    assert note_type == "info", answer.reply.xml
    return text


def ordered(text: str) -> str:
    """What a completion note says was ordered (without its number)."""
    found = ORDERED.fullmatch(text)
    assert found, text
    return found.group(2)


def table(answer: CommandAnswer) -> list[dict[str, list[str]]]:
    """The rows of the result table a completed command answers."""
    assert answer.status == "completed", answer.reply.xml
    command = answer.reply.element.find(f"{{{NS_COMMANDS}}}command")
    assert command is not None
    x = command.find(f"{{{NS_DATA}}}x")
    assert x is not None and x.get("type") == "result", answer.reply.xml
    return [_row(item) for item in x.iterfind(f"{{{NS_DATA}}}item")]


def _row(item: ET.Element) -> dict[str, list[str]]:
    return {
        field.get("var", ""): [value.text or "" for value in field.iterfind(f"{{{NS_DATA}}}value")]
        for field in item.iterfind(f"{{{NS_DATA}}}field")
    }


def commands_condition(answer: CommandAnswer) -> str | None:
    """The XEP-0050 condition of an error answer (bad-payload...), if any."""
    for element in answer.reply.element.iter():
        if element.tag.startswith(f"{{{NS_COMMANDS}}}"):
            return element.tag.partition("}")[2]
    return None


def order_form(dish: str, quantity: str) -> dict[str, str | list[str]]:
    return {"FORM_TYPE": Order.FORM_TYPE or "", "dish": dish, "quantity": quantity}


WITHOUT_QUANTITY: FormValues = {"FORM_TYPE": Order.FORM_TYPE or "", "dish": "salad"}
"""The order form with its required quantity left empty."""


def pizza_form(size: str, *toppings: str) -> dict[str, str | list[str]]:
    return {"FORM_TYPE": Pizza.FORM_TYPE or "", "size": size, "toppings": list(toppings)}


def salad_form(dressing: str) -> dict[str, str | list[str]]:
    return {"FORM_TYPE": Salad.FORM_TYPE or "", "dressing": dressing}


def delivery_form(address: str, contact: str) -> dict[str, str | list[str]]:
    return {"FORM_TYPE": Delivery.FORM_TYPE or "", "address": address, "contact": contact}


def start_order(client: XmppClient, domain: str = KITCHEN) -> str:
    """Execute ``order``; its session, asking the first form."""
    return asks(client.execute_command(domain, "order"), Order, "next")


def answer(
    client: XmppClient, session: str, form: FormValues, action: CommandAction = "next"
) -> CommandAnswer:
    """Go on with the ``order`` session at the kitchen."""
    return client.continue_command(KITCHEN, "order", session, form, action)


def deliver(client: XmppClient, session: str, address: str) -> str:
    """Complete an order with its last form; the completion note."""
    done = answer(client, session, delivery_form(address, client.jid), "complete")
    assert done.sessionid == session, done.reply.xml
    return completed_note(done)


def say(client: XmppClient, domain: str, text: str) -> str:
    """Send a chat message to the component; its answer's text."""
    answer = client.chat(domain, text)
    assert answer.type == "chat", answer.xml
    assert answer.body is not None, answer.xml
    return answer.body


# -- discovery and access -----------------------------------------------------------


def test_the_component_advertises_commands_and_lists_those_each_user_may_run(
    kitchen: Service,
) -> None:
    server = kitchen.server
    accounts = [server.account("alice"), server.account("carol")]
    with login_all(accounts, server.c2s_port) as (alice, carol):
        assert NS_COMMANDS in alice.disco_info(KITCHEN).features
        # As a set: slixmpp's disco#items plugin keeps no order.
        assert set(alice.command_list(KITCHEN)) == ALICE_COMMANDS
        assert set(carol.command_list(KITCHEN)) == ALICE_COMMANDS | {("orders", "Orders taken")}


def test_a_user_not_admin_is_forbidden_the_admin_command(
    kitchen: Service, alice: XmppClient
) -> None:
    refused = alice.execute_command(KITCHEN, "orders")
    assert refused.reply.error_condition == "forbidden", refused.reply.xml


def test_the_admin_command_lists_the_orders_taken_as_a_table(
    kitchen: Service, alice: XmppClient
) -> None:
    session = start_order(alice)
    answer(alice, session, order_form("salad", "3"))
    answer(alice, session, salad_form("yoghurt"))
    number = ORDERED.fullmatch(deliver(alice, session, "Admin Lane 1"))
    assert number
    jid, password = kitchen.server.account("carol")
    with login(jid, password, kitchen.server.c2s_port) as carol:
        rows = table(carol.execute_command(KITCHEN, "orders"))
    assert {
        "number": [number.group(1)],
        "customer": [alice.jid],
        "summary": ["3 salad(s) with yoghurt dressing, to Admin Lane 1"],
    } in rows


# -- running commands ------------------------------------------------------------------


def test_a_single_step_command_completes_with_a_result_table(
    kitchen: Service, alice: XmppClient
) -> None:
    answer = alice.execute_command(KITCHEN, "menu")
    assert table(answer) == [
        {"dish": ["pizza"], "price": ["12"], "vegetarian": ["0"]},
        {"dish": ["salad"], "price": ["9"], "vegetarian": ["1"]},
    ]


def test_a_command_runs_through_its_forms_the_second_chosen_by_the_first_answer(
    kitchen: Service, alice: XmppClient
) -> None:
    first = alice.execute_command(KITCHEN, "order")
    session = asks(first, Order, "next")
    assert first.fields["dish"].type == "list-single" and first.fields["dish"].required
    assert first.fields["quantity"].type == "text-single"

    second = answer(alice, session, order_form("pizza", "2"))
    assert asks(second, Pizza, "next", "prev") == session
    assert {var: f.type for var, f in second.fields.items()} == {
        "FORM_TYPE": "hidden",
        "size": "list-single",
        "toppings": "list-multi",
        "cheese": "boolean",
    }

    third = answer(alice, session, {**pizza_form("large", "ham", "olives"), "cheese": "1"})
    assert asks(third, Delivery, "complete", "prev") == session
    # The form depends on who asks: the contact is the requester.
    assert third.fields["contact"].values == [alice.jid]

    assert ordered(deliver(alice, session, "1 Main Street")) == (
        "2 large pizza(s) with ham, olives, extra cheese, to 1 Main Street"
    )


def test_prev_shows_the_first_form_as_it_was_and_a_changed_answer_changes_the_next_form(
    kitchen: Service, alice: XmppClient
) -> None:
    session = start_order(alice)
    answer(alice, session, order_form("pizza", "2"))

    back = answer(alice, session, {}, "prev")
    assert asks(back, Order, "next") == session
    assert values(back) == {"dish": ["pizza"], "quantity": ["2"]}

    salad = answer(alice, session, order_form("salad", "1"))
    assert asks(salad, Salad, "next", "prev") == session
    answer(alice, session, salad_form("vinaigrette"))
    assert ordered(deliver(alice, session, "2 High Street")) == (
        "1 salad(s) with vinaigrette dressing, to 2 High Street"
    )


def test_prev_from_the_last_form_shows_the_second_as_it_was_after_the_first(
    kitchen: Service, alice: XmppClient
) -> None:
    session = start_order(alice)
    answer(alice, session, order_form("pizza", "4"))
    answer(alice, session, pizza_form("small", "mushrooms"))

    back = answer(alice, session, {}, "prev")
    assert asks(back, Pizza, "next", "prev") == session
    assert values(back) == {"size": ["small"], "toppings": ["mushrooms"], "cheese": ["0"]}

    answer(alice, session, pizza_form("large", "ham"))
    assert ordered(deliver(alice, session, "3 Low Road")) == (
        "4 large pizza(s) with ham, to 3 Low Road"
    )


def test_a_canceled_command_cannot_be_continued(kitchen: Service, alice: XmppClient) -> None:
    session = start_order(alice)
    answer(alice, session, order_form("pizza", "1"))
    canceled = alice.cancel_command(KITCHEN, "order", session)
    assert canceled.status == "canceled", canceled.reply.xml
    assert canceled.sessionid == session

    after = answer(alice, session, pizza_form("small", "ham"))
    assert after.reply.error_condition == "bad-request", after.reply.xml
    assert commands_condition(after) == "bad-sessionid"


def test_a_required_field_left_empty_is_bad_request_and_the_session_goes_on(
    kitchen: Service, alice: XmppClient
) -> None:
    session = start_order(alice)
    refused = answer(alice, session, WITHOUT_QUANTITY)
    assert refused.reply.error_condition == "bad-request", refused.reply.xml
    assert commands_condition(refused) == "bad-payload"

    salad = answer(alice, session, order_form("salad", "2"))
    assert asks(salad, Salad, "next", "prev") == session
    answer(alice, session, salad_form("yoghurt"))
    assert ordered(deliver(alice, session, "4 Mill Lane")) == (
        "2 salad(s) with yoghurt dressing, to 4 Mill Lane"
    )


# -- over chat ----------------------------------------------------------------------------


def test_help_lists_the_chat_commands_each_user_may_run(kitchen: Service) -> None:
    server = kitchen.server
    accounts = [server.account("alice"), server.account("carol")]
    with login_all(accounts, server.c2s_port) as (alice, carol):
        assert say(alice, KITCHEN, "help").splitlines() == ALICE_HELP
        assert "orders: Orders taken" in say(carol, KITCHEN, "help").splitlines()


def test_a_command_run_by_its_word_asks_the_rest_one_question_at_a_time(
    kitchen: Service, alice: XmppClient
) -> None:
    assert say(alice, KITCHEN, "order pizza 2") == question(Pizza.size)
    assert say(alice, KITCHEN, "2") == question(Pizza.toppings)
    assert say(alice, KITCHEN, "ham, olives") == question(Delivery.address)
    answer = say(alice, KITCHEN, "5 Station Road")
    assert ordered(answer) == "2 large pizza(s) with ham, olives, to 5 Station Road"


def test_a_single_step_command_answers_its_table_as_text(
    kitchen: Service, alice: XmppClient
) -> None:
    assert say(alice, KITCHEN, "menu") == as_text(menu_table())


def test_cancel_in_the_middle_of_a_dialog_stops_it(kitchen: Service, alice: XmppClient) -> None:
    assert say(alice, KITCHEN, "order salad") == question(Order.quantity)
    assert say(alice, KITCHEN, "cancel") == "Canceled."
    # The next message is a command again, not an answer.
    assert say(alice, KITCHEN, "menu") == as_text(menu_table())


# -- idle sessions ------------------------------------------------------------------------


def test_a_session_answered_badly_still_expires(hurried: Service, alice: XmppClient) -> None:
    session = start_order(alice, HURRIED)
    refused = alice.continue_command(HURRIED, "order", session, WITHOUT_QUANTITY)
    assert refused.reply.error_condition == "bad-request", refused.reply.xml
    time.sleep(IDLE_TIMEOUT + 1.0)
    late = alice.continue_command(HURRIED, "order", session, order_form("salad", "1"))
    assert late.reply.error_condition == "not-allowed", late.reply.xml
    assert commands_condition(late) == "session-expired"


def test_each_chat_answer_restarts_the_idle_time(hurried: Service, alice: XmppClient) -> None:
    # Two questions for one form, each answered well within the idle time,
    # both together after it.
    assert say(alice, HURRIED, "order") == question(Order.dish)
    time.sleep(IDLE_TIMEOUT * 0.6)
    assert say(alice, HURRIED, "salad") == question(Order.quantity)
    time.sleep(IDLE_TIMEOUT * 0.6)
    assert say(alice, HURRIED, "1") == question(Salad.dressing)
    assert say(alice, HURRIED, "cancel") == "Canceled."
