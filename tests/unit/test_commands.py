"""Ad-hoc commands (XEP-0050) and their chat face, through the test kit."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lxml import etree
from support import ALICE, BOB, C, error_of, one, write_config
from twisted.internet.defer import Deferred, FirstError
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from empc import Handler, StanzaError, message
from empc.commands import (
    CANCEL_HINT,
    MAX_CHAT_TEXT,
    NS_COMMANDS,
    Commands,
    Note,
    Session,
    SessionEnded,
    command,
)
from empc.forms import NS_DATA, Field, Form, Integer, ListSingle, TextSingle, as_text
from empc.testing import FakeServer

ADMIN = "root@example.org/console"
failureResultOf = SynchronousTestCase().failureResultOf
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
X = f"{{{NS_DATA}}}"
CMD = f"{{{NS_COMMANDS}}}"


class Greeting(Form):
    FORM_TYPE = "urn:example:greeting"
    name = TextSingle("Name", required=True)


class Colour(Form):
    colour = ListSingle("Colour", options=["red", "blue"], required=True)


class Stats(Form):
    users = Integer("Users")


class Tools(Handler):
    """Commands of every shape, with a record of what they saw."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.ended: list[str] = []
        self.runs = 0
        self.pending: Deferred[None] | None = None

    @command("hello", name="Say hello")
    def hello(self, session: Session) -> str:
        return "Hello!"

    @command("greet", name="Greet someone", usage="<name>")
    async def greet(self, session: Session) -> str:
        self.runs += 1
        try:
            greeting = await session.ask(Greeting)
            colour = await session.ask(Colour, final=True)
        except SessionEnded:
            self.ended.append(session.id)
            raise
        return f"Hello, {greeting.name}, in {colour.colour}!"

    @command("stats", name="Statistics", allow=["list:admins"])
    def stats(self, session: Session) -> etree._Element:
        return Stats.table([Stats(users=3)])

    @command("refuse", name="Refuse", chat=False)
    def refuse(self, session: Session) -> str:
        raise StanzaError("not-allowed", "not today")

    @command("crash", name="Crash")
    def crash(self, session: Session) -> str:
        raise RuntimeError("a bug")

    @command("slow", name="Slow")
    async def slow(self, session: Session) -> Note:
        self.pending = Deferred()
        await self.pending
        return Note("late", type="warn")


def server(**config: Any) -> tuple[FakeServer, Tools, Commands]:
    tools = Tools()
    commands = Commands(config)
    fake = FakeServer([tools, commands], access_lists={"admins": ["root@example.org"]})
    return fake, tools, commands


def execute(
    fake: FakeServer,
    node: str,
    sender: str = ALICE,
    *,
    action: str | None = None,
    session: str | None = None,
    values: dict[str, list[str]] | None = None,
) -> etree._Element:
    """The answer to a command request (one stanza)."""
    attributes = f" node='{node}'"
    if action:
        attributes += f" action='{action}'"
    if session:
        attributes += f" sessionid='{session}'"
    form = ""
    if values is not None:
        fields = "".join(
            f"<field var='{var}'>{''.join(f'<value>{v}</value>' for v in texts)}</field>"
            for var, texts in values.items()
        )
        form = f"<x xmlns='{NS_DATA}' type='submit'>{fields}</x>"
    request = (
        f"<iq type='set' from='{sender}'>"
        f"<command xmlns='{NS_COMMANDS}'{attributes}>{form}</command></iq>"
    )
    return one(fake.deliver(request))


def payload(reply: etree._Element) -> etree._Element:
    assert reply.get("type") == "result", etree.tostring(reply)
    found = reply.find(f"{CMD}command")
    assert found is not None, etree.tostring(reply)
    return found


def actions(command_payload: etree._Element) -> tuple[str | None, list[str]]:
    element = command_payload.find(f"{CMD}actions")
    assert element is not None
    return element.get("execute"), sorted(etree.QName(child).localname for child in element)


