"""Ad-hoc commands (XEP-0050), also served over chat: one declaration, two faces.

A handler declares a command on a method that takes a :class:`Session`::

    class Admin(Handler):
        @command("greet", name="Greet someone", usage="<name>")
        async def greet(self, session: Session) -> str:
            answer = await session.ask(Greeting)   # sends the form, waits
            return f"Hello, {answer.name}!"         # completes with a note

The built-in :class:`Commands` handler serves every command the component's
handlers declare. An XEP-0050 client lists them at disco#items of node
``http://jabber.org/protocol/commands`` (only those its user may run) and
executes them as dialogs of data forms. A chat user sends ``help`` for the
same list and ``greet Alice`` to run one: the words after the command's
name fill the first form's fields in order (the last field takes the rest
of the line); a required field still empty is asked for in the chat, one
field at a time, and ``cancel`` stops the dialog.

Theory of operation: a command runs as a coroutine inside a
:class:`Session`. It only ever runs in answer to a request: the request's
Deferred (its *step*) fires when the coroutine asks for a form
(:class:`Asked`) or returns (:class:`Completed`); the answer to the form
resumes it with the next request. ``prev`` runs the command again from its
start, replaying the answers given before the form the user goes back to,
so the code before each ``ask`` runs again: keep side effects after the
last ``ask`` (or declare ``prev=False``). Sessions end when the command
returns or fails, on ``cancel``, after ``idle_timeout`` seconds without an
answer, and when the component stops; the number of sessions is bounded per
user and in all, so they never hold memory for long.
"""

from __future__ import annotations

import copy
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from lxml import etree
from twisted.internet.defer import CancelledError, Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from empc.forms import NS_DATA, Field, Form, as_text, values_of
from empc.protocol import JID, NS_COMPONENT, new_element
from empc.routing import (
    AccessRule,
    DiscoInfo,
    DiscoItem,
    Handler,
    StanzaError,
    iq,
    make_message,
    make_reply,
    marked_methods,
    message,
    sender_of,
)

NS_COMMANDS = "http://jabber.org/protocol/commands"
ACTIONS = ("execute", "next", "prev", "complete", "cancel")
MAX_CHAT_TEXT = 10_000
"""The most characters a chat answer has: a message well within any
server's stanza limit (Prosody's is 512 KiB), and readable."""
MAX_AUTOMATIC_STEPS = 20
"""Forms a chat message may submit without a question (all fields given)."""

F = TypeVar("F", bound=Form)
C = TypeVar("C", bound=Callable[..., Any])
_COMMAND_ATTRIBUTE = "_empc_command"


@dataclass(frozen=True)
class Note:
    """A command's closing note: ``type`` is ``info``, ``warn`` or ``error``."""

    text: str
    type: str = "info"

    def __post_init__(self) -> None:
        if self.type not in ("info", "warn", "error"):
            raise ValueError(f"a note is info, warn or error, not {self.type!r}")


Result = str | Note | Form | etree._Element | None
"""What a command returns: a note (``str`` or :class:`Note`), a result form
(a :class:`~empc.forms.Form` instance, or an ``<x/>`` element such as
:meth:`~empc.forms.Form.table` builds), or None for nothing to show."""


@dataclass(frozen=True)
class CommandSpec:
    """A command as declared (see :func:`command`)."""

    node: str
    name: str
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] | None = None
    chat: str | None = None
    usage: str = ""
    prev: bool = True


