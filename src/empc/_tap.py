"""``twistd empc``: options and the service tree built from the config."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, Protocol

from cryptography import x509
from OpenSSL import crypto
from prometheus_client import CollectorRegistry
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.error import ReactorNotRunning
from twisted.internet.ssl import (
    Certificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python import usage

from empc._account import Account
from empc._component import Component
from empc._config import (
    LOG_FORMATS,
    AccountConfig,
    ComponentConfig,
    Config,
    ConfigError,
    StorageConfig,
    load_config,
)
from empc._connection import AccountTls
from empc._metrics import Health, MetricsEndpoint, metrics_site
from empc._service import AccountService, ComponentService, LinkService, StorageService
from empc._systemd import notifier_from_environ
from empc._threads import ActionThreads
from empc.handlers import builtin_handlers
from empc.protocol import JID
from empc.routing import Handler, Tally, ThreadRunner
from empc.storage import Database, Runner, StorageError, schemas_of

log = Logger()


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = "Run the XMPP components described by a YAML config file."
    optParameters: ClassVar = [
        ["config", "c", "config.yaml", "The config file."],
        ["log-format", None, None, "text, or json: one object per line (default: the config's)."],
    ]

    def postOptions(self) -> None:
        try:
            self["parsed"] = load_config(self["config"])
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        log_format = self["log-format"] or self["parsed"].log_format
        if log_format not in LOG_FORMATS:
            raise usage.UsageError(f"--log-format: expected text or json, got {log_format!r}")
        if log_format == "json" and self.parent is not None:
            _log_json(self.parent)


def _log_json(twistd: usage.Options) -> None:
    """Have twistd log JSON lines to standard output (journald, a container
    runtime or a log shipper reads them there).

    twistd resolves its ``--logger`` observer factory once its options are
    parsed, after these: naming the factory here is in time.

    :raises usage.UsageError: with ``--logger`` or ``--syslog``, which
        choose another observer, and for a daemon or a ``--logfile``, which
        would not see standard output.
    """
    if twistd.get("logger") or twistd.get("syslog"):
        raise usage.UsageError("--log-format json cannot be combined with --logger or --syslog")
    if not twistd.get("nodaemon") or twistd.get("logfile") not in (None, "", "-"):
        raise usage.UsageError(
            "--log-format json writes to standard output: run twistd with --nodaemon"
            " and without --logfile"
        )
    twistd["logger"] = "empc._logging.stdout_observer"


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    config: Config = options["parsed"]
    services = build_services(config, reactor, os.environ)
    shutdown = Shutdown(reactor, list(components_of(services)), config.link.grace)
    reactor.addSystemEventTrigger("after", "startup", shutdown.install)
    return services


class Shutdown:
    """What SIGTERM (and SIGINT, Ctrl-C) does.

    The first stops the reactor, and the services drain: each component
    takes no new stanza, its actions in flight get ``grace`` seconds to
    finish and send their replies, then its stream is closed cleanly, and
    the process exits 0. (Installed in place of twistd's own handler,
    which re-raises SIGTERM on the process once it has shut down, so a
    service manager would record a clean stop as "killed by a signal".)
    A second signal exits at once with status 1, saying on standard error
    how many actions it abandoned.

    The signal handler itself only hands the first signal to the reactor
    thread: it may interrupt the logging or any other code, which it must
    not enter. For the second, it counts, writes one line with ``write``
    (unbuffered) and calls ``exit``, which must not return to that code
    either.
    """

    def __init__(
        self,
        reactor: Any,
        components: Iterable[Component],
        grace: float,
        write: Callable[[bytes], object] = lambda data: os.write(2, data),
        exit: Callable[[], object] = lambda: os._exit(1),
    ) -> None:
        self._reactor = reactor
        self._components = list(components)
        self._grace = grace
        self._write = write
        self._exit = exit
        self._stopping = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.terminate)
        signal.signal(signal.SIGINT, self.terminate)

    def terminate(self, signum: int = signal.SIGTERM, frame: object = None) -> None:
        if not self._stopping:
            self._stopping = True
            self._reactor.callFromThread(self._stop, signal.Signals(signum).name)
            return
        name, abandoned = signal.Signals(signum).name, self._in_flight()
        self._write(f"{name} again: exiting at once, abandoning {abandoned} actions\n".encode())
        self._exit()

    def _in_flight(self) -> int:
        return sum(component.router.unanswered for component in self._components)

    def _stop(self, name: str) -> None:
        log.info(
            "{signal}: stopping; {count} actions in flight get up to {grace} seconds "
            "({signal} again to exit at once)",
            signal=name,
            count=self._in_flight(),
            grace=self._grace,
        )
        with contextlib.suppress(ReactorNotRunning):  # already stopping, for another reason
            self._reactor.stop()


def components_of(service: IService) -> Iterator[Component]:
    """The components under ``service``, in the order they were added."""
    if isinstance(service, LinkService):
        yield service.component
    elif isinstance(service, MultiService):
        for child in service:
            yield from components_of(child)


def _exit_after_failed_start(reactor: Any) -> None:
    """Stop, and exit with status 1 so that a service manager sees the
    failure. A hook may fail before the reactor runs: stop it once it does."""
    if getattr(reactor, "_empc_failed", False):
        return
    reactor._empc_failed = True
    reactor.addSystemEventTrigger("after", "shutdown", _exit_status_1)
    reactor.callWhenRunning(reactor.stop)


def _exit_status_1() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def build_services(
    config: Config, reactor: Any, environ: Mapping[str, str] | None = None
) -> MultiService:
    """One :class:`ComponentService` per component of ``config``, children
    of the thread pool for blocking actions, which stops after them; with
    a database, the pool is the child of a :class:`StorageService`, which
    opens the database before and closes it after. When ``environ`` names
    systemd's ``NOTIFY_SOCKET``, all of that and a
    :class:`~empc._systemd.SystemdNotifier` told of every link are the
    children of one more service; so are they, after the HTTP listener of
    ``/healthz``, ``/readyz`` and ``/metrics`` (a registry of its own),
    when the config has a ``metrics`` section.

    :raises usage.UsageError: for a component the config cannot build.
    """
    threads = ActionThreads(reactor, config.limits.threads, config.link.grace)
    tally = None if config.metrics_listen is None else Tally
    # Each component and account: its name, what serves it, and how to
    # make its service once the listeners of its link are known.
    built: list[tuple[str, Component, Callable[..., LinkService]]] = []
    for component_config in config.components:
        name = component_config.domain
        try:
            component = build_component(component_config, config, reactor, threads.run, tally)
            endpoint = clientFromString(reactor, component_config.server)
        except Exception as e:
            raise usage.UsageError(f"{config.path}: component {name}: {e}") from None
        secret = component_config.secret.reveal()
        make: Callable[..., LinkService] = functools.partial(
            ComponentService, component, endpoint, secret, reactor, link=config.link
        )
        built.append((name, component, make))
    for account_config in config.accounts:
        name = account_config.jid
        try:
            account = build_account(account_config, config, reactor, threads.run, tally)
            name = account.domain  # its bare JID: the resource may change with each session
            endpoint = clientFromString(reactor, account_config.server)
            tls = account_tls(account_config)
        except Exception as e:
            raise usage.UsageError(f"{config.path}: account {name}: {e}") from None
        make = functools.partial(
            AccountService,
            account,
            endpoint,
            account_config.password.reveal(),
            reactor,
            tls=tls,
            link=config.link,
        )
        built.append((name, account, make))
    try:
        database = build_database(config, [component for _, component, _ in built], reactor)
    except (StorageError, ValueError) as e:
        raise usage.UsageError(f"{config.path}: storage: {e}") from None
    notifier = notifier_from_environ(
        environ or {}, [name for name, _, _ in built], reactor, config.ready_timeout
    )
    health = None if config.metrics_listen is None else Health(CollectorRegistry(), database)
    listeners = [listener for listener in (notifier, health) if listener is not None]
    for name, _, make_service in built:
        service = make_service(
            backoff=config.backoff,
            on_start_failure=lambda: _exit_after_failed_start(reactor),
            on_link=functools.partial(_tell_link, listeners, name),
            on_handshake_failure=(
                (lambda condition: None)
                if health is None
                else functools.partial(health.handshake_failed, name)
            ),
        )
        if health is not None:
            health.add_component(service)
        service.setServiceParent(threads)
    root: MultiService = threads
    if database is not None:
        root = StorageService(database, lambda: _exit_after_failed_start(reactor))
        threads.setServiceParent(root)
    if notifier is None and health is None:
        return root
    top = MultiService()
    if health is not None:
        # First, beside the storage: it answers while the database opens,
        # and goes on answering until the components have stopped.
        assert config.metrics_listen is not None
        endpoint = MetricsEndpoint(
            serverFromString(reactor, config.metrics_listen),
            config.metrics_listen,
            lambda: _exit_after_failed_start(reactor),
        )
        listener = StreamServerEndpointService(endpoint, metrics_site(health))
        listener.setServiceParent(top)
    root.setServiceParent(top)
    if notifier is not None:
        # Beside the storage, not under it: the watchdog beats while the
        # database opens. Last, so that it is the first to hear of a stop.
        notifier.setServiceParent(top)
    return top


class _LinkListener(Protocol):
    def link_changed(self, domain: str, linked: bool) -> None: ...


def _tell_link(listeners: Iterable[_LinkListener], domain: str, linked: bool) -> None:
    """Tell each of ``listeners`` (systemd, the health endpoints) that
    ``domain``'s link went up or down."""
    for listener in listeners:
        listener.link_changed(domain, linked)