def form_values(command_payload: etree._Element) -> dict[str, list[str]]:
    x = command_payload.find(f"{X}x")
    assert x is not None
    return {
        field.get("var") or "": [value.text or "" for value in field.findall(f"{X}value")]
        for field in x.findall(f"{X}field")
    }


def app_condition(reply: etree._Element) -> str | None:
    error = reply.find(f"{C}error")
    assert error is not None
    found = error.find(f"{CMD}*")
    return None if found is None else etree.QName(found).localname


def question(field: Field[Any]) -> str:
    """How a chat dialog asks for ``field``."""
    return f"{field.prompt()}\n{CANCEL_HINT}"


def greeting(*names: str) -> dict[str, list[str]]:
    """The values of a submitted Greeting."""
    return {"FORM_TYPE": ["urn:example:greeting"], "name": list(names)}


def greet_to_colour(fake: FakeServer, sender: str = ALICE) -> str:
    """Start greet and answer its first form; the session id."""
    started = payload(execute(fake, "greet", sender))
    session_id = started.get("sessionid")
    assert session_id
    execute(fake, "greet", sender, session=session_id, values=greeting("Alice"))
    return session_id


# Discovery


def test_the_commands_feature_is_advertised() -> None:
    fake, _, _ = server()
    reply = one(fake.deliver(f"<iq type='get'><query xmlns='{NS_DISCO_INFO}'/></iq>"))
    features = [f.get("var") for f in reply[0].findall(f"{{{NS_DISCO_INFO}}}feature")]
    assert NS_COMMANDS in features


def test_a_component_without_commands_does_not_advertise_them() -> None:
    fake = FakeServer([Handler()])
    reply = one(fake.deliver(f"<iq type='get'><query xmlns='{NS_DISCO_INFO}'/></iq>"))
    features = [f.get("var") for f in reply[0].findall(f"{{{NS_DISCO_INFO}}}feature")]
    assert NS_COMMANDS not in features


def listed(fake: FakeServer, sender: str) -> list[str | None]:
    query = f"<query xmlns='{NS_DISCO_ITEMS}' node='{NS_COMMANDS}'/>"
    request = f"<iq type='get' from='{sender}'>{query}</iq>"
    reply = one(fake.deliver(request))
    assert reply.get("type") == "result", etree.tostring(reply)
    return [item.get("node") for item in reply[0]]


def test_the_command_list_shows_only_the_commands_the_requester_may_run() -> None:
    fake, _, _ = server()
    assert "stats" not in listed(fake, ALICE)
    assert listed(fake, ADMIN) == ["hello", "greet", "stats", "refuse", "crash", "slow"]


def test_disco_info_of_a_command_node_names_the_command() -> None:
    fake, _, _ = server()
    request = f"<iq type='get'><query xmlns='{NS_DISCO_INFO}' node='greet'/></iq>"
    query = one(fake.deliver(request))[0]
    identity = query.find(f"{{{NS_DISCO_INFO}}}identity")
    assert identity is not None
    assert dict(identity.attrib) == {
        "category": "automation",
        "type": "command-node",
        "name": "Greet someone",
    }


def test_disco_info_of_a_command_the_requester_may_not_run_is_item_not_found() -> None:
    fake, _, _ = server()
    request = f"<iq type='get' from='{ALICE}'><query xmlns='{NS_DISCO_INFO}' node='stats'/></iq>"
    assert error_of(one(fake.deliver(request)))[0] == "item-not-found"


# Running commands


def test_a_single_step_command_completes_with_its_note() -> None:
    fake, _, commands = server()
    answer = payload(execute(fake, "hello"))
    assert answer.get("status") == "completed"
    assert answer.get("sessionid")
    assert answer.findtext(f"{CMD}note") == "Hello!"
    assert commands.sessions == 0


