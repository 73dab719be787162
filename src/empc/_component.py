"""A component: one domain, its handlers, and the link it sends on."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from lxml import etree
from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from empc._threads import in_blocking_action
from empc.protocol import JID, NS_COMPONENT, InvalidJID, LocalProtocolError, in_domain
from empc.routing import (
    STANZA_KINDS,
    AccessRule,
    Envelope,
    Handler,
    Limits,
    PendingRequests,
    Router,
    StanzaError,
    Tally,
    ThreadRunner,
    addressed_reply,
    make_error_reply,
)

if TYPE_CHECKING:
    from empc.storage import Database

_IQ = f"{{{NS_COMPONENT}}}iq"


_SEND_IN_THREAD = (
    "a blocking action runs in a thread of its own and can neither send nor ask: "
    "return the stanzas to send instead"
)


class NotConnected(LocalProtocolError):
    """The component has no live link to the server right now."""


class Link(Protocol):
    """The stream a component sends on (a connection, or a test's fake)."""

    def send(self, stanza: etree._Element) -> None:
        """Send a stanza; raise LocalProtocolError if it cannot go."""

    def send_result(self, iq_id: str | None, to: str | None, sender: str | None) -> None:
        """Send an empty IQ result; raise LocalProtocolError if it cannot go."""


class Component:
    """The handlers of one component domain, independent of any connection.

    The connection layer calls :meth:`link` once the handshake succeeded,
    :meth:`stop_sending` when the stream starts to end, and :meth:`unlink`
    when it can carry nothing more, and feeds every stanza to
    :meth:`receive`. Handlers call :meth:`send` and :meth:`request`.

    :param domain: the component's domain.
    :param handlers: the handler instances serving it.
    :param clock: the clock for deadlines.
    :param action_timeout: the default deadline of an IQ action, in seconds.
    :param request_timeout: the default deadline of :meth:`request`.
    :param identity: the disco#info identity (category, type, name).
    :param limits: the load limits of its routes.
    :param access_lists: the named lists that access rules may use.
    :param threads: runs the actions of blocking routes (see
        :func:`thread_runner`).
    :param storage: the process's database for the handlers
        (``self.component.storage``), or None. The component neither opens
        nor closes it: the process opens it before its components start,
        with every handler's ``schemas``, and closes it after they stop.
    :param tally: counts what the component receives, sends, answers and
        refuses, for the metrics; None (the default) counts nothing.
    :param server_domain: the domain of the server (its host) the component
        serves: the one that may grant privileges and delegate namespaces,
        and that the keepalive pings; the parent of ``domain`` if None.
    """

    log = Logger()

    def __init__(
        self,
        domain: str,
        handlers: Iterable[Handler],
        clock: IReactorTime,
        *,
        action_timeout: float = 30.0,
        request_timeout: float = 30.0,
        identity: tuple[str, str, str] = ("component", "generic", "empc"),
        limits: Limits = Limits(),  # noqa: B008
        access_lists: Mapping[str, Iterable[str]] | None = None,
        threads: ThreadRunner | None = None,
        storage: Database | None = None,
        tally: Tally | None = None,
        server_domain: str | None = None,
    ) -> None:
        self.domain = JID.parse(domain).domain
        self.server_domain = server_domain or _parent(self.domain)
        self.tally = tally
        self.storage = storage
        self.clock = clock
        self.identity = identity
        self.request_timeout = request_timeout
        self.handlers = list(handlers)
        self.router = Router(
            self._send_reply,
            clock,
            action_timeout,
            send_result=self._send_result,
            limits=limits,
            access_lists=access_lists,
            threads=threads,
            tally=tally,
            unlimited=(self.server_domain,),
            addresses_itself=self.addresses_itself,
        )
        self._requests = PendingRequests(clock)
        # IQ requests served for an answer (see answer()), by the
        # (id, to, from) their answer will have.
        self._answering: dict[Envelope, Deferred[etree._Element]] = {}
        # The stream, while it takes stanzas; handlers may use it only while
        # _open, replies to stanzas already received until it is unlinked.
        self._link: Link | None = None
        self._open = False
        for handler in self.handlers:
            handler.component = self
            self.router.add(handler)

    @property
    def connected(self) -> bool:
        """Whether handlers can send: the link is up and not ending."""
        return self._open

    def access_rule(self, allow: Iterable[str] | None, deny: Iterable[str] | None) -> AccessRule:
        """Who may use something, as a route's ``allow`` and ``deny`` say
        (bare JIDs, domains, ``list:NAME`` from the component's lists):
        for building blocks with access rules of their own.

        :raises ValueError: for a list name the component does not know.
        """
        return self.router.access_rule(allow, deny)

    def start(self) -> Deferred[object]:
        """Run every handler's ``start`` hook; fires when all have finished."""
        return self._each_handler(lambda handler: handler.start())

    def stop(self) -> Deferred[object]:
        """Run every handler's ``stop`` hook; fires when all have finished."""
        return self._each_handler(lambda handler: handler.stop())

    def link(self, link: Link) -> None:
        """The connection is up: stanzas go out through ``link``."""
        self._link = link
        self._open = True

    def stop_sending(self) -> None:
        """The stream is ending: handlers can send no more (NotConnected);
        the replies to stanzas already received still go out, and the
        answers to requests already sent are still taken, until
        :meth:`unlink`."""
        self._open = False

    def unlink(self, reason: Failure) -> None:
        """The stream can carry nothing more: replies are dropped too, and
        pending requests fail with ``reason``."""
        self.stop_sending()
        self._link = None
        self._requests.fail_all(reason)
        answering, self._answering = self._answering, {}
        for waiting in answering.values():
            waiting.errback(reason)
        self.router.abandon_requests()

    def receive(self, stanza: etree._Element) -> None:
        """Serve a stanza the server delivered.

        A stanza for another domain is dropped with a warning: no reply to
        it could be sent from there. Once the stream is ending, IQ requests
        and messages are no longer taken (see :meth:`_refused_while_closing`).
        """
        if self.tally is not None:
            self.tally.received[STANZA_KINDS.get(stanza.tag, "other")] += 1
        to = stanza.get("to") or ""
        if not self.serves(to):
            self.log.warn(
                "Dropped a stanza for {to}, which is not {domain}: {hint}",
                to=to,
                domain=self.domain,
                hint=self._misrouted_hint,
            )
            return
        answer = stanza.tag == _IQ and stanza.get("type") in ("result", "error")
        if answer and self._requests.resolve(stanza):
            return
        if not self._open and self._refused_while_closing(stanza):
            return
        self.router.dispatch(stanza)

    # Why the server would send a stanza for an address not served here.
    _misrouted_hint = (
        "the server routes other domains to this connection (ejabberd: set "
        "global_routes: false on the ejabberd_service listener)"
    )

    def serves(self, to: str) -> bool:
        """Whether ``to`` is an address in the component's domain."""
        return in_domain(to, self.domain)

    def addresses_itself(self, to: str | None) -> bool:
        """Whether ``to`` (of a stanza it serves) is the component itself,
        rather than an address in its domain (a gateway's contact, say)."""
        return "@" not in (to or "")

    def is_own(self, jid: JID) -> bool:
        """Whether ``jid`` is the component or an address in its domain:
        answering it could start a loop."""
        return jid.domain == self.domain

    @property
    def address(self) -> str:
        """The JID to give others to send requests to: the domain."""
        return self.domain

    def _refused_while_closing(self, stanza: etree._Element) -> bool:
        """Whether a stanza that came once the stream was ending is refused.

        An IQ request or a message (but a groupchat one: a room may expel
        whoever bounces its messages) is: its action would hold the stream
        open past the grace of those already running. It is answered at
        once ``resource-constraint`` (type ``wait``: the sender learns that
        it was not taken, and may try again) while the stream still carries
        answers, and dropped with a log line once it does not. A presence,
        a groupchat message, an error or a result is still served: it asks
        for no answer, and may change what the component knows.
        """
        kind = STANZA_KINDS.get(stanza.tag)
        stanza_type = stanza.get("type")
        if kind == "presence" or stanza_type in ("error", "result", "groupchat"):
            return False
        if self.tally is not None:
            self.tally.refused["draining"] += 1
        if self._link is None:
            self.log.warn(
                "Not serving a {kind} from {sender} that arrived after {domain} closed its "
                "stream: no answer could go out",
                kind=kind,
                sender=stanza.get("from"),
                domain=self.domain,
            )
            return True
        error = StanzaError("resource-constraint", "the service is restarting", type="wait")
        try:
            self._send_reply(make_error_reply(stanza, error))
        except LocalProtocolError as e:
            self.log.warn("Dropped a stanza to {to}: {why}", to=stanza.get("from"), why=str(e))
        return True

    def send(self, stanza: etree._Element) -> None:
        """Send a stanza; ``from`` defaults to the component's domain.

        :raises NotConnected: if there is no live connection.
        :raises LocalProtocolError: if the stanza has no ``to`` or a ``from``
            outside the component's domain.
        """
        if not self._open:
            raise NotConnected(f"{self.domain} is not connected")
        if in_blocking_action():
            raise LocalProtocolError(_SEND_IN_THREAD)
        self._send_reply(stanza)

    def answer(self, iq: etree._Element) -> Deferred[etree._Element]:
        """Serve an IQ request through the routes as if the server had
        delivered it, whatever its ``to``, and give its answer (a
        ``result`` or ``error`` IQ, under the same reply contract) instead
        of sending it: for requests that came wrapped in another stanza.

        Fails with ``bad-request`` if a request with the same ``id``,
        ``from`` and ``to`` is still being answered, and with the reason the
        link went if it goes first. Cancelled (its waiter timed out, say),
        it still takes the answer when it comes, which then goes nowhere.
        """
        key = (iq.get("id"), iq.get("from"), iq.get("to"))
        if key in self._answering:
            return fail(StanzaError("bad-request", "a request with this id is being answered"))
        answered: Deferred[etree._Element] = Deferred()
        self._answering[key] = answered
        try:
            self.router.dispatch(iq)
        except Exception:
            del self._answering[key]
            raise
        return answered

    def _answered(self, envelope: Envelope, answer: Callable[[], etree._Element]) -> bool:
        """Whether ``envelope`` addresses the answer to a request served
        by :meth:`answer`: then ``answer()`` is handed to its waiter."""
        waiting = self._answering.pop(envelope, None)
        if waiting is None:
            return False
        waiting.callback(answer())
        return True

    def _send_reply(self, stanza: etree._Element) -> None:
        """What the router sends: replies, and the stanzas actions return."""
        if self._answering and stanza.tag == _IQ:
            envelope = (stanza.get("id"), stanza.get("to"), stanza.get("from"))
            if self._answered(envelope, lambda: stanza):
                return
        if self._link is None:
            raise NotConnected(f"{self.domain} is not connected")
        self._link.send(stanza)
        if self.tally is not None:
            self.tally.count_sent(stanza)

    def _send_result(self, envelope: Envelope) -> None:
        """What the router sends for an action that returned nothing."""
        if self._answering and self._answered(
            envelope, lambda: addressed_reply("iq", "result", envelope)
        ):
            return
        if self._link is None:
            raise NotConnected(f"{self.domain} is not connected")
        self._link.send_result(*envelope)
        if self.tally is not None:
            self.tally.results += 1

    def request(self, iq: etree._Element, timeout: float | None = None) -> Deferred[etree._Element]:
        """Send an IQ get or set and wait for its answer.

        The IQ gets a fresh unpredictable id. The Deferred fires with the
        ``result`` IQ; it fails with the :class:`~empc.StanzaError` of an
        ``error`` answer, with :class:`~empc.RequestTimeout` after
        ``timeout`` seconds (the component's default if None), with
        ``ConnectionLost`` if the link drops first, or at once with
        :class:`NotConnected` or :class:`LocalProtocolError` if the IQ cannot
        be sent. Answers from any JID but the one asked are ignored.
        """
        if not self._open:
            return fail(NotConnected(f"{self.domain} is not connected"))
        if in_blocking_action():
            return fail(LocalProtocolError(_SEND_IN_THREAD))
        try:
            answer = self._requests.register(
                iq, self.request_timeout if timeout is None else timeout
            )
        except InvalidJID as e:
            return fail(LocalProtocolError(f"an IQ request needs a valid 'to': {e}"))
        try:
            self.send(iq)
        except LocalProtocolError:
            answer.addErrback(lambda _: None)  # withdrawn: nobody waits on it
            answer.cancel()
            return fail()
        return answer

    def settled(self, delay: float) -> Deferred[None]:
        """Fires ``delay`` seconds from now if the link that carries what
        was sent so far is still the one up then: the bytes had time to
        leave the process and reach the server. Fails with
        :class:`NotConnected` if that link went meanwhile: what was sent
        may or may not have arrived.

        No round trip proves more: XEP-0114 acknowledges nothing, and an
        answer to a ping may be handed by ejabberd to another process
        serving the same domain.
        """
        link = self._link
        if link is None:
            return fail(NotConnected(f"{self.domain} is not connected"))
        settled: Deferred[None] = Deferred()

        def check() -> None:
            if self._link is link:
                settled.callback(None)
            else:
                settled.errback(NotConnected(f"the link of {self.domain} went meanwhile"))

        self.clock.callLater(delay, check)
        return settled

    def _each_handler(self, hook: Callable[[Handler], object]) -> Deferred[object]:
        results = [maybeDeferred(hook, handler) for handler in self.handlers]
        return gatherResults(results, consumeErrors=True).addCallback(lambda _: None)


def _parent(domain: str) -> str:
    """The domain a component's usually lives under: ``example.org`` for
    ``echo.example.org``."""
    return domain.split(".", 1)[1] if "." in domain else domain