def command(
    node: str,
    name: str,
    *,
    allow: Iterable[str] | None = None,
    deny: Iterable[str] | None = None,
    chat: str | bool = True,
    usage: str = "",
    prev: bool = True,
) -> Callable[[C], C]:
    """Declare the decorated method an ad-hoc command.

    The method takes a :class:`Session` and returns a :data:`Result` (or a
    Deferred of one, or is a coroutine function). Raising
    :class:`~empc.StanzaError` ends the session with that error (in a chat,
    ``Error:`` and its text).

    :param node: the command's node, unique in the component.
    :param name: what clients show for it.
    :param allow: who may run it (as a route's ``allow``: bare JIDs,
        domains, ``list:NAME``); the handler's ``allow`` when None.
    :param deny: who may not; the handler's ``deny`` when None.
    :param chat: its word in a chat (the node by default); False: not
        offered over chat.
    :param usage: its arguments as ``help`` shows them, e.g. ``<jid>``; a
        command without one takes no arguments over chat.
    :param prev: whether the user may go back to an earlier form (which
        runs the command again from the start, see the module's notes).
    """
    word = node if chat is True else chat or None
    if word is not None and (not word or any(c.isspace() for c in word)):
        raise ValueError(f"command {node!r}: the chat word {word!r} must be one word")
    spec = CommandSpec(
        node=node,
        name=name,
        allow=None if allow is None else tuple(allow),
        deny=None if deny is None else tuple(deny),
        chat=None if word is None else word.lower(),
        usage=usage,
        prev=prev,
    )

    def decorate(method: C) -> C:
        setattr(method, _COMMAND_ATTRIBUTE, spec)
        return method

    return decorate


@dataclass
class Command:
    """A declared command bound to its handler."""

    spec: CommandSpec
    run: Callable[[Session], object]
    access: AccessRule


def declared_commands(handler: Handler) -> list[tuple[CommandSpec, Callable[[Session], object]]]:
    """The commands declared on ``handler``'s methods, bound to them."""
    return [
        (spec, getattr(handler, name)) for name, spec in marked_methods(handler, _COMMAND_ATTRIBUTE)
    ]


# What a step of a session ends with.


@dataclass(frozen=True)
class Asked:
    """The command asks for ``form`` (a class), pre-filled with ``values``;
    ``actions`` are those the user may take, the first the default."""

    form: type[Form]
    values: Form
    actions: tuple[str, ...]


@dataclass(frozen=True)
class Completed:
    result: Result


@dataclass(frozen=True)
class Canceled:
    pass


Step = Asked | Completed | Canceled


class SessionEnded(Exception):
    """Raised into a command whose session ended (canceled, expired, or
    gone back to an earlier form) while it waited for an answer. The
    command's run is over: what it awaits after this is canceled, and it
    may not ask again."""


def _commands_error(condition: str, specific: str, text: str | None = None) -> StanzaError:
    """A stanza error with XEP-0050's application condition ``specific``."""
    return StanzaError(condition, text, application_condition=new_element(NS_COMMANDS, specific))