def build_database(
    config: Config, components: Iterable[Component], clock: Any, runner: Runner | None = None
) -> Database | None:
    """The database of ``config``'s ``storage`` section, with the schemas the
    components' handlers declare, given to each component as ``storage``
    (not opened). Without a ``storage`` section: None, unless a handler
    declares schemas (then SQLite in the working directory).

    :raises StorageError: for a url of an unsupported kind.
    :raises ValueError: for two different schemas of the same name.
    """
    components = list(components)
    schemas = schemas_of(handler for component in components for handler in component.handlers)
    settings = config.storage
    if settings is None:
        if not schemas:
            return None
        settings = StorageConfig()
    database = Database(
        settings.url,
        pool_size=settings.pool_size,
        timeout=settings.timeout,
        max_waiting=settings.max_waiting,
        clock=clock,
        runner=runner,
        password=None if settings.password is None else settings.password.reveal(),
    )
    for schema in schemas:
        database.add_schema(schema)
    for component in components:
        component.storage = database
    return database


def build_component(
    component_config: ComponentConfig,
    config: Config,
    clock: Any,
    threads: ThreadRunner | None,
    tally: Callable[[], Tally] | None = None,
) -> Component:
    """The component a config entry describes, built-in handlers last so
    that the component's own routes win at equal priority; ``tally``
    makes what counts its traffic for the metrics.

    :raises ValueError: for routes the component cannot serve (an access
        rule naming an unknown list, for instance).
    """
    component = Component(
        component_config.domain,
        _with_builtins(component_config, account=False),
        clock,
        server_domain=component_config.server_domain,
        **_served_options(component_config, config, threads, tally),
    )
    _log_routes(component)
    return component