def test_a_command_may_complete_with_a_result_table() -> None:
    fake, _, _ = server()
    x = payload(execute(fake, "stats", ADMIN)).find(f"{X}x")
    assert x is not None
    assert x.get("type") == "result"
    assert [item.findtext(f"{X}field/{X}value") for item in x.findall(f"{X}item")] == ["3"]


def test_a_multi_step_command_asks_its_forms_in_turn() -> None:
    fake, _, commands = server()
    first = payload(execute(fake, "greet"))
    assert first.get("status") == "executing"
    assert actions(first) == ("next", ["next"])
    assert form_values(first)["FORM_TYPE"] == ["urn:example:greeting"]
    session_id = first.get("sessionid")
    second = payload(
        execute(fake, "greet", session=session_id, action="next", values=greeting("Alice"))
    )
    assert second.get("sessionid") == session_id
    assert actions(second) == ("complete", ["complete", "prev"])
    done = payload(
        execute(fake, "greet", session=session_id, action="complete", values={"colour": ["red"]})
    )
    assert done.get("status") == "completed"
    assert done.findtext(f"{CMD}note") == "Hello, Alice, in red!"
    assert commands.sessions == 0


def test_execute_within_a_session_takes_the_form_s_default_action() -> None:
    fake, _, _ = server()
    session_id = greet_to_colour(fake)
    done = payload(execute(fake, "greet", session=session_id, values={"colour": ["blue"]}))
    assert done.findtext(f"{CMD}note") == "Hello, Alice, in blue!"


def test_prev_asks_the_earlier_form_again_filled_as_it_was() -> None:
    fake, _, _ = server()
    session_id = greet_to_colour(fake)
    back = payload(execute(fake, "greet", session=session_id, action="prev"))
    assert form_values(back)["name"] == ["Alice"]
    assert actions(back) == ("next", ["next"])
    execute(fake, "greet", session=session_id, values=greeting("Bob"))
    done = payload(execute(fake, "greet", session=session_id, values={"colour": ["red"]}))
    assert done.findtext(f"{CMD}note") == "Hello, Bob, in red!"


def test_cancel_ends_the_session_and_the_command_hears_of_it() -> None:
    fake, tools, commands = server()
    session_id = greet_to_colour(fake)
    answer = payload(execute(fake, "greet", session=session_id, action="cancel"))
    assert answer.get("status") == "canceled"
    assert tools.ended == [session_id]
    assert commands.sessions == 0


def test_an_action_the_form_does_not_offer_is_bad_action() -> None:
    fake, _, _ = server()
    session_id = payload(execute(fake, "greet")).get("sessionid")
    reply = execute(fake, "greet", session=session_id, action="complete", values=greeting("A"))
    assert error_of(reply)[0] == "bad-request"
    assert app_condition(reply) == "bad-action"


def test_an_unknown_action_is_malformed_action() -> None:
    fake, _, _ = server()
    reply = execute(fake, "greet", action="jump")
    assert error_of(reply)[0] == "bad-request"
    assert app_condition(reply) == "malformed-action"


def test_a_bad_submission_is_bad_payload_and_the_form_stays_asked() -> None:
    fake, _, _ = server()
    session_id = payload(execute(fake, "greet")).get("sessionid")
    reply = execute(fake, "greet", session=session_id, values=greeting())
    condition, _, text = error_of(reply)
    assert (condition, app_condition(reply)) == ("bad-request", "bad-payload")
    assert text == "field 'name' is required"
    again = payload(execute(fake, "greet", session=session_id, values=greeting("Alice")))
    assert again.get("status") == "executing"


def test_an_unknown_session_is_bad_sessionid() -> None:
    fake, _, _ = server()
    reply = execute(fake, "greet", session="nope", values=greeting("Alice"))
    assert (error_of(reply)[0], app_condition(reply)) == ("bad-request", "bad-sessionid")