class Session:
    """One run of a command for one requester (a full JID).

    While it waits for an answer, its idle time counts: after
    ``idle_timeout`` seconds without one, ``on_expire`` is called, then the
    session ends.

    :ivar id: the session id, unpredictable.
    :ivar requester: who runs it.
    :ivar chat: whether it runs as a chat dialog rather than XEP-0050.
    """

    def __init__(
        self,
        command: Command,
        requester: JID,
        chat: bool,
        clock: IReactorTime,
        idle_timeout: float,
        on_expire: Callable[[Session], None],
        on_end: Callable[[Session], None],
    ) -> None:
        self.id = secrets.token_urlsafe(12)
        self.command = command
        self.requester = requester
        self.chat = chat
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._on_expire = on_expire
        self._on_end = on_end
        self._expiry: IDelayedCall | None = None
        self._answers: list[Form] = []  # one per form answered, kept for prev
        self._replay: list[Form] = []
        self._prefill: Form | None = None
        self._run = 0  # which run of the command is the live one
        self._outcome: Deferred[object] | None = None  # the live run
        self._step: Deferred[Step] | None = None  # the request being served
        self._asked: Asked | None = None
        self._answer: Deferred[Form] | None = None  # what the command awaits
        self.ended = False

    @property
    def asked(self) -> Asked | None:
        """The form the session waits for; None while the command runs."""
        return self._asked

    # The command's side

    def ask(
        self, form: type[F], values: Mapping[str, Any] | F | None = None, *, final: bool = False
    ) -> Deferred[F]:
        """Send ``form`` (pre-filled with ``values``) and wait for the answer.

        Fires with the submitted form, parsed and valid (a bad submission
        is answered ``bad-request`` and the same form stays asked); fails
        with :class:`SessionEnded` if the session ends first, or at once if
        it has ended or a form is already asked.

        :param final: whether this is the last form: the user completes the
            command with it rather than going on to a next one.
        """
        if self.ended or self._step is None:
            return fail(SessionEnded("the session has ended"))
        if self._replay:
            replayed = self._replay.pop(0)
            if isinstance(replayed, form):
                self._answers.append(replayed)
                return succeed(replayed)
            self._replay.clear()  # the command took another path: ask afresh
        prefill, self._prefill = self._prefill, None
        if isinstance(prefill, form):
            values = prefill
        actions: tuple[str, ...] = ("complete",) if final else ("next",)
        if self._answers and self.command.spec.prev:
            actions += ("prev",)
        self._asked = Asked(form, form._instance(values or {}), actions)
        answer: Deferred[Any] = Deferred()
        self._answer = answer
        self.touch()
        self._fire(self._asked)
        return answer

    # The requester's side

    def start(self) -> Deferred[Step]:
        """Run the command from its start; fires with its first step."""
        self._run += 1
        run = self._run
        step = self._new_step()
        outcome = maybeDeferred(self.command.run, self)
        self._outcome = outcome
        outcome.addCallbacks(
            lambda result: self._returned(run, result), lambda failure: self._failed(run, failure)
        )
        return step

    def submit(self, action: str, x: etree._Element | None) -> Deferred[Step]:
        """Take ``action`` on the form asked, with the submitted form ``x``.

        ``execute`` is the asked form's default action; ``cancel`` ends the
        session at any time. Fires with the next step; fails with
        :class:`~empc.StanzaError` ``bad-request`` (``bad-action``) for an
        action the form does not offer, ``bad-request`` (``bad-payload``)
        for a bad submission (the form stays asked), and
        ``unexpected-request`` while the last answer is still being handled.
        """
        if action == "cancel":
            self.end()
            return succeed(Canceled())
        asked = self._asked
        if asked is None:
            return fail(
                StanzaError("unexpected-request", "still working on the last answer", type="wait")
            )
        if action == "execute":
            action = asked.actions[0]
        if action not in asked.actions:
            return fail(
                _commands_error("bad-request", "bad-action", f"{action!r} is not possible now")
            )
        if action == "prev":
            return self._back()
        try:
            answer = asked.form.parse(x)
        except StanzaError as error:
            error.application_condition = new_element(NS_COMMANDS, "bad-payload")
            return fail(error)
        waiting = self._answer
        assert waiting is not None
        self._asked = self._answer = None
        self._disarm()
        if self.command.spec.prev:
            self._answers.append(answer)
        step = self._new_step()
        waiting.callback(answer)
        return step

    def touch(self) -> None:
        """Count the idle time from now (an answer is being given)."""
        self._disarm()
        self._expiry = self._clock.callLater(self._idle_timeout, self._expire)

    def end(self) -> None:
        """End the session: the command, if it waits, gets SessionEnded;
        what it awaits otherwise is canceled."""
        if self.ended:
            return
        self.ended = True
        self._disarm()
        self._stop_run()
        self._on_end(self)

    def _expire(self) -> None:
        self._expiry = None
        self._on_expire(self)
        self.end()

    def _disarm(self) -> None:
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None

    def _back(self) -> Deferred[Step]:
        """Run the command again, replaying the answers before the last one,
        and ask the last form again, filled as it was."""
        self._disarm()
        self._stop_run()
        *self._replay, self._prefill = self._answers
        self._answers = []
        return self.start()

    def _stop_run(self) -> None:
        self._run += 1  # what the stopped run does from now on is ignored
        waiting, self._answer, self._asked = self._answer, None, None
        step, self._step = self._step, None
        outcome, self._outcome = self._outcome, None
        if waiting is not None:
            waiting.errback(SessionEnded("the session has ended"))
        if outcome is not None:
            outcome.cancel()  # a run still busy (a step past its deadline) stops
        if step is not None:
            step.callback(Canceled())

    def _new_step(self) -> Deferred[Step]:
        # Canceled when the request's deadline passed: the requester gets
        # an error, so the session ends.
        def canceled(step: Deferred[Step]) -> None:
            if self._step is step:
                self._step = None
            self.end()

        step: Deferred[Step] = Deferred(canceled)
        self._step = step
        return step

    def _fire(self, outcome: Step | Failure) -> None:
        step, self._step = self._step, None
        if step is None:
            return
        if isinstance(outcome, Failure):
            step.errback(outcome)
        else:
            step.callback(outcome)

    def _returned(self, run: int, result: object) -> None:
        if run != self._run:
            return
        if result is not None and not isinstance(result, str | Note | Form | etree._Element):
            self._failed(run, Failure(TypeError(f"a command returned a {type(result).__name__}")))
            return
        self._outcome = None
        self._fire(Completed(result))
        self.end()

    def _failed(self, run: int, failure: Failure) -> None:
        if run != self._run:
            return
        self._outcome = None
        error = failure.value
        if isinstance(error, StanzaError) and self._answers:
            # XEP-0050 §3.6: a command that fails once the user has filled
            # in its forms completes with an error note, not an IQ error.
            self._fire(Completed(Note(error.text or error.condition, "error")))
        else:
            self._fire(failure)
        self.end()


