"""The router: from a stanza to the action that serves it, and back.

The reply contract for an IQ ``get`` or ``set`` is enforced here, in one
place: whatever the action does, exactly one reply goes out.

============================  =====================================
the action...                 the reply
============================  =====================================
returns None                  an empty result
returns an element            a result carrying it as payload
raises StanzaError            that error
raises NotImplementedError    ``feature-not-implemented``
raises anything else          ``internal-server-error`` (logged)
is still running at the       ``remote-server-timeout`` (type
deadline                      ``wait``); the late outcome is dropped
no route matches              ``service-unavailable``
============================  =====================================

IQs of type ``result`` or ``error`` and stanzas of type ``error`` are never
answered, and only a route that names their type explicitly receives them
(a bounce, for instance). Before an action runs, its stanza is admitted
(see :mod:`empc.routing._admission`): an IQ refused by an access rule is
answered ``forbidden``, one over a limit ``resource-constraint``.

Messages, presences and those answers get no automatic reply: an action
may return stanzas (one element or an iterable of them) to send.

An IQ's reply is addressed from the request before the action runs: the
action (in a thread, for a blocking route) has its stanza to itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import wraps
from inspect import iscoroutine, iscoroutinefunction
from typing import Any, TypeVar

from lxml import etree
from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from empc.protocol import JID, NS_COMPONENT, InvalidJID, LocalProtocolError, RestrictedContent

from ._admission import AccessRule, Limits, RateLimiter
from ._routes import IQ_REQUEST_TYPES, Route, declared_routes
from ._stanzas import (
    STANZA_KINDS,
    Envelope,
    StanzaError,
    addressed_reply,
    envelope_of,
    make_error_reply,
)
from ._tally import Tally

_IQ = f"{{{NS_COMPONENT}}}iq"
_DEFAULT_TYPE = {"message": "normal", "presence": "available"}
# Answers, never answered: only a route naming the type takes them.
_ANSWER_TYPES = frozenset(("error", "result"))

Send = Callable[[etree._Element], None]
SendResult = Callable[[Envelope], None]
T = TypeVar("T")
Key = tuple[str, str | None, str | None]


ThreadRunner = Callable[[Callable[[etree._Element], object], etree._Element], Deferred[object]]
"""Runs a blocking action with its stanza in a thread; the Deferred fires in
the reactor thread with the action's outcome."""