def test_another_user_cannot_continue_a_session() -> None:
    fake, _, _ = server()
    session_id = payload(execute(fake, "greet", ALICE)).get("sessionid")
    reply = execute(fake, "greet", BOB, session=session_id, values=greeting("Bob"))
    assert (error_of(reply)[0], app_condition(reply)) == ("bad-request", "bad-sessionid")


def test_an_idle_session_expires_and_says_so() -> None:
    fake, tools, commands = server(idle_timeout=60.0)
    session_id = greet_to_colour(fake)
    fake.clock.advance(60)
    assert commands.sessions == 0
    assert tools.ended == [session_id]
    reply = execute(fake, "greet", session=session_id, values={"colour": ["red"]})
    assert (error_of(reply)[0], app_condition(reply)) == ("not-allowed", "session-expired")


def test_an_answer_restarts_the_idle_time() -> None:
    fake, _, commands = server(idle_timeout=60.0)
    session_id = payload(execute(fake, "greet")).get("sessionid")
    fake.clock.advance(50)
    execute(fake, "greet", session=session_id, values=greeting("Alice"))
    fake.clock.advance(50)
    assert commands.sessions == 1


def test_a_command_the_requester_may_not_run_is_forbidden() -> None:
    fake, _, _ = server()
    assert error_of(execute(fake, "stats", ALICE))[0] == "forbidden"


def test_an_unknown_command_is_item_not_found() -> None:
    fake, _, _ = server()
    assert error_of(execute(fake, "nothing"))[0] == "item-not-found"


def test_sessions_are_bounded_per_user() -> None:
    fake, _, commands = server(sessions_per_user=2)
    execute(fake, "greet", ALICE)
    execute(fake, "greet", "alice@example.org/laptop")
    assert error_of(execute(fake, "greet", ALICE))[:2] == ("resource-constraint", "wait")
    assert payload(execute(fake, "greet", BOB)).get("status") == "executing"
    assert commands.sessions == 3


def test_sessions_are_bounded_in_all() -> None:
    fake, _, _ = server(max_sessions=1)
    execute(fake, "greet", ALICE)
    assert error_of(execute(fake, "greet", BOB))[0] == "resource-constraint"


def test_a_stanza_error_from_a_command_is_the_answer() -> None:
    fake, _, commands = server()
    assert error_of(execute(fake, "refuse"))[::2] == ("not-allowed", "not today")
    assert commands.sessions == 0


def test_a_failing_command_is_internal_server_error_and_logged() -> None:
    fake, _, commands = server()
    with capturedLogs() as events:
        assert error_of(execute(fake, "crash"))[0] == "internal-server-error"
    assert commands.sessions == 0
    assert [e["log_failure"].type for e in events if "log_failure" in e] == [RuntimeError]


def test_a_command_past_the_deadline_is_answered_and_its_session_ends() -> None:
    fake, _, commands = server()
    assert (
        fake.deliver(
            f"<iq type='set' from='{ALICE}'><command xmlns='{NS_COMMANDS}' node='slow'/></iq>"
        )
        == []
    )
    assert error_of(one(fake.advance(30)))[0] == "remote-server-timeout"
    assert commands.sessions == 0


def test_stopping_ends_every_session() -> None:
    fake, tools, commands = server()
    session_id = greet_to_colour(fake)
    commands.stop()
    assert tools.ended == [session_id]
    assert commands.sessions == 0


class Clash(Handler):
    @command("hello", name="Another hello")
    def hello(self, session: Session) -> str:
        return "hi"


def test_two_commands_with_one_node_are_refused_at_start() -> None:
    fake = FakeServer([Tools(), Clash()], access_lists={"admins": []})
    failure = failureResultOf(fake.started, FirstError).value.subFailure
    assert str(failure.value) == "two commands have the node 'hello'"


# The chat face


def say(fake: FakeServer, body: str, sender: str = ALICE, to: str | None = None) -> str:
    """The body of the component's one answer to a chat message."""
    address = f" to='{to}'" if to else ""
    stanza = f"<message type='chat' from='{sender}'{address}><body>{body}</body></message>"
    reply = one(fake.deliver(stanza))
    assert reply.get("type") == "chat"
    assert reply.get("to") == sender
    return reply.findtext(f"{C}body") or ""