@dataclass
class _Dialog:
    """A chat session: between questions, the form asked, the values so
    far and the fields still to ask."""

    session: Session
    asked: Asked | None = None
    values: dict[str, Any] = field(default_factory=dict)
    missing: list[Field[Any]] = field(default_factory=list)


class Commands(Handler):
    """Serves the commands the component's handlers declare with
    :func:`command`, over XEP-0050 and over chat.

    It is added to a component by itself when one of its handlers declares
    a command (unless the config's ``builtins`` switch ``commands`` off).

    Config: ``idle_timeout`` (seconds a session waits for an answer before
    it ends), ``sessions_per_user`` (per bare JID) and ``max_sessions`` (in
    all); past a bound, a new command is refused ``resource-constraint``.
    """

    defaults: ClassVar[Mapping[str, Any]] = {
        "idle_timeout": 600.0,
        "sessions_per_user": 5,
        "max_sessions": 1000,
    }
    log = Logger()

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        for key in self.defaults:
            if self.config[key] <= 0:
                raise ValueError(f"{key} must be positive")
        self._commands: dict[str, Command] = {}
        self._words: dict[str, Command] = {}
        self._sessions: dict[tuple[JID, str], Session] = {}
        self._per_user: dict[JID, int] = {}
        self._dialogs: dict[JID, _Dialog] = {}
        # Ids of sessions that expired, to answer session-expired rather
        # than bad-sessionid; bounded like the sessions themselves.
        self._expired_ids: OrderedDict[str, None] = OrderedDict()

    def start(self) -> None:
        """Gather the commands of every handler of the component.

        :raises ValueError: for two commands with one node or one chat
            word, or an access rule naming an unknown list.
        """
        for handler in self.component.handlers:
            for spec, run in declared_commands(handler):
                if spec.node in self._commands:
                    raise ValueError(f"two commands have the node {spec.node!r}")
                if spec.chat in self._words or spec.chat in ("help", "cancel"):
                    raise ValueError(f"command {spec.node!r}: the chat word {spec.chat!r} is taken")
                allow = spec.allow if spec.allow is not None else handler.allow
                deny = spec.deny if spec.deny is not None else handler.deny
                try:
                    access = self.component.access_rule(allow, deny)
                except ValueError as error:
                    raise ValueError(f"command {spec.node!r}: {error}") from None
                found = Command(spec, run, access)
                self._commands[spec.node] = found
                if spec.chat is not None:
                    self._words[spec.chat] = found

    def stop(self) -> None:
        """End every session."""
        for session in list(self._sessions.values()):
            session.end()

    @property
    def sessions(self) -> int:
        """How many sessions are open."""
        return len(self._sessions)

    # -- XEP-0050 ---------------------------------------------------------------

    @iq("set", f"{{{NS_COMMANDS}}}command", feature=NS_COMMANDS)
    def execute(self, stanza: etree._Element) -> Deferred[etree._Element]:
        """Execute a command, or take the next action of a session."""
        request = stanza[0]
        node = request.get("node") or ""
        action = request.get("action") or "execute"
        if action not in ACTIONS:
            raise _commands_error("bad-request", "malformed-action", f"unknown action {action!r}")
        requester = sender_of(stanza)
        session_id = request.get("sessionid")
        if session_id is None:
            if action != "execute":
                raise _commands_error("bad-request", "bad-sessionid", "no session to continue")
            session = self._open(self._command(node, requester), requester, chat=False)
            step = session.start()
        else:
            found = self._sessions.get((requester, session_id))
            if found is None or found.chat or found.command.spec.node != node:
                if session_id in self._expired_ids:
                    raise _commands_error("not-allowed", "session-expired", "the session expired")
                raise _commands_error("bad-request", "bad-sessionid", "no such session")
            session = found
            x = request.find(f"{{{NS_DATA}}}x")
            if x is not None and x.get("type") == "cancel":  # XEP-0004's way to cancel
                action = "cancel"
            step = session.submit(action, x)
        return step.addCallback(_command_payload, session)

    def _command(self, node: str, requester: JID) -> Command:
        found = self._commands.get(node)
        if found is None:
            raise StanzaError("item-not-found", f"no command {node!r}")
        if not found.access.permits(requester):
            raise StanzaError("forbidden", "you may not run this command")
        return found

    # -- sessions --------------------------------------------------------------

    def _open(self, command: Command, requester: JID, chat: bool) -> Session:
        if len(self._sessions) >= self.config["max_sessions"]:
            raise StanzaError("resource-constraint", "too many commands running; try later")
        user = requester.bare
        if self._per_user.get(user, 0) >= self.config["sessions_per_user"]:
            raise StanzaError(
                "resource-constraint", "you have too many commands running; finish one first"
            )
        session = Session(
            command,
            requester,
            chat,
            self.component.clock,
            self.config["idle_timeout"],
            self._expired,
            self._closed,
        )
        self._sessions[(requester, session.id)] = session
        self._per_user[user] = self._per_user.get(user, 0) + 1
        if chat:
            self._dialogs[requester] = _Dialog(session)
        return session

    def _expired(self, session: Session) -> None:
        """``session`` waited too long for an answer: remember its id, so
        that a late answer hears so, and tell a chat user."""
        self._expired_ids[session.id] = None
        while len(self._expired_ids) > self.config["max_sessions"]:
            self._expired_ids.popitem(last=False)
        if session.chat and self.component.connected:
            minutes = max(1, round(self.config["idle_timeout"] / 60))
            text = (
                f"Error: '{session.command.spec.chat}' was canceled after {minutes} minute(s)"
                " without an answer."
            )
            self.component.send(make_message(str(session.requester), text))

    def _closed(self, session: Session) -> None:
        self._sessions.pop((session.requester, session.id), None)
        user = session.requester.bare
        left = self._per_user.get(user, 1) - 1
        if left:
            self._per_user[user] = left
        else:
            self._per_user.pop(user, None)
        dialog = self._dialogs.get(session.requester)
        if dialog is not None and dialog.session is session:
            del self._dialogs[session.requester]

    # -- service discovery ------------------------------------------------------

    def disco_info(self, node: str, requester: JID) -> DiscoInfo | None:
        if node == NS_COMMANDS:
            return ([("automation", "command-list", "Commands")], [NS_COMMANDS])
        found = self._commands.get(node)
        if found is None or not found.access.permits(requester):
            return None
        return ([("automation", "command-node", found.spec.name)], [NS_COMMANDS, NS_DATA])

    def disco_items(self, node: str | None, requester: JID) -> Sequence[DiscoItem]:
        if node != NS_COMMANDS:
            return ()
        address = self.component.address
        return [
            (address, found.spec.node, found.spec.name)
            for found in self._commands.values()
            if found.access.permits(requester)
        ]

    # -- chat ---------------------------------------------------------------------

    @message("chat", xpath="c:body", priority=-10, to_itself=True)
    async def chat(self, stanza: etree._Element) -> etree._Element | None:
        """A chat message to the component (not to an address in its
        domain): a command, or the answer to the question of the command
        running."""
        requester = sender_of(stanza)
        # Servers and the component's own addresses are no users: answering
        # them could start a loop of messages.
        if not self._words or requester.local is None or self.component.is_own(requester):
            return None
        text = (stanza.findtext(f"{{{NS_COMPONENT}}}body") or "").strip()
        dialog = self._dialogs.get(requester)
        try:
            if dialog is not None:
                answer = await self._answer(dialog, text)
            else:
                answer = await self._run_chat(requester, text)
        except StanzaError as error:
            answer = f"Error: {error.text or error.condition}"
        except CancelledError:
            raise  # the action's deadline passed: the router says so
        except Exception:
            self.log.failure("A chat command from {requester} failed", requester=requester)
            answer = "Error: something went wrong on our side; please try again later."
        if answer is None:
            return None
        reply = make_reply(stanza, "chat")
        new_element(NS_COMPONENT, "body", parent=reply).text = answer
        thread = stanza.find(f"{{{NS_COMPONENT}}}thread")
        if thread is not None:  # keep the conversation's thread
            reply.append(copy.deepcopy(thread))
        return reply

    def help(self, requester: JID) -> str:
        """The chat commands ``requester`` may run, one per line."""
        lines = ["Commands (send them to me, one per message):"]
        for word, found in self._words.items():
            if found.access.permits(requester):
                usage = f" {found.spec.usage}" if found.spec.usage else ""
                lines.append(f"{word}{usage}: {found.spec.name}")
        lines.append("help: this list")
        lines.append("cancel: stop a command that asks you questions")
        return "\n".join(lines)

    async def _run_chat(self, requester: JID, text: str) -> str | None:
        words = text.split(None, 1)
        if not words:
            return "Error: this message is empty. Send 'help' for the list of commands."
        word = words[0].lower()
        if word == "help":
            return self.help(requester)
        if word == "cancel":
            return "There is nothing to cancel."
        found = self._words.get(word)
        if found is None or not found.access.permits(requester):
            return (
                f"Error: unknown command '{_shorten(words[0])}'. "
                "Send 'help' for the list of commands."
            )
        arguments = words[1] if len(words) > 1 else ""
        if arguments and not found.spec.usage:
            return f"Error: '{word}' takes no argument; send just '{word}'."
        session = self._open(found, requester, chat=True)
        return await self._chat_steps(self._dialogs[requester], await session.start(), arguments)

    async def _chat_steps(self, dialog: _Dialog, step: Step, arguments: str) -> str | None:
        """Go on until the command completes or asks a question."""
        for _ in range(MAX_AUTOMATIC_STEPS):
            if isinstance(step, Completed):
                return _as_chat(step.result)
            if isinstance(step, Canceled):
                return None  # the message that canceled it is answered
            dialog.asked = step
            dialog.values = values_of(step.values)
            errors = _fill(dialog, step.form, arguments)
            arguments = ""
            if dialog.missing:
                return "\n".join([*errors, _question(dialog.missing[0])])
            step = await self._submit(dialog)
        dialog.session.end()
        return "Error: this command asked too many forms in a row."

    async def _answer(self, dialog: _Dialog, text: str) -> str | None:
        session = dialog.session
        if text.lower() == "cancel":
            session.end()
            return "Canceled."
        if dialog.asked is None or not dialog.missing:
            return "Error: still working on your last message; send 'cancel' to stop it."
        session.touch()
        field = dialog.missing[0]
        try:
            dialog.values[field.name] = field.from_chat(text)
        except ValueError as error:
            return f"Error: {error}\n{_question(field)}"
        dialog.missing.pop(0)
        if dialog.missing:
            return _question(dialog.missing[0])
        return await self._chat_steps(dialog, await self._submit(dialog), "")

    def _submit(self, dialog: _Dialog) -> Deferred[Step]:
        """Submit the dialog's answers; a refusal ends the session (every
        field was checked as it was answered, so it is not the user's)."""
        asked, session = dialog.asked, dialog.session
        assert asked is not None
        dialog.asked, dialog.missing = None, []
        x = asked.form.submit(dialog.values)

        def failed(failure: Failure) -> Failure:
            session.end()
            return failure

        return session.submit(asked.actions[0], x).addErrback(failed)