class Router:
    """Matches stanzas against routes, admits them, and runs their actions.

    :param send: called with each stanza to send (replies included).
    :param clock: schedules the IQ deadlines and refills the rate limits.
    :param timeout: the default deadline, in seconds, of an IQ action.
    :param limits: the load limits.
    :param access_lists: the named lists access rules may use.
    :param threads: runs the actions of ``blocking`` routes.
    :param send_result: called with the envelope of each empty IQ result
        to send (an action that returned None): a shortcut past building an
        element. By default the result is built and given to ``send``.
    :param tally: counts the refusals and times the actions, for the
        metrics; None counts nothing.
    :param unlimited: senders the rate limit does not apply to: the
        server, whose envelopes (delegated IQs) carry many users' requests,
        each admitted on its own sender once unwrapped.
    :param addresses_itself: whether a stanza's ``to`` is the component
        itself, for the routes declared ``to_itself``; by default, whether
        it has no local part.
    """

    log = Logger()

    def __init__(
        self,
        send: Send,
        clock: IReactorTime,
        timeout: float = 30.0,
        *,
        limits: Limits = Limits(),  # noqa: B008
        access_lists: Mapping[str, Iterable[str]] | None = None,
        threads: ThreadRunner | None = None,
        send_result: SendResult | None = None,
        tally: Tally | None = None,
        unlimited: Iterable[str] = (),
        addresses_itself: Callable[[str | None], bool] = lambda to: "@" not in (to or ""),
    ) -> None:
        self._send = send
        self._addresses_itself = addresses_itself
        self._tally = tally
        self._unlimited = frozenset(JID.parse(sender) for sender in unlimited)
        self._send_result = send_result or (
            lambda envelope: send(addressed_reply("iq", "result", envelope))
        )
        self._clock = clock
        self._timeout = timeout
        self._limits = limits
        self._access_lists = dict(access_lists or {})
        self._threads = threads
        self._rates = None if limits.rate is None else RateLimiter(clock, limits.rate, limits.burst)
        self._in_flight = 0  # actions running, blocking ones aside
        # Blocking actions have a budget of their own, so that a stuck
        # dependency cannot starve the other routes and the built-ins.
        self._blocking = 0
        self._blocking_budget = limits.threads + limits.blocking_queue
        self._unanswered = 0  # stanzas whose action has not completed
        self._waiting_requests: set[_Ticket] = set()  # blocking IQ actions not done
        self._idle_waiters: list[Deferred[None]] = []
        self._routes: list[Route] = []
        # Candidate routes per (kind, type, payload), where a type or payload
        # no route names is folded into None: the keys are bounded by the
        # routes, whatever arrives from the wire.
        self._candidates: dict[Key, list[Route]] = {}
        self._known_types: set[str] = set()
        self._handler_features: set[str] = set()
        self._known_payloads: set[str] = set()

    @property
    def routes(self) -> list[Route]:
        """All routes, in the order they are tried."""
        return list(self._routes)

    def add(self, handler: object) -> None:
        """Register the routes declared on ``handler``'s methods.

        :raises ValueError: for an access rule naming an unknown list or JID,
            a blocking route when there is no thread pool, or a blocking
            coroutine.
        """
        routes = declared_routes(handler)
        self._handler_features.update(getattr(handler, "features", ()))
        for route in routes:
            spec = route.spec
            if spec.allow is not None or spec.deny is not None:
                try:
                    route.access = self.access_rule(spec.allow, spec.deny)
                except ValueError as e:
                    raise ValueError(f"route {route.name}: {e}") from None
            if spec.blocking and self._threads is None:
                raise ValueError(f"route {route.name} is blocking, but there is no thread pool")
            if spec.blocking and iscoroutinefunction(route.action):
                raise ValueError(
                    f"route {route.name} is blocking but a coroutine: a coroutine does not "
                    "block, and a thread cannot run it"
                )
        for route in routes:
            route.order = len(self._routes)
            self._routes.append(route)
        self._routes.sort(key=lambda route: route.sort_key)
        self._candidates.clear()
        self._known_types = {t for r in self._routes for t in r.spec.types or ()}
        self._known_payloads = {r.spec.payload for r in self._routes if r.spec.payload}

    def access_rule(self, allow: Iterable[str] | None, deny: Iterable[str] | None) -> AccessRule:
        """An access rule on this router's named lists, as routes get.

        :raises ValueError: for a list name the lists do not hold.
        """
        return AccessRule(allow, deny, self._access_lists)

    def features(self) -> list[str]:
        """The disco#info features the routes and handlers serve, sorted."""
        features = set(self._handler_features)
        for route in self._routes:
            if route.spec.feature:
                features.add(route.spec.feature)
            elif route.spec.payload:
                features.add(etree.QName(route.spec.payload).namespace or "")
        features.discard("")
        return sorted(features)

    @property
    def unanswered(self) -> int:
        """Stanzas whose action has not completed yet."""
        return self._unanswered

    def when_idle(self) -> Deferred[None]:
        """Fires once every action started so far has completed and its
        replies have been handed to ``send``: at once if none is running."""
        if not self._unanswered:
            return succeed(None)
        waiter: Deferred[None] = Deferred(self._idle_waiters.remove)  # cancelled: forgotten
        self._idle_waiters.append(waiter)
        return waiter

    def match(self, stanza: etree._Element) -> Route | None:
        """The first route that matches ``stanza``, or None."""
        kind = STANZA_KINDS.get(stanza.tag)
        return None if kind is None else self._match(stanza, kind, stanza.get("type"))

    def _match(self, stanza: etree._Element, kind: str, stanza_type: str | None) -> Route | None:
        if not stanza_type:
            stanza_type = _DEFAULT_TYPE.get(kind)
        elif stanza_type not in self._known_types and stanza_type not in _ANSWER_TYPES:
            stanza_type = None  # a type no route names: the keys stay bounded
        payload = stanza[0].tag if kind == "iq" and len(stanza) else None
        key = (kind, stanza_type, payload if payload in self._known_payloads else None)
        candidates = self._candidates.get(key)
        if candidates is None:
            candidates = self._candidates[key] = [r for r in self._routes if _may_match(r, key)]
        for route in candidates:
            try:
                if route.matches(stanza) and (
                    not route.spec.to_itself or self._addresses_itself(stanza.get("to"))
                ):
                    return route
            except etree.XPathEvalError as e:
                self.log.warn(
                    "Route {route} failed on a stanza: {error}", route=route.name, error=e
                )
        return None

    def dispatch(self, stanza: etree._Element) -> None:
        """Serve one incoming stanza."""
        kind = STANZA_KINDS.get(stanza.tag)
        if kind is None:
            return
        stanza_type = stanza.get("type")
        route = self._match(stanza, kind, stanza_type)
        if kind != "iq" or stanza_type in _ANSWER_TYPES:
            if route is not None:
                self._admit(route, stanza, None)
        elif stanza_type not in IQ_REQUEST_TYPES or len(stanza) != 1:
            error = StanzaError("bad-request", "an IQ get or set needs exactly one payload")
            self._reply(make_error_reply(stanza, error))
        elif route is None:
            self._reply(make_error_reply(stanza, StanzaError("service-unavailable")))
        else:
            self._admit(route, stanza, envelope_of(stanza))

    def _admit(self, route: Route, stanza: etree._Element, reply: Envelope | None) -> None:
        """Run the action if access and limits allow; refuse it otherwise.

        ``reply`` addresses the answer to an IQ request (None for other
        stanzas).
        """
        refused = self._refusal(route, stanza)
        if refused is None:
            self._run(route, stanza, reply)
            return
        reason, refusal = refused
        if self._tally is not None:
            self._tally.refused[reason] += 1
        if reply is not None:
            self._reply(_error_reply(reply, refusal))
        else:
            self.log.info(
                "Dropped a stanza from {sender} for {route}: {why}",
                sender=stanza.get("from"),
                route=route.name,
                why=str(refusal),
            )

    def _refusal(self, route: Route, stanza: etree._Element) -> tuple[str, StanzaError] | None:
        """Why ``stanza`` may not run ``route``'s action (a reason for the
        metrics, and the error), or None."""
        if route.access is not None or self._rates is not None:
            try:
                sender = JID.parse(stanza.get("from") or "")
            except InvalidJID:
                return "access", StanzaError("forbidden", "no valid sender")
            if route.access is not None and not route.access.permits(sender):
                return "access", StanzaError("forbidden")
            rates = None if sender.bare in self._unlimited else self._rates
            if rates is not None and not rates.allow(sender.bare):
                return "rate", StanzaError("resource-constraint", "too many requests: slow down")
        limit = route.spec.max_in_flight
        if route.spec.blocking:
            busy = self._blocking >= self._blocking_budget
        else:
            busy = self._in_flight >= self._limits.max_in_flight
        if busy or (limit is not None and route.in_flight >= limit):
            busy_error = StanzaError(
                "resource-constraint", "too busy: try again later", type="wait"
            )
            return "in_flight", busy_error
        return None

    def _run(self, route: Route, stanza: etree._Element, reply: Envelope | None) -> None:
        """Run ``route``'s action; :meth:`_complete` gets its outcome once.

        An action that answers at once costs no Deferred and no timer.
        """
        started = 0.0 if self._tally is None else self._clock.seconds()
        self._unanswered += 1
        route.in_flight += 1
        result: object
        if route.spec.blocking:
            self._blocking += 1
            try:
                result = self._in_thread(route, stanza, reply is not None)
            except Exception:  # the runner itself failed: no thread holds the place
                self._release(route)
                self._complete(Failure(), route, reply, started)
                return
        else:
            self._in_flight += 1
            try:
                result = route.action(stanza)
            except Exception:
                self._complete(Failure(), route, reply, started)
                return
            if iscoroutine(result):
                result = Deferred.fromCoroutine(result)
        if not isinstance(result, Deferred):
            self._complete(result, route, reply, started)
            return
        timeout = self._timeout if route.spec.timeout is None else route.spec.timeout
        result.addTimeout(timeout, self._clock)
        result.addBoth(self._complete, route, reply, started)
        result.addErrback(
            lambda f: self.log.failure("Completing {route} failed", f, route=route.name)
        )

    def _complete(
        self, outcome: object, route: Route, reply: Envelope | None, started: float
    ) -> None:
        """The outcome (a result or a Failure) of an action that ``started``
        (on the clock) to run: reply, or send what it returned. A blocking
        action keeps its place in the limits until its thread is done (see
        :meth:`_in_thread`)."""
        if self._tally is not None and outcome is not _NOT_RUN:
            self._tally.observe(route.name, self._clock.seconds() - started)
        if not route.spec.blocking:
            self._release(route)
        try:
            if outcome is _NOT_RUN:
                pass  # dropped when the stream closed: nothing can be answered
            elif reply is None:
                self._send_stanzas(route, outcome)
            elif outcome is None:
                self._guarded(self._send_result, reply, reply[1])
            else:
                self._answer(route, reply, self._iq_reply(reply, route, outcome))
        finally:
            self._unanswered -= 1
            if not self._unanswered and self._idle_waiters:
                waiters, self._idle_waiters = self._idle_waiters, []
                for waiter in waiters:
                    waiter.callback(None)

    def _release(self, route: Route) -> None:
        route.in_flight -= 1
        if route.spec.blocking:
            self._blocking -= 1
        else:
            self._in_flight -= 1

    def _in_thread(self, route: Route, stanza: etree._Element, request: bool) -> Deferred[object]:
        """Run a blocking action in the pool.

        The returned Deferred may time out, but the action's slot in the
        blocking budget is released only when its thread is done with it,
        so hung actions cannot pile up in the pool's queue past the budget.
        An action still waiting for a thread when its answer can no longer
        be given is never run: when its deadline has passed (its stanza was
        answered ``remote-server-timeout``, type ``wait``, and a sender who
        tries again must not see it run twice), or, for an IQ ``request``,
        when the stream has closed (see :meth:`abandon_requests`).
        """
        assert self._threads is not None
        ticket = _Ticket()
        outcome: Deferred[object] = Deferred(lambda _: ticket.drop(_DEADLINE_PASSED))
        work = self._threads(ticket.guard(route.action), stanza)
        if request:
            self._waiting_requests.add(ticket)

        def ended(result: object) -> None:
            self._waiting_requests.discard(ticket)
            self._release(route)
            if isinstance(result, Failure) and result.check(_Dropped):
                self.log.info("{route} was not run: {why}", route=route.name, why=ticket.dropped)
                result = _NOT_RUN
            if not outcome.called:  # else it timed out: the result is dropped
                outcome.callback(result)

        work.addBoth(ended)
        return outcome

    def abandon_requests(self) -> None:
        """The stream can carry no answer any more: the IQ requests whose
        blocking action still waits for a thread will not run."""
        for ticket in self._waiting_requests:
            ticket.drop("the stream closed while it waited for a thread")

    def _iq_reply(self, reply: Envelope, route: Route, outcome: object) -> etree._Element:
        """The answer ``reply`` addresses, carrying the outcome: a payload
        or an error."""
        if not isinstance(outcome, Failure):
            if isinstance(outcome, etree._Element):
                result = addressed_reply("iq", "result", reply)
                result.append(outcome)
                return result
            outcome = Failure(
                TypeError(f"{route.name} returned {type(outcome).__name__}, not an element or None")
            )
        try:
            return _error_reply(reply, self._stanza_error(route, outcome))
        except Exception:
            # The error itself could not be built (a text that is no XML,
            # say): the IQ still gets its one answer.
            self.log.failure("The reply of {route} could not be built", route=route.name)
            return _error_reply(reply, StanzaError("internal-server-error"))

    def _stanza_error(self, route: Route, failure: Failure) -> StanzaError:
        error = failure.value
        if isinstance(error, StanzaError):
            return error
        if isinstance(error, NotImplementedError):
            return StanzaError("feature-not-implemented")
        if isinstance(error, TimeoutError):
            self.log.warn(
                "{route} did not finish in time; answered remote-server-timeout", route=route.name
            )
            return StanzaError("remote-server-timeout", "the request took too long", type="wait")
        self.log.failure(
            "{route} failed; answered internal-server-error", failure, route=route.name
        )
        return StanzaError("internal-server-error")

    def _send_stanzas(self, route: Route, outcome: object) -> None:
        if isinstance(outcome, Failure):
            if outcome.check(TimeoutError):
                self.log.warn("{route} did not finish in time; dropped", route=route.name)
            else:
                self.log.failure("{route} failed", outcome, route=route.name)
        elif isinstance(outcome, etree._Element):
            self._reply(outcome)
        elif isinstance(outcome, Iterable) and not isinstance(outcome, (str, bytes)):
            try:
                for stanza in outcome:  # may be a generator that fails midway
                    self._reply(stanza)
            except Exception:
                self.log.failure("{route} failed", route=route.name)
        elif outcome is not None:
            self.log.error(
                "{route} returned {kind}, not stanzas; nothing sent",
                route=route.name,
                kind=type(outcome).__name__,
            )

    def _answer(self, route: Route, reply: Envelope, answer: etree._Element) -> None:
        """Send an IQ's answer; one that carries what a stream may not (a
        comment in the payload, say) becomes ``internal-server-error``, so
        the IQ is still answered, and the stream is spared."""

        def send(stanza: etree._Element) -> None:
            try:
                self._send(stanza)
            except RestrictedContent as e:
                self.log.error(
                    "{route} answered with what a stanza may not carry ({why}); answered "
                    "internal-server-error",
                    route=route.name,
                    why=str(e),
                )
                self._send(_error_reply(reply, StanzaError("internal-server-error")))

        self._guarded(send, answer, reply[1])

    def _reply(self, stanza: Any) -> None:
        self._guarded(self._send, stanza, stanza.get("to"))

    def _guarded(self, send: Callable[[T], None], what: T, to: str | None) -> None:
        """Send ``what`` (a stanza or an envelope) to ``to``: what cannot go
        is logged."""
        try:
            send(what)
        except LocalProtocolError as e:
            self.log.warn("Dropped a stanza to {to}: {why}", to=to, why=str(e))
        except Exception:
            self.log.failure("Could not send a stanza")