def build_account(
    account_config: AccountConfig,
    config: Config,
    clock: Any,
    threads: ThreadRunner | None,
    tally: Callable[[], Tally] | None = None,
) -> Account:
    """The account a config entry describes, as :func:`build_component`
    builds a component.

    :raises ValueError: as :func:`build_component`.
    """
    account = Account(
        account_config.jid,
        _with_builtins(account_config, account=True),
        clock,
        subscriptions=account_config.subscriptions,
        presence=dataclasses.asdict(account_config.presence),
        **_served_options(account_config, config, threads, tally),
    )
    _log_routes(account)
    return account


def _with_builtins(served: ComponentConfig | AccountConfig, *, account: bool) -> list[Handler]:
    """The handlers of a config entry, then the built-ins it enables."""
    handlers: list[Handler] = list(served.handlers)
    enabled = served.builtins.get
    return handlers + builtin_handlers(
        handlers, lambda name: enabled(name, True), served.builtin_config, account=account
    )


def _served_options(
    served: ComponentConfig | AccountConfig,
    config: Config,
    threads: ThreadRunner | None,
    tally: Callable[[], Tally] | None,
) -> dict[str, Any]:
    """What a component and an account are built with alike."""
    return {
        "action_timeout": config.action_timeout,
        "identity": served.identity,
        "limits": config.limits,
        "access_lists": config.access_lists,
        "threads": threads,
        "tally": None if tally is None else tally(),
    }


def _log_routes(component: Component) -> None:
    for route in component.router.routes:
        log.info("Route of {domain}: {route}", domain=component.domain, route=route.describe())


def account_tls(account_config: AccountConfig) -> AccountTls:
    """How an account's link is encrypted, as its config says: STARTTLS
    verifying that the server's certificate names the JID's domain (RFC
    6125, by service_identity) and is signed by one of ``trust_roots``
    (the system's trust store if none), required or not; or direct TLS,
    which its ``tls:`` endpoint verifies."""
    domain = JID.parse(account_config.jid).domain
    if account_config.trust_roots is None:
        trust = platformTrust()
    else:
        with open(account_config.trust_roots, "rb") as pem:
            authorities = x509.load_pem_x509_certificates(pem.read())
        roots = [Certificate(crypto.X509.from_cryptography(ca)) for ca in authorities]
        trust = trustRootFromCertificates(roots)
    return AccountTls(
        optionsForClientTLS(domain, trustRoot=trust),
        required=account_config.tls == "required",
        direct=account_config.direct_tls,
    )
