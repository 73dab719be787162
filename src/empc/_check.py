"""``empc check``: what ``twistd empc`` would run, without running it.

The components are built by the very code ``twistd empc`` starts with
(:func:`~empc._tap.build_services`), so a config that passes the check
fails at start-up only for what the check cannot see without connecting:
the server's answer to the handshake (or an account's log-in), which
:func:`try_handshake` (:func:`try_login`) asks for once on request, and
the database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from twisted.application.service import IServiceCollection
from twisted.internet.defer import Deferred, TimeoutError, gatherResults
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.python.failure import Failure

from empc._account import Account
from empc._component import Component
from empc._config import AccountConfig, ComponentConfig, Config
from empc._connection import AccountProtocol, ComponentProtocol, HandshakeTimeout, LinkProtocol
from empc._service import LinkService, StorageService, explain
from empc._tap import account_tls, build_services
from empc.protocol import (
    JID,
    AuthenticationFailed,
    Conflict,
    HostUnknown,
    InvalidNamespace,
    NotAuthorized,
    StreamManagement,
)


def built_components(config: Config, reactor: Any) -> tuple[list[Component], StorageService | None]:
    """The components (and the storage, if any) that ``twistd empc`` would
    start for ``config``: built, not started, connected to nothing.

    :raises twisted.python.usage.UsageError: with the message start-up
        gives for a component or a storage the config cannot build.
    """
    root = build_services(config, reactor)
    services = [root, *_services(root)]  # the storage may be the root or beside a listener
    storage = next((s for s in services if isinstance(s, StorageService)), None)
    return [s.component for s in services if isinstance(s, LinkService)], storage


def _services(collection: IServiceCollection) -> Iterator[object]:
    for service in collection:
        yield service
        if IServiceCollection.providedBy(service):
            yield from _services(service)


def describe(config: Config, components: list[Component], storage: StorageService | None) -> str:
    """What would run, for a person to read: each component with its
    server, handlers and routes (in the order they are tried), then the
    storage, the access lists and every limit."""
    lines = [f"config: {config.path}"]
    servers = {c.domain: c.server for c in config.components}
    servers |= {str(JID.parse(a.jid).bare): a.server for a in config.accounts}
    for component in components:
        kind = "account" if isinstance(component, Account) else "component"
        lines += [
            f"{kind} {component.domain}",
            f"  server: {servers[component.domain]}",
            f"  identity: {'/'.join(component.identity)}",
            "  handlers:",
        ]
        lines += [f"    {type(h).__module__}:{type(h).__qualname__}" for h in component.handlers]
        lines.append("  routes (the first match wins):")
        lines += [
            f"    {number:3}. {route.describe()}"
            for number, route in enumerate(component.router.routes, 1)
        ]
    if storage is None:
        lines.append("storage: none")
    else:
        database = storage.database
        lines.append(f"storage: {database.safe_url}")
        lines += [f"  schema {schema.name}" for schema in database.schemas]
    lines.append("access lists:" if config.access_lists else "access lists: none")
    lines += [f"  {name}: {', '.join(jids)}" for name, jids in config.access_lists.items()]
    lines.append(f"action timeout: {config.action_timeout} s")
    for title, settings in (("link", config.link), ("load", config.limits)):
        lines.append(f"{title}:")
        lines += [f"  {f.name}: {getattr(settings, f.name)}" for f in dataclasses.fields(settings)]
    lines.append("reconnect:")
    lines += [
        f"  {f.name}: {getattr(config.backoff, f.name)}" for f in dataclasses.fields(config.backoff)
    ]
    return "\n".join(lines)


def try_handshake(
    component_config: ComponentConfig,
    config: Config,
    endpoint: IStreamClientEndpoint,
    clock: IReactorTime,
    timeout: float,
) -> Deferred[str]:
    """Connect once to ``endpoint`` as ``component_config``'s component,
    run the XEP-0114 handshake, and close the stream at once if it
    succeeds. The component has no handlers: a stanza the server sends
    meanwhile runs nothing.

    :returns: a Deferred that fires, once the connection is gone (or was
        never made), with the server's answer in plain words: ``accepted``,
        or why not (``not-authorized: the secret is wrong``, ``connection
        refused``, ``timed out`` after ``timeout`` seconds of connecting or
        of waiting for the handshake...). It never fails.
    """
    domain = component_config.domain
    settings = dataclasses.replace(config.link, handshake_timeout=timeout)
    protocol = ComponentProtocol(
        Component(domain, [], clock), component_config.secret.reveal(), clock, settings
    )
    return _try(protocol, domain, endpoint, clock, timeout)


def try_login(
    account_config: AccountConfig,
    config: Config,
    endpoint: IStreamClientEndpoint,
    clock: IReactorTime,
    timeout: float,
) -> Deferred[str]:
    """As :func:`try_handshake`, for an account: TLS as configured, SASL
    and resource binding, then the stream is closed at once (no presence
    is sent: the account's contacts see nothing)."""
    settings = dataclasses.replace(config.link, handshake_timeout=timeout)
    account = Account(account_config.jid, [], clock, announce=False)
    protocol = AccountProtocol(
        account,
        account_config.password.reveal(),
        clock,
        settings,
        tls=account_tls(account_config),
        stream_management=StreamManagement(),
    )
    return _try(protocol, account.domain, endpoint, clock, timeout)


def _try(
    protocol: LinkProtocol,
    name: str,
    endpoint: IStreamClientEndpoint,
    clock: IReactorTime,
    timeout: float,
) -> Deferred[str]:
    account = isinstance(protocol, AccountProtocol)
    connecting: Deferred[Any] = connectProtocol(endpoint, protocol)
    connecting.addTimeout(timeout, clock)

    def connected(_: object) -> Deferred[str]:
        return protocol.handshake_done.addCallback(lambda _: handshake_over())

    def handshake_over() -> Deferred[str] | str:
        if protocol.refusal is not None:
            return answer_in_words(protocol.refusal, name, account=account)
        return protocol.close().addCallback(lambda _: "accepted")

    def not_connected(failure: Failure) -> str:
        assert failure.value is not None
        return answer_in_words(failure.value, name, account=account)

    return connecting.addCallbacks(connected, not_connected)


def answer_in_words(error: BaseException, domain: str, *, account: bool = False) -> str:
    """Why a handshake (an ``account``'s log-in) with the server did not
    succeed, in a few words."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError | HandshakeTimeout):
        return "timed out"
    if isinstance(error, AuthenticationFailed):
        return str(error)
    if account:
        return explain(error, domain, account=True)
    if isinstance(error, NotAuthorized):
        return "not-authorized: the secret is wrong"
    if isinstance(error, HostUnknown):
        return f"host-unknown: the server has no component named {domain}"
    if isinstance(error, InvalidNamespace):
        return "invalid-namespace: this is not a component port (a client port?)"
    if isinstance(error, Conflict):
        return f"conflict: another connection already serves {domain}"
    return explain(error, domain)


def try_handshakes(
    config: Config,
    reactor: Any,
    timeout: float,
    endpoint: Callable[[Any, str], IStreamClientEndpoint] = clientFromString,
) -> Deferred[list[str]]:
    """:func:`try_handshake` for every component of ``config`` and
    :func:`try_login` for every account at once, each on the endpoint its
    ``server`` describes.

    :returns: a Deferred that fires, once every connection is gone, with
        the server's answers in the order of the components, then of the
        accounts.
    """
    tries = [
        try_handshake(c, config, endpoint(reactor, c.server), reactor, timeout)
        for c in config.components
    ]
    tries += [
        try_login(a, config, endpoint(reactor, a.server), reactor, timeout) for a in config.accounts
    ]
    return gatherResults(tries)