_DEADLINE_PASSED = "its deadline passed while it waited for a thread"
_NOT_RUN = object()  # the outcome of an action dropped before a thread took it


class _Dropped(Exception):
    """A blocking action was dropped before a thread took it."""


class _Ticket:
    """A blocking action's place in the pool's queue, which the reactor
    thread may give up (``drop``) until a worker takes it (``guard``)."""

    __slots__ = ("dropped",)

    def __init__(self) -> None:
        self.dropped: str | None = None  # why; the worker only reads it

    def drop(self, why: str) -> None:
        if self.dropped is None:
            self.dropped = why

    def guard(
        self, action: Callable[[etree._Element], object]
    ) -> Callable[[etree._Element], object]:
        """``action``, unless dropped by the time a thread takes it."""

        @wraps(action)
        def run(stanza: etree._Element) -> object:
            if self.dropped is not None:
                raise _Dropped(self.dropped)
            return action(stanza)

        return run


def _error_reply(reply: Envelope, error: StanzaError) -> etree._Element:
    """The error answer that ``reply`` addresses."""
    stanza = addressed_reply("iq", "error", reply)
    stanza.append(error.to_element())
    return stanza


def _may_match(route: Route, key: Key) -> bool:
    kind, stanza_type, payload = key
    spec = route.spec
    return (
        (spec.kind is None or spec.kind == kind)
        and (stanza_type not in _ANSWER_TYPES if spec.types is None else stanza_type in spec.types)
        and (spec.payload is None or spec.payload == payload)
    )