def test_help_lists_the_chat_commands_the_user_may_run() -> None:
    fake, _, _ = server()
    assert say(fake, "help").splitlines() == [
        "Commands (send them to me, one per message):",
        "hello: Say hello",
        "greet <name>: Greet someone",
        "crash: Crash",
        "slow: Slow",
        "help: this list",
        "cancel: stop a command that asks you questions",
    ]
    assert "stats: Statistics" in say(fake, "HELP", ADMIN).splitlines()


def test_a_command_runs_by_its_word_in_any_case() -> None:
    fake, _, _ = server()
    assert say(fake, "Hello") == "Hello!"


def test_arguments_fill_the_first_form_and_required_fields_left_are_asked() -> None:
    fake, _, _ = server()
    assert say(fake, "greet Alice Liddell") == question(Colour.colour)
    assert say(fake, "2") == "Hello, Alice Liddell, in blue!"


def test_without_arguments_each_required_field_is_asked_in_turn() -> None:
    fake, _, commands = server()
    assert say(fake, "greet") == question(Greeting.name)
    assert say(fake, "Alice") == question(Colour.colour)
    assert say(fake, "red") == "Hello, Alice, in red!"
    assert commands.sessions == 0


def test_a_refused_answer_is_explained_and_asked_again() -> None:
    fake, _, _ = server()
    say(fake, "greet Alice")
    answer = say(fake, "green").splitlines()
    assert answer[0].startswith("Error: ")
    assert "\n".join(answer[1:]) == question(Colour.colour)
    assert say(fake, "blue") == "Hello, Alice, in blue!"


def test_cancel_stops_a_dialog() -> None:
    fake, tools, commands = server()
    say(fake, "greet")
    assert say(fake, "Cancel") == "Canceled."
    assert len(tools.ended) == 1
    assert commands.sessions == 0
    assert say(fake, "hello") == "Hello!"


def test_each_resource_has_its_own_dialog() -> None:
    fake, _, _ = server()
    say(fake, "greet Alice", ALICE)
    assert say(fake, "hello", "alice@example.org/laptop") == "Hello!"
    assert say(fake, "red", ALICE) == "Hello, Alice, in red!"


def test_an_unknown_command_is_explained() -> None:
    fake, _, _ = server()
    assert say(fake, "dance now") == (
        "Error: unknown command 'dance'. Send 'help' for the list of commands."
    )


def test_a_command_the_user_may_not_run_is_unknown_to_him() -> None:
    fake, _, _ = server()
    assert say(fake, "stats").startswith("Error: unknown command 'stats'")
    assert say(fake, "stats", ADMIN) == as_text(Stats.table([Stats(users=3)]))


def test_a_command_not_offered_over_chat_is_unknown() -> None:
    fake, _, _ = server()
    assert say(fake, "refuse").startswith("Error: unknown command")


def test_a_failing_command_says_so_without_details() -> None:
    fake, _, _ = server()
    with capturedLogs() as events:
        assert say(fake, "crash") == (
            "Error: something went wrong on our side; please try again later."
        )
    assert [e["log_failure"].type for e in events if "log_failure" in e] == [RuntimeError]


def test_a_warning_note_is_marked() -> None:
    fake, tools, _ = server()
    stanza = f"<message type='chat' from='{ALICE}'><body>slow</body></message>"
    assert fake.deliver(stanza) == []
    assert tools.pending is not None
    tools.pending.callback(None)
    reply = one(fake.sent)
    assert reply.findtext(f"{C}body") == "Warning: late"


