"""Keeping a component connected: reconnection, backoff and clean shutdown.

:class:`ComponentService` is a :class:`ClientService` whose
``prepareConnection`` waits for the XEP-0114 handshake. A refused handshake
is not reported to ``ClientService`` as a failed preparation: it cannot
take one while the refused connection is still open, nor a disconnection
before the preparation has answered. The connection is handed over, then
lost, and this service counts the failure itself for its retry policy. So
``whenConnected`` fires when a handshake is over, not only when it
succeeded; use the ``Component`` (``connected``, ``send``) instead. Transient failures back off
exponentially with jitter; a permanent refusal (a wrong secret, a domain the
server does not know, a port that is not a component port) is explained once
per attempt with the likely fix, and waits the long permanent-error delay
instead of hammering the server. A link counts as a success only once it has
stayed up ``stable_after`` seconds: a server that accepts the handshake and
drops the link at once is backed off like one that refuses it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.application.internet import ClientService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionLost, DNSLookupError
from twisted.internet.interfaces import (
    IProtocol,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from empc._account import Account
from empc._component import Component
from empc._connection import (
    AccountProtocol,
    AccountTls,
    ComponentProtocol,
    HandshakeTimeout,
    LinkProtocol,
    LinkSettings,
)
from empc.protocol import (
    Conflict,
    HostUnknown,
    InvalidNamespace,
    NotAuthorized,
    StreamError,
    StreamManagement,
)
from empc.storage import Database


@dataclass(frozen=True)
class Backoff:
    """When to try again after a failed or lost connection.

    The n-th retry waits ``initial_delay * factor ** (n - 1)`` seconds, at
    most ``max_delay``, stretched by up to ``jitter`` (a fraction) so that
    many components do not reconnect in lockstep. After a permanent
    refusal, the wait is ``permanent_error_delay``; while another process
    serves the component (``conflict``), it is a steady ``standby_delay``,
    so that this one takes over soon after the other stops. A link lost less than
    ``stable_after`` seconds after its handshake is one more failure; one
    that stayed up longer starts the count again.
    """

    initial_delay: float = 1.0
    max_delay: float = 60.0
    factor: float = 2.0
    jitter: float = 0.5
    permanent_error_delay: float = 300.0
    stable_after: float = 60.0
    standby_delay: float = 5.0

    def delay(self, attempt: int, random: Callable[[], float] = random.random) -> float:
        exponent = min(max(0, attempt - 1), 64)  # past that, max_delay anyway
        base = min(self.max_delay, self.initial_delay * self.factor**exponent)
        return base * (1 + self.jitter * random())


def explain(error: BaseException, domain: str, *, account: bool = False) -> str:
    """The likely fix for a failed connection of a component (or an
    ``account``, whose ``domain`` is its bare JID), in plain words."""
    if account:
        if isinstance(error, HostUnknown):
            return (
                f"the server does not serve the domain of {domain} (host-unknown): check "
                "the JID and the endpoint"
            )
        if isinstance(error, InvalidNamespace):
            return (
                "the server refused the stream namespace (invalid-namespace): the endpoint "
                "is probably a component port (5347) rather than a client port (5222)"
            )
        if isinstance(error, Conflict):
            return (
                f"another connection logged in as {domain} with the same resource (conflict); "
                "retrying (two processes with one JID and resource replace each other)"
            )
    elif isinstance(error, NotAuthorized):
        return (
            f"the server refused the handshake for {domain} (not-authorized): the secret "
            "does not match the server's for this component (Prosody: component_secret "
            "in the Component section; ejabberd: password of the ejabberd_service listener)"
        )
    elif isinstance(error, HostUnknown):
        return (
            f"the server does not know the component domain {domain} (host-unknown): "
            f'declare it (Prosody: Component "{domain}"; ejabberd: hosts of the '
            "ejabberd_service listener)"
        )
    elif isinstance(error, InvalidNamespace):
        return (
            "the server refused the stream namespace (invalid-namespace): the endpoint "
            "is probably a client port (5222) rather than the component port (5347)"
        )
    elif isinstance(error, Conflict):
        return f"another connection already serves {domain} (conflict); retrying"
    if isinstance(error, DNSLookupError):
        return f"the server's host name does not resolve: check the endpoint ({error})"
    if isinstance(error, VerificationError | SSL.Error):
        return (
            "the server's TLS certificate is not valid for the name expected, or not signed by "
            "a trusted authority: check the endpoint's host= and trustRoots= (a component) "
            f"or the JID's domain and trust_roots (an account) ({error!r})"
        )
    return str(error) or type(error).__name__


def is_permanent(error: BaseException) -> bool:
    """Whether connecting again unchanged is pointless: a stream error, a
    refused password, a server without TLS or mechanisms we can use say
    so with ``permanent``. (A name that does not resolve is not: the
    resolver may not be ready yet at boot.)"""
    return getattr(error, "permanent", False) is True


class LinkService(ClientService):
    """Keeps one component or account connected to its server.

    Starting the service runs the handlers' ``start`` hooks, then connects;
    if a hook fails, ``on_start_failure`` is called (``twistd empc`` stops
    the process). Stopping the service closes the stream cleanly (``</stream:stream>``, a
    bounded wait for the server's own close) before the connection goes.
    ``on_link`` is called with True when a handshake succeeds and with
    False when that link is lost (``twistd empc`` tells systemd and the
    health endpoints); ``on_handshake_failure`` with the stream error
    condition of each refused handshake, or ``timeout`` for a handshake
    the server did not answer in time (``twistd empc`` counts them).

    :param connect: makes the protocol of each connection.
    """

    log = Logger()

    def __init__(
        self,
        component: Component,
        endpoint: IStreamClientEndpoint,
        connect: Callable[[], LinkProtocol],
        clock: IReactorTime,
        *,
        backoff: Backoff = Backoff(),
        random: Callable[[], float] = random.random,
        on_start_failure: Callable[[], object] = lambda: None,
        on_link: Callable[[bool], object] = lambda linked: None,
        on_handshake_failure: Callable[[str], object] = lambda condition: None,
    ) -> None:
        self.component = component
        self._on_link = on_link
        self._on_handshake_failure = on_handshake_failure
        self._clock = clock
        self._backoff = backoff
        self._random = random
        self._on_start_failure = on_start_failure
        self._last_error: BaseException | None = None
        self._failures = 0
        self._protocol: LinkProtocol | None = None
        super().__init__(
            _RecordingEndpoint(endpoint, self._failed),
            Factory.forProtocol(connect),
            retryPolicy=self._retry_delay,
            clock=clock,
            prepareConnection=self._handshake,
        )

    def startService(self) -> None:
        """Start the handlers, then connect once they all have started
        (unless the service was stopped meanwhile)."""
        self._stopping = False
        self.component.start().addCallbacks(self._started, self._start_failed)

    def _started(self, _: object) -> None:
        if not self._stopping:
            super().startService()

    def _start_failed(self, failure: Failure) -> None:
        self.log.failure(
            "A handler of {domain} failed to start; stopping", failure, domain=self.component.domain
        )
        self._on_start_failure()

    @property
    def send_queue(self) -> int:
        """Bytes sent on the live link that the server has not read yet."""
        return 0 if self._protocol is None else self._protocol.send_queue

    def stopService(self) -> Deferred[None]:
        self._stopping = True
        protocol = self._protocol
        if protocol is None:
            # No link: an account's session may be waiting to be resumed,
            # with stanzas held and requests pending; they end here.
            self.component.unlink(Failure(ConnectionLost("the service stopped")))
        closed = succeed(None) if protocol is None else protocol.close()
        if self.running:  # else the handlers never finished starting
            closed.addCallback(lambda _: super(LinkService, self).stopService())
        closed.addCallback(lambda _: self.component.stop())
        closed.addCallback(lambda _: None)
        return closed

    def _handshake(self, proxy: IProtocol) -> Deferred[None]:
        # ClientService hands over a proxy that forwards to our protocol.
        protocol = cast(LinkProtocol, proxy)
        return protocol.handshake_done.addCallback(lambda _: self._handshake_finished(protocol))

    def _handshake_finished(self, protocol: LinkProtocol) -> None:
        if protocol.refusal is not None:
            self._failed(Failure(protocol.refusal))
            return
        self._last_error = None
        self._protocol = protocol
        linked_at = self._clock.seconds()
        self._on_link(True)
        protocol.when_lost().addCallback(lambda _: self._lost(protocol, linked_at))

    def _lost(self, protocol: LinkProtocol, linked_at: float) -> None:
        """Judge a link that was up: it runs before the retry policy."""
        if self._protocol is protocol:
            self._protocol = None
        self._on_link(False)
        if self._stopping:
            return
        lasted = self._clock.seconds() - linked_at
        if lasted >= self._backoff.stable_after:
            self._failures = 0
            return
        # A server that takes the handshake and drops the link at once must
        # not be retried at the initial delay forever.
        self._failures += 1
        self.log.warn(
            "The link of {domain} lasted only {seconds:.1f} s; counting it as a failure",
            domain=self.component.domain,
            seconds=lasted,
        )

    def _failed(self, failure: Failure) -> Failure:
        error = failure.value
        assert error is not None
        if isinstance(error, CancelledError):  # the service is stopping
            return failure
        self._last_error = error
        self._failures += 1
        if isinstance(error, StreamError):
            self._on_handshake_failure(error.condition)
        elif isinstance(error, HandshakeTimeout):
            self._on_handshake_failure("timeout")
        if is_permanent(error):
            # Nothing comes back soon: an account's stanzas held for a
            # resumption, and its pending requests, end here.
            self.component.unlink(failure)
        if self._standing_by():
            if self._failures == 1:  # said once, not at every attempt
                self.log.info(
                    "Another process serves {domain}: standing by, trying every {delay} s",
                    domain=self.component.domain,
                    delay=self._backoff.standby_delay,
                )
            return failure
        log = self.log.error if is_permanent(error) else self.log.warn
        log(
            "Could not connect {domain}: {why}",
            domain=self.component.domain,
            why=explain(error, self.component.domain, account=isinstance(self.component, Account)),
        )
        return failure

    def _standing_by(self) -> bool:
        """Whether another connection serves the component (the server
        said ``conflict``: Prosody's default ``component_conflict_resolve``,
        ``kick_new``): then this one is a standby."""
        return isinstance(self._last_error, Conflict) and not isinstance(self.component, Account)

    def _retry_delay(self, attempt: int) -> float:
        # Our own count of consecutive failures, not ClientService's: a
        # refused handshake counts as a failure here, not there (so its own
        # "Scheduling retry" line may say 1 where this says more).
        if self._last_error is not None and is_permanent(self._last_error):
            delay = self._backoff.permanent_error_delay
        elif self._standing_by():
            return self._backoff.standby_delay * (1 + self._backoff.jitter * self._random())
        else:
            delay = self._backoff.delay(max(1, self._failures), self._random)
        self.log.info(
            "Next attempt for {domain} in {delay:.1f} seconds ({failures} failures in a row)",
            domain=self.component.domain,
            delay=delay,
            failures=self._failures,
        )
        return delay


class ComponentService(LinkService):
    """Keeps one component connected to its server (see :class:`LinkService`)."""

    def __init__(
        self,
        component: Component,
        endpoint: IStreamClientEndpoint,
        secret: str,
        clock: IReactorTime,
        *,
        link: LinkSettings = LinkSettings(),  # noqa: B008
        **options: Any,
    ) -> None:
        super().__init__(
            component,
            endpoint,
            lambda: ComponentProtocol(component, secret, clock, link),
            clock,
            **options,
        )


class AccountService(LinkService):
    """Keeps one account connected to its server (see :class:`LinkService`),
    and its stream management session (XEP-0198) across connections.

    :param tls: how the link is encrypted.
    :param max_unacked: how many stanzas may wait for the server's
        acknowledgement; more fail to send.
    """

    def __init__(
        self,
        account: Account,
        endpoint: IStreamClientEndpoint,
        password: str,
        clock: IReactorTime,
        *,
        tls: AccountTls,
        max_unacked: int = 1000,
        link: LinkSettings = LinkSettings(),  # noqa: B008
        **options: Any,
    ) -> None:
        session = StreamManagement(max_unacked)
        super().__init__(
            account,
            endpoint,
            lambda: AccountProtocol(
                account,
                password,
                clock,
                link,
                tls=tls,
                stream_management=session,
            ),
            clock,
            **options,
        )


@implementer(IStreamClientEndpoint)
class _RecordingEndpoint:
    """An endpoint that reports why a connection attempt failed, so that
    the retry policy can tell an unknown host from a refused connection."""

    def __init__(
        self, endpoint: IStreamClientEndpoint, failed: Callable[[Failure], Failure]
    ) -> None:
        self._endpoint = endpoint
        self._failed = failed

    def connect(self, factory: Factory) -> Deferred[IProtocol]:  # type: ignore[override]
        return self._endpoint.connect(factory).addErrback(self._failed)

    def __repr__(self) -> str:
        return repr(self._endpoint)


class StorageService(MultiService):
    """Opens the process's database (running its migrations) before its
    children start, and closes it once they have stopped: the components
    (under the pool of blocking actions) never run without it.

    If the database cannot be opened, the children never start, the error
    is logged and ``on_open_failure`` is called (``twistd empc`` stops
    the process).
    """

    log = Logger()

    def __init__(self, database: Database, on_open_failure: Callable[[], object]) -> None:
        super().__init__()
        self.database = database
        self._on_open_failure = on_open_failure
        self._children_started = False

    def startService(self) -> None:
        Service.startService(self)  # the children wait for the database
        self.database.open().addCallbacks(self._opened, self._open_failed)

    def _opened(self, _: object) -> None:
        if self.running:
            self._children_started = True
            for service in self:
                service.startService()

    def _open_failed(self, failure: Failure) -> None:
        self.log.error(
            "Cannot open the storage {url}: {why}; stopping",
            url=self.database.safe_url,
            why=str(failure.value),
        )
        self._on_open_failure()

    def stopService(self) -> Deferred[None]:
        stopped: Deferred[None]
        if self._children_started:
            self._children_started = False
            stopped = super().stopService()
        else:
            Service.stopService(self)
            stopped = succeed(None)
        return stopped.addCallback(lambda _: self.database.close())