def _command_payload(step: Step, session: Session) -> etree._Element:
    """The ``<command/>`` answering a step of an XEP-0050 session."""
    payload = new_element(
        NS_COMMANDS, "command", {"node": session.command.spec.node, "sessionid": session.id}
    )
    if isinstance(step, Asked):
        payload.set("status", "executing")
        actions = new_element(NS_COMMANDS, "actions", {"execute": step.actions[0]}, payload)
        for action in step.actions:
            new_element(NS_COMMANDS, action, parent=actions)
        payload.append(step.form.form(step.values))
    elif isinstance(step, Completed):
        payload.set("status", "completed")
        result = step.result
        if isinstance(result, str):
            result = Note(result)
        if isinstance(result, Note):
            new_element(NS_COMMANDS, "note", {"type": result.type}, payload).text = result.text
        elif isinstance(result, Form):
            payload.append(type(result).result(result))
        elif result is not None:
            payload.append(copy.deepcopy(result))
    else:
        payload.set("status", "canceled")
    return payload


def _as_chat(result: Result) -> str:
    """A command's result as the text of a chat message, cut to
    :data:`MAX_CHAT_TEXT` characters at a line's end."""
    if result is None:
        return "Done."
    if isinstance(result, str):
        text = result
    elif isinstance(result, Note):
        prefix = {"info": "", "warn": "Warning: ", "error": "Error: "}[result.type]
        text = prefix + result.text
    else:
        text = as_text(type(result).result(result) if isinstance(result, Form) else result)
    return _cut(text)