def test_an_idle_dialog_ends_with_a_message() -> None:
    fake, _, commands = server(idle_timeout=120.0)
    say(fake, "greet")
    sent = one(fake.advance(120))
    assert sent.get("to") == ALICE
    assert sent.findtext(f"{C}body") == (
        "Error: 'greet' was canceled after 2 minute(s) without an answer."
    )
    assert commands.sessions == 0
    assert say(fake, "hello") == "Hello!"


def test_chat_to_an_address_at_the_component_is_not_a_command() -> None:
    fake, _, _ = server()
    assert say_to_address(fake) == []


def say_to_address(fake: FakeServer) -> list[etree._Element]:
    to = "someone@component.example.org"
    return fake.deliver(
        f"<message type='chat' from='{ALICE}' to='{to}'><body>help</body></message>"
    )


# From the config file


TOOLS_CONFIG = """
components:
  - domain: tools.example.org
    secret: not-used-by-the-kit
    builtins: {commands: {idle_timeout: 30, sessions_per_user: 1}}
    handlers: [test_commands:Tools]
access_lists:
  admins: [root@example.org]
"""


def test_the_config_file_sets_the_sessions_bounds(tmp_path: Path) -> None:
    fake = FakeServer.from_config(write_config(tmp_path, TOOLS_CONFIG))
    greet_to_colour(fake)
    assert error_of(execute(fake, "greet"))[0] == "resource-constraint"
    fake.advance(30)
    assert payload(execute(fake, "greet")).get("status") == "executing"


def test_a_component_with_commands_switched_off_serves_none(tmp_path: Path) -> None:
    config = TOOLS_CONFIG.replace("{idle_timeout: 30, sessions_per_user: 1}", "false")
    fake = FakeServer.from_config(write_config(tmp_path, config))
    assert error_of(execute(fake, "hello"))[0] == "service-unavailable"


# Sessions end whatever happens


def test_a_session_answered_badly_still_expires() -> None:
    fake, _, commands = server(idle_timeout=60.0)
    session_id = payload(execute(fake, "greet")).get("sessionid")
    execute(fake, "greet", session=session_id, values=greeting())  # bad-payload
    execute(fake, "greet", session=session_id, action="complete", values=greeting("A"))
    fake.advance(60)
    assert commands.sessions == 0


def test_each_chat_answer_restarts_the_idle_time() -> None:
    fake, _, commands = server(idle_timeout=60.0)
    say(fake, "greet")
    fake.advance(50)
    say(fake, "Alice")
    fake.advance(50)
    assert commands.sessions == 1
    assert say(fake, "red") == "Hello, Alice, in red!"


def test_a_refused_chat_answer_restarts_the_idle_time_too() -> None:
    fake, _, commands = server(idle_timeout=60.0)
    say(fake, "greet Alice")
    fake.advance(50)
    say(fake, "green")
    fake.advance(50)
    assert commands.sessions == 1


def test_a_command_past_its_deadline_is_stopped() -> None:
    fake, tools, _ = server()
    fake.deliver(f"<iq type='set' from='{ALICE}'><command xmlns='{NS_COMMANDS}' node='slow'/></iq>")
    fake.advance(30)
    assert tools.pending is not None and tools.pending.called  # canceled, not left running


def test_a_chat_command_past_its_deadline_is_not_logged_as_a_failure() -> None:
    fake, _, commands = server()
    with capturedLogs() as events:
        fake.deliver(f"<message type='chat' from='{ALICE}'><body>slow</body></message>")
        fake.advance(30)
    assert [e for e in events if "log_failure" in e] == []
    assert commands.sessions == 0


def test_cancel_is_taken_while_a_step_runs() -> None:
    fake, _, commands = server()
    started = fake.deliver(
        f"<iq type='set' from='{ALICE}'><command xmlns='{NS_COMMANDS}' node='slow'/></iq>"
    )
    assert started == []
    session_id = next(iter(commands._sessions.values())).id
    replies = fake.deliver(
        f"<iq type='set' from='{ALICE}'><command xmlns='{NS_COMMANDS}' node='slow'"
        f" sessionid='{session_id}' action='cancel'/></iq>"
    )
    assert sorted(payload(reply).get("status") for reply in replies) == ["canceled", "canceled"]
    assert commands.sessions == 0


