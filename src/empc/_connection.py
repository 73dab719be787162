"""The Twisted side of a connection: a thin adapter on the core.

:class:`LinkProtocol` feeds what it reads into a stream of the core, acts
on the events, and writes what the stream queues: a
:class:`~empc.protocol.ComponentStream` for :class:`ComponentProtocol`, a
:class:`~empc.protocol.ClientStream` for :class:`AccountProtocol`, which
also starts TLS when the stream asks and keeps the account's stream
management session across connections. It keeps a live link live: a
whitespace keepalive while idle, and an XEP-0199 ping to the server whose
missing answer drops the connection so that the service reconnects.

When the stream ends, from either side, the stanzas received before the
end still get their replies: handlers can no longer send, but the router's
replies go out until it is idle or ``grace`` has passed, and only then
does our ``</stream:stream>`` follow them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (
    IDelayedCall,
    IOpenSSLClientConnectionCreator,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from empc._account import Account
from empc._component import Component
from empc.handlers import NS_PING
from empc.protocol import (
    Authenticated,
    ClientStream,
    ComponentStream,
    Event,
    LocalProtocolError,
    NegotiationFailed,
    ProtocolViolation,
    Resumed,
    ResumeFailed,
    ServerClosed,
    SmState,
    StanzaReceived,
    State,
    StreamClosed,
    StreamError,
    StreamErrorReceived,
    StreamManagement,
    TlsProceed,
    UnackedQueueFull,
    XmppStream,
    masked,
    new_element,
)
from empc.routing import RequestTimeout, make_stanza


class HandshakeTimeout(Exception):
    """The server did not complete the handshake in time."""


class SendQueueFull(LocalProtocolError):
    """The server reads slower than the component sends, and the stanzas
    waiting for it have reached ``max_send_queue`` bytes: nothing was sent."""


@dataclass(frozen=True)
class LinkSettings:
    """How one connection behaves; see the config reference for each."""

    max_stanza_size: int = 512 * 1024
    max_depth: int = 64
    handshake_timeout: float = 30.0
    keepalive_interval: float = 60.0
    ping_interval: float = 300.0
    ping_timeout: float = 60.0
    ping_target: str | None = None
    grace: float = 10.0
    close_timeout: float = 5.0
    max_send_queue: int = 4 * 1024 * 1024
    log_stanzas: bool = False


@implementer(IPushProducer)
class LinkProtocol(Protocol):
    """One connection to the server, whoever it authenticates as: a
    component (:class:`ComponentProtocol`) or an account
    (:class:`AccountProtocol`).

    :ivar handshake_done: fires with None when the handshake is over: at
        once when it succeeded, or once the connection is gone when it did
        not. It never fails (but with ``CancelledError`` when it is
        cancelled: the connection is then aborted): ``ClientService`` cannot take a rejection from
        ``prepareConnection`` while the rejected connection is still open,
        nor a disconnection before ``prepareConnection`` has answered.
    :ivar refusal: why the handshake did not succeed, when it did not: the
        :class:`~empc.protocol.StreamError` the server sent,
        :class:`HandshakeTimeout`, or the reason the connection was lost.
    """

    log = Logger()
    kind = "component"  # in log lines: what connected

    def __init__(
        self, component: Component, stream: XmppStream, clock: IReactorTime, settings: LinkSettings
    ) -> None:
        self._component = component
        self._clock = clock
        self._settings = settings
        self._stream = stream
        self.handshake_done: Deferred[None] = Deferred(
            lambda _: self._abort("stopped during the handshake")
        )
        self.refusal: BaseException | None = None
        self._lost_waiters: list[Deferred[None]] = []
        self._stream_error: StreamError | None = None
        self._closing = False  # we asked for the close
        self._draining = False  # the stream is ending: waiting for the replies
        self._drained: Deferred[None] | None = None  # fires when they are out
        self._linked = False  # the component sends through this connection
        self._broken = False  # the server broke the protocol
        self._backlog: _Backlog | None = None  # while the write buffer is full
        self._producing = False
        self._lost = False
        self._receiving = False
        self._last_write = 0.0
        self._timers: list[LoopingCall] = []
        self._handshake_deadline: IDelayedCall | None = None
        self._close_deadline: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self._stream.open()
        self._flush()
        self._handshake_deadline = self._clock.callLater(
            self._settings.handshake_timeout, self._handshake_timed_out
        )

    def dataReceived(self, data: bytes) -> None:
        # Replies sent while handling this read are written in one go.
        self._receiving = True
        try:
            for event in self._stream.receive(data):
                self._handle(event)
        finally:
            self._receiving = False
            self._flush()

    def send(self, stanza: etree._Element) -> None:
        """Send a stanza; see :meth:`ComponentStream.send` for what fails.

        :raises SendQueueFull: if the server has not read the last
            ``max_send_queue`` bytes sent to it.
        """
        self._check_backlog()
        self._stream.send(stanza)
        if self._settings.log_stanzas:
            self._log_stanza("out", masked(stanza))
        self._sent()

    def send_result(self, iq_id: str | None, to: str | None, sender: str | None) -> None:
        """Send an empty IQ result; see :meth:`ComponentStream.send_result`
        and :meth:`send` for what fails."""
        self._check_backlog()
        self._stream.send_result(iq_id, to, sender)
        if self._settings.log_stanzas:
            sender = sender or self._component.domain  # as the stream writes it
            result = make_stanza("iq", {"type": "result", "id": iq_id, "to": to, "from": sender})
            self._log_stanza("out", masked(result))
        self._sent()

    def _log_stanza(self, direction: str, text: str) -> None:
        self.log.debug(
            "Stanza {direction} on {domain}: {stanza}",
            direction=direction,
            domain=self._component.domain,
            stanza=text,
        )

    @property
    def send_queue(self) -> int:
        """Bytes sent since the server stopped reading (0 while it reads)."""
        return 0 if self._backlog is None else self._backlog.size

    def _check_backlog(self) -> None:
        if self._backlog is not None and self._backlog.size >= self._settings.max_send_queue:
            raise SendQueueFull(
                f"{self._backlog.size} bytes wait for the server of {self._component.domain}"
            )

    def _sent(self) -> None:
        if self._backlog is not None:
            self._backlog.stanzas += 1
        if not self._receiving:
            self._flush()

    def close(self) -> Deferred[None]:
        """Close the stream cleanly; fires once the connection is gone.

        The replies still due go out first (for at most ``grace``
        seconds), then our ``</stream:stream>``; the server then has
        ``close_timeout`` seconds to close its side before the connection
        is dropped anyway.
        """
        if self._lost:
            return succeed(None)
        lost = self.when_lost()
        self._closing = True
        if self._stream.state is State.READY:
            self._drain()
        elif not self._draining:
            self._unlink("the stream is closing")
            self._stream.close()
            self._flush()
            self._await_close()
        return lost

    def _drain(self) -> None:
        """The stream is ending: handlers can send no more, and the stanzas
        received so far get their replies before our close tag, for at most
        ``grace`` seconds."""
        if self._draining:
            return
        self._draining = True
        self._component.stop_sending()
        self._drained = self._component.router.when_idle()
        self._drained.addTimeout(self._settings.grace, self._clock)
        self._drained.addErrback(self._drain_timed_out)
        self._drained.addCallback(lambda _: self._end_stream())

    def _drain_timed_out(self, failure: Failure) -> None:
        if failure.trap(TimeoutError, CancelledError) is CancelledError:
            return  # the connection is gone: nothing more to wait for
        self.log.warn(
            "Closing the stream of {domain} with {count} stanzas still unanswered after "
            "{timeout} seconds",
            domain=self._component.domain,
            count=self._component.router.unanswered,
            timeout=self._settings.grace,
        )

    def _end_stream(self) -> None:
        """Send our close tag after the replies; drop the connection once
        both sides have closed."""
        if self._lost:
            return
        self._unlink("the stream is closed")
        self._stream.close()
        # After a breach the server's input is ignored: no use waiting for it.
        if self._stream.state is State.CLOSED or self._broken:
            self._drop()
        else:
            self._flush()
            self._await_close()

    def _await_close(self) -> None:
        """Give the server ``close_timeout`` seconds to close its side."""
        if self._close_deadline is None:
            self._close_deadline = self._clock.callLater(
                self._settings.close_timeout, self._abort, "the server did not close the stream"
            )

    def pauseProducing(self) -> None:
        """The write buffer is full: read no more stanzas for now, and
        count what is sent until it has drained."""
        self._backlog = _Backlog()
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        """The write buffer has drained."""
        self._backlog = None
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def stopProducing(self) -> None:
        """The connection is going: connectionLost does the cleaning up."""

    def when_lost(self) -> Deferred[None]:
        """A Deferred that fires when the connection is gone."""
        waiter: Deferred[None] = Deferred()
        self._lost_waiters.append(waiter)
        return waiter

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        self._lost = True
        if self._drained is not None and not self._drained.called:
            self._drained.cancel()
        for timer in self._timers:
            if timer.running:
                timer.stop()
        for deadline in (self._handshake_deadline, self._close_deadline):
            if deadline is not None and deadline.active():
                deadline.cancel()
        self._unlink("the connection was lost")
        if not self.handshake_done.called:
            self.refusal = self.refusal or self._stream_error or reason.value
            self.handshake_done.callback(None)
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _handle(self, event: Event) -> None:
        if isinstance(event, StanzaReceived):
            if self._settings.log_stanzas:
                self._log_stanza("in", masked(event.stanza))
            self._component.receive(event.stanza)
        elif isinstance(event, Authenticated):
            self._authenticated(event)
        elif isinstance(event, StreamErrorReceived):
            self._stream_error = event.error
            if self.handshake_done.called:
                self.log.warn(
                    "Server closed the stream of {domain}: {condition}",
                    domain=self._component.domain,
                    condition=str(event.error),
                )
            self._end(f"the server closed the stream: {event.error}")
        elif isinstance(event, ProtocolViolation):
            self.log.error(
                "Server broke the protocol on {domain}; sending {condition}",
                domain=self._component.domain,
                condition=str(event.error),
            )
            if not self.handshake_done.called:
                # Counts as the refusal: a client port answers with another
                # namespace, and the fix for that should be logged.
                self._stream_error = self._stream_error or event.error
            self._broken = True
            self._end(f"the server broke the protocol: {event.error}")
        elif isinstance(event, ServerClosed):
            self.log.info("Server closed the stream of {domain}", domain=self._component.domain)
            self._drain()
        elif isinstance(event, StreamClosed):
            if self._closing:
                self.log.info("Stream closed cleanly for {domain}", domain=self._component.domain)
            self._drop()
        else:
            self._negotiation(event)

    def _negotiation(self, event: Event) -> None:
        """An event of the way to READY that only one kind of stream has."""

    def _end(self, why: str) -> None:
        """The stream ends from the server's side: drain a stream that was
        ready; otherwise the stream has answered already."""
        if self._stream.state is State.DRAINING:
            self._drain()
        else:
            self._unlink(why)
            self._drop()

    def _authenticated(self, event: Authenticated) -> None:
        if self._handshake_deadline is not None and self._handshake_deadline.active():
            self._handshake_deadline.cancel()
        if self.handshake_done.called:  # cancelled: the service is stopping
            return
        # Backpressure: when the server reads our replies slower than we
        # produce them, the transport pauses us, and we stop reading its
        # stanzas until the write buffer has drained. Only from now on: a
        # TLS transport pauses its producer while its own handshake runs,
        # and must go on reading meanwhile.
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self._producing = True
        self._linked = True
        self._component.link(self)
        # Checked twice per interval, so an idle link waits at most 1.5 of it.
        self._start_timer(self._settings.keepalive_interval / 2, self._keepalive)
        self._start_timer(self._settings.ping_interval, self._ping)
        peer = self.transport.getPeer() if self.transport is not None else None
        self.log.info(
            "{kind} {domain} connected to {peer}",
            kind=self.kind.capitalize(),
            domain=self._component.domain,
            peer=peer,
        )
        self.handshake_done.callback(None)

    def _start_timer(self, interval: float, function: Callable[[], object]) -> None:
        if interval > 0:
            timer = LoopingCall(function)
            timer.clock = self._clock
            timer.start(interval, now=False)
            self._timers.append(timer)

    def _keepalive(self) -> None:
        if self._clock.seconds() - self._last_write >= self._settings.keepalive_interval:
            self._stream.send_whitespace()
            self._flush()

    def _ping(self) -> None:
        target = self._settings.ping_target or self._component.server_domain
        ping = make_stanza("iq", {"type": "get", "to": target})
        new_element(NS_PING, "ping", parent=ping)
        # Any answer, even an error, proves the link is alive.
        answer = self._component.request(ping, self._settings.ping_timeout)
        answer.addErrback(self._ping_failed)

    def _ping_failed(self, failure: Failure) -> None:
        if self._lost:
            return  # a ping of a link gone already (an account's, kept pending)
        if failure.check(RequestTimeout):
            self._abort(f"no answer to a ping within {self._settings.ping_timeout} seconds")
        elif failure.check(SendQueueFull, UnackedQueueFull):
            # Reading is paused until the server reads (or acknowledges):
            # nothing else would ever tell a dead link from a slow one.
            self._abort(
                f"the server does not read (or acknowledge) what is sent to it ({failure.value})"
            )

    def _handshake_timed_out(self) -> None:
        self.refusal = HandshakeTimeout("no answer to the handshake from the server")
        self._abort("the server did not answer the handshake")

    def _abort(self, why: str) -> None:
        if self.transport is not None:
            self.log.warn(
                "Dropping the connection of {domain}: {why}", domain=self._component.domain, why=why
            )
            if self._backlog is not None and self._backlog.stanzas:
                # What the server had not read when the buffer filled is lost.
                self.log.error(
                    "Up to {stanzas} stanzas ({size} bytes) sent by {domain} since the server "
                    "stopped reading are lost with the connection",
                    stanzas=self._backlog.stanzas,
                    size=self._backlog.size,
                    domain=self._component.domain,
                )
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _drop(self) -> None:
        """Close the connection once what is queued is written; abort it if
        the server does not let go within ``close_timeout``."""
        self._flush()
        if self.transport is not None:
            if self._producing:
                # A TLS transport only shuts down once no producer is registered.
                self._producing = False
                self.transport.unregisterProducer()  # type: ignore[attr-defined]
            self.transport.loseConnection()
        self._await_close()

    def _unlink(self, why: str) -> None:
        """Nothing more can be sent: sends raise NotConnected, and pending
        requests fail with ConnectionLost."""
        if self._linked:
            self._linked = False
            self._component.unlink(Failure(ConnectionLost(why)))

    def _flush(self) -> None:
        data = self._stream.data_to_send()
        if data and self.transport is not None:
            if self._backlog is not None:
                self._backlog.size += len(data)
            self.transport.write(data)
            self._last_write = self._clock.seconds()


@dataclass(frozen=True)
class AccountTls:
    """How an account's link is encrypted.

    :ivar options: how to start TLS when the server agrees to STARTTLS: it
        verifies the server's certificate for the account's domain.
    :ivar required: whether a server that offers no TLS is refused.
    :ivar direct: whether the endpoint has started TLS already (a ``tls:``
        endpoint, XEP-0368, which verified the certificate): no STARTTLS
        then. Told, never guessed from the transport: an endpoint may
        encrypt without verifying anything.
    """

    options: IOpenSSLClientConnectionCreator
    required: bool = True
    direct: bool = False


class ComponentProtocol(LinkProtocol):
    """One connection of a component to its server (XEP-0114)."""

    def __init__(
        self, component: Component, secret: str, clock: IReactorTime, settings: LinkSettings
    ) -> None:
        stream = ComponentStream(
            component.domain,
            secret,
            max_stanza_size=settings.max_stanza_size,
            max_depth=settings.max_depth,
        )
        super().__init__(component, stream, clock, settings)


class AccountProtocol(LinkProtocol):
    """One connection of an account to its server (RFC 6120).

    :param tls: how the link is encrypted.
    :param stream_management: the account's XEP-0198 session, which
        outlives the connection: the next one resumes it.
    """

    kind = "account"
    # Ask the server for an acknowledgement after this many stanzas sent.
    ack_every = 10

    def __init__(
        self,
        account: Account,
        password: str,
        clock: IReactorTime,
        settings: LinkSettings,
        *,
        tls: AccountTls,
        stream_management: StreamManagement,
    ) -> None:
        self._client = ClientStream(
            str(account.jid),
            password,
            tls_required=tls.required,
            encrypted=tls.direct,
            stream_management=stream_management,
            max_stanza_size=settings.max_stanza_size,
            max_depth=settings.max_depth,
        )
        super().__init__(account, self._client, clock, settings)
        self._account = account
        self._tls = tls
        self._sm = stream_management
        self._unrequested = 0  # stanzas sent since the last ack request

    def _negotiation(self, event: Event) -> None:
        if isinstance(event, TlsProceed):
            self.transport.startTLS(self._tls.options)  # type: ignore[union-attr]
            self._client.tls_started()
        elif isinstance(event, NegotiationFailed):
            self.refusal = event.error
            self._drop()
        elif isinstance(event, ResumeFailed):
            log = self.log.warn if event.lost else self.log.info
            log(
                "The server could not resume the session of {jid}; binding a new one. "
                "{lost} stanzas sent before the link dropped may not have arrived",
                jid=self._account.domain,
                lost=event.lost,
            )

    def _authenticated(self, event: Authenticated) -> None:
        super()._authenticated(event)
        if not self._linked:
            return  # the service is stopping
        if isinstance(event, Resumed):
            self.log.info(
                "Resumed the session of {jid}; sent {count} stanzas again",
                jid=self._account.domain,
                count=event.resent,
            )
        else:
            self.log.info(
                "Session of {jid}: {tls}, {mechanism}, stream management {sm}",
                jid=str(self._client.jid),
                tls="TLS" if self._client.encrypted else "no TLS",
                mechanism=self._client.mechanism,
                sm="resumable" if self._sm.resumable else "on" if self._sm.active else "off",
            )
        self._account.session_started(str(self._client.jid), isinstance(event, Resumed))

    def _sent(self) -> None:
        super()._sent()
        self._unrequested += 1
        if self._unrequested >= self.ack_every:
            self._request_ack()

    def _keepalive(self) -> None:
        super()._keepalive()
        if self._unrequested:
            self._request_ack()

    def _request_ack(self) -> None:
        self._unrequested = 0
        self._client.request_ack()
        if not self._receiving:
            self._flush()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        # A stream that carried the session (it was READY) and was closed
        # by either side ended it on the server too; one refused before
        # that never touched it.
        closed = self._client.state in (State.DRAINING, State.CLOSING, State.CLOSED)
        ended = self._client.authenticated and closed
        lost = self._sm.stream_ended(cleanly=ended)
        # When we closed first and the server answered with its own close,
        # it had handled all we wrote before ours (RFC 6120 §4.4),
        # acknowledged or not.
        closed_by_us = self._closing and self._client.state is State.CLOSED
        if lost and not closed_by_us:
            self.log.error(
                "{count} stanzas sent by {jid} were not acknowledged by the server before "
                "the session ended: they may not have arrived",
                count=len(lost),
                jid=self._account.domain,
            )
        if self._linked and not self._closing and self._sm.state is SmState.SUSPENDED:
            # The next link resumes the session: what handlers send
            # meanwhile waits for it, rather than failing. As much as the
            # queue will take besides what it holds, the presence and the
            # roster request of a new session.
            self._linked = False
            self._account.suspend(max(0, self._sm.max_unacked - self._sm.unacked - 2))
        super().connectionLost(reason)


class _Backlog:
    """What was sent while the server was not reading: it waits in the
    transport's buffer (after what filled it) until the server reads."""

    def __init__(self) -> None:
        self.size = 0
        self.stanzas = 0