def _cut(text: str) -> str:
    if len(text) <= MAX_CHAT_TEXT:
        return text
    lines = text.split("\n")
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > MAX_CHAT_TEXT - 40:  # room for the last line
            break
        kept.append(line)
        size += len(line) + 1
    if not kept:  # one huge line
        return text[: MAX_CHAT_TEXT - 40] + "... (cut)"
    return "\n".join([*kept, f"... and {len(lines) - len(kept)} more line(s)"])


CANCEL_HINT = "(send 'cancel' to stop)"


def _question(field: Field[Any]) -> str:
    """How a chat dialog asks for ``field``."""
    return f"{field.prompt()}\n{CANCEL_HINT}"


def _askable(form: type[Form]) -> list[Field[Any]]:
    """The fields a person fills in: not fixed text, not hidden."""
    return [field for field in form.fields.values() if field.type not in ("fixed", "hidden")]


def _fill(dialog: _Dialog, form: type[Form], arguments: str) -> list[str]:
    """Fill the fields of ``form`` from a command line's arguments, in
    order (the last field takes the rest of the line), and list in
    ``dialog.missing`` the required fields left empty and those whose
    argument was refused. Returns the refusals, one line each."""
    fields = _askable(form)
    parts = arguments.split(None, len(fields) - 1) if arguments and fields else []
    errors = []
    refused = set()
    for given, part in zip(fields, parts, strict=False):
        try:
            dialog.values[given.name] = given.from_chat(part)
        except ValueError as error:
            errors.append(f"Error: {error}")
            refused.add(given.var)
    dialog.missing = [
        field
        for field in fields
        if field.var in refused or (field.required and _empty(dialog.values[field.name]))
    ]
    return errors


def _empty(value: object) -> bool:
    return value is None or value == "" or value == []


def _shorten(text: str, limit: int = 30) -> str:
    """``text`` cut to ``limit`` characters, to quote a user's words."""
    return text if len(text) <= limit else text[:limit] + "..."


__all__ = [
    "CANCEL_HINT",
    "MAX_CHAT_TEXT",
    "NS_COMMANDS",
    "Commands",
    "Note",
    "Result",
    "Session",
    "SessionEnded",
    "command",
]