def test_a_cancel_form_cancels() -> None:
    fake, _, commands = server()
    session_id = payload(execute(fake, "greet")).get("sessionid")
    reply = one(
        fake.deliver(
            f"<iq type='set' from='{ALICE}'><command xmlns='{NS_COMMANDS}' node='greet'"
            f" sessionid='{session_id}'><x xmlns='{NS_DATA}' type='cancel'/></command></iq>"
        )
    )
    assert payload(reply).get("status") == "canceled"
    assert commands.sessions == 0


class Picky(Handler):
    @command("pick", name="Pick a colour")
    async def pick(self, session: Session) -> str:
        colour = await session.ask(Colour, final=True)
        raise StanzaError("not-acceptable", f"{colour.colour} is sold out")


def test_a_command_failing_after_its_form_completes_with_an_error_note() -> None:
    fake = FakeServer([Picky()])
    session_id = payload(execute(fake, "pick")).get("sessionid")
    done = payload(execute(fake, "pick", session=session_id, values={"colour": ["red"]}))
    assert done.get("status") == "completed"
    note = done.find(f"{CMD}note")
    assert note is not None
    assert (note.get("type"), note.text) == ("error", "red is sold out")


def test_a_second_chat_command_waits_for_the_first() -> None:
    fake, tools, _ = server()
    fake.deliver(f"<message type='chat' from='{ALICE}'><body>slow</body></message>")
    assert say(fake, "hello") == (
        "Error: still working on your last message; send 'cancel' to stop it."
    )
    assert say(fake, "cancel") == "Canceled."
    assert tools.pending is not None and tools.pending.called


class Verbose(Handler):
    @command("dump", name="Dump")
    def dump(self, session: Session) -> str:
        return "\n".join(f"line {n}" for n in range(5000))

    @command("blob", name="Blob")
    def blob(self, session: Session) -> str:
        return "x" * 50_000


def test_a_long_chat_answer_is_cut_at_a_line_s_end() -> None:
    fake = FakeServer([Verbose()])
    answer = say(fake, "dump")
    assert len(answer) <= MAX_CHAT_TEXT
    *shown, last = answer.split("\n")
    assert shown[-1] == f"line {len(shown) - 1}"
    assert last == f"... and {5000 - len(shown)} more line(s)"


def test_a_huge_line_is_cut_too() -> None:
    fake = FakeServer([Verbose()])
    answer = say(fake, "blob")
    assert len(answer) <= MAX_CHAT_TEXT
    assert answer.endswith("... (cut)")


def test_ad_hoc_notes_are_not_cut() -> None:
    fake = FakeServer([Verbose()])
    note = payload(execute(fake, "dump")).findtext(f"{CMD}note")
    assert note is not None and note.endswith("line 4999")


class Gateway(Handler):
    """Commands for the gateway itself, and its contacts' chat below them."""

    def __init__(self) -> None:
        super().__init__()
        self.relayed: list[str | None] = []

    @command("hello", name="Say hello")
    def hello(self, session: Session) -> str:
        return "Hello!"

    @message("chat", priority=-20)
    def relay(self, stanza: etree._Element) -> None:
        self.relayed.append(stanza.get("to"))


def test_chat_to_a_contact_of_a_gateway_goes_past_the_chat_commands() -> None:
    gateway = Gateway()
    server = FakeServer([gateway], domain="gw.example.org")
    server.deliver("<message type='chat' to='romeo@gw.example.org'><body>hello</body></message>")
    assert gateway.relayed == ["romeo@gw.example.org"]
    (answer,) = server.deliver("<message type='chat'><body>hello</body></message>")
    assert answer.findtext(f"{C}body") == "Hello!"
    assert gateway.relayed == ["romeo@gw.example.org"]
