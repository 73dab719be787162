"""The config file: YAML, checked up front, every error naming key and line.

Reference (every key is optional, but ``components`` or ``accounts`` must
list one entry at least)::

    components:                      # one entry per component domain
      - domain: echo.example.org     # the component's JID
        server: tcp:host=127.0.0.1:port=5347   # a Twisted client endpoint
        secret: s3cret               # or secret_file: /etc/empc/echo.secret
        secret_env: EMPC_SECRET      # this variable, when set, wins
        server_domain: example.org   # the server's host that grants privileges and
                                     # delegates (default: the domain's parent)
        identity: {category: component, type: generic, name: empc}
        builtins: {ping: true, disco: true, version: true, commands: true}
                                     # or a built-in's config: commands: {idle_timeout: 300}
        handlers:
          - mypackage.module:Handler
          - class: mypackage.module:Other
            config: {any: mapping}
    accounts:                        # one entry per client account (c2s)
      - jid: bot@example.org/empc    # a bare JID gets the resource empc-<8 random hex>
        password: s3cret             # or password_file: /etc/empc/bot.password
        password_env: EMPC_BOT_PASSWORD   # this variable, when set, wins (no default)
        server: tcp:host=example.org:port=5222   # a Twisted client endpoint (default:
                                     # the JID's domain, port 5222); a tls: endpoint is
                                     # direct TLS (XEP-0368), without STARTTLS
        tls: required                # required: STARTTLS or refuse; optional: when offered
        trust_roots: /etc/empc/ca.pem   # PEM file of the CAs that may sign the server's
                                     # certificate (default: the system's trust store)
        presence: {show: chat, status: At your service, priority: 0}
                                     # show: away, chat, dnd or xa; priority: -128 to 127
        subscriptions: all           # who may subscribe to its presence: all, none,
                                     # a list of bare JIDs, domains and list:NAME, or
                                     # handler (the handlers' presence routes decide)
        identity: {category: client, type: bot, name: empc}
        builtins: {ping: true}       # as for a component
        handlers: [mypackage.module:Handler]   # as for a component
    access_lists:                    # named lists for access rules: list:admins
      admins: [alice@example.org, example.net]
    limits:
      max_stanza_size: 524288        # bytes
      max_depth: 64                  # nested elements in a stanza (1 to 200)
      action_timeout: 30             # seconds an IQ action may take
      grace: 10                      # seconds the actions running when a stream
                                     # ends (SIGTERM, the server's close) get
      close_timeout: 5               # seconds a closing stream waits for the
                                     # server's own close
      max_in_flight: 1000            # actions running at once, per component
      rate: 0                        # stanzas/second per sender; 0: no limit
      burst: 10                      # stanzas a sender may send at once
      threads: 10                    # thread pool for blocking actions
      blocking_queue: 100            # blocking actions waiting for a thread
      max_send_queue: 4194304        # bytes sent while the server does not
                                     # read; past them, sends fail
    keepalive:
      interval: 60                   # whitespace after this many idle seconds
      ping_interval: 300             # XEP-0199 ping to the server
      ping_timeout: 60               # no answer: drop and reconnect
      ping_target: example.org       # default: the component's server_domain
    reconnect:
      initial_delay: 1
      max_delay: 60
      permanent_error_delay: 300     # after a wrong secret, an unknown domain
      stable_after: 60               # a link lost sooner counts as a failure
      standby_delay: 5               # while another process serves the component
                                     # (conflict): how often this one tries
    storage:                         # the handlers' database; when absent, none,
                                     # unless a handler declares schemas: then
                                     # sqlite:///empc.sqlite3 (working directory)
      url: sqlite:///var/lib/empc/state.sqlite3   # or postgresql://user@host:5432/db
      password_file: /etc/empc/db.password        # PostgreSQL's password, or
      password_env: EMPC_DB_PASSWORD              # this variable, when set, wins
      pool_size: 5                   # connections (and threads) at most
      timeout: 10                    # seconds for a connection, a pool wait, a statement
      max_waiting: 100               # calls waiting for a connection; more: wait errors
    logging:
      format: text                   # or json: one object per line (twistd --log-format)
      debug: false                   # true: every stanza in and out, at debug level,
                                     # with passwords and message texts masked
    systemd:                         # used only under Type=notify ($NOTIFY_SOCKET)
      ready_timeout: 30              # seconds before READY=1 even if a link is down
    metrics:                         # when present: /healthz, /readyz and /metrics over HTTP
      listen: tcp:9180:interface=127.0.0.1   # a Twisted server endpoint
"""

from __future__ import annotations

import importlib
import math
import os
import secrets
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

import yaml
from cryptography import x509
from twisted.internet.endpoints import clientFromString, quoteStringArgument, serverFromString

from empc._account import SUBSCRIPTION_POLICIES
from empc._connection import LinkSettings
from empc._service import Backoff
from empc.handlers import BUILTINS
from empc.protocol import JID, InvalidJID
from empc.routing import AccessRule, Handler, Limits
from empc.storage import StorageError, parse_url

DEFAULT_SERVER = "tcp:host=127.0.0.1:port=5347"
DEFAULT_SECRET_ENV = "EMPC_SECRET"
DEFAULT_CLIENT_PORT = 5222
RESOURCE_PREFIX = "empc-"
# The endpoints an account may use: STARTTLS over tcp: or unix:, or tls:.
ACCOUNT_ENDPOINTS = ("tcp", "unix", "tls")
TLS_POLICIES = ("required", "optional")
PRESENCE_SHOWS = ("away", "chat", "dnd", "xa")
DEFAULT_STORAGE_URL = "sqlite:///empc.sqlite3"
DEFAULT_METRICS_LISTEN = "tcp:9180:interface=127.0.0.1"
LOG_FORMATS = ("text", "json")
HANDLER_ENTRY_POINTS = "empc.handlers"

# lxml refuses deeper documents itself (at 256); stay clear of its limit.
MAX_DEPTH = 200

T = TypeVar("T")


class ConfigError(Exception):
    """The config is wrong; the message names the file, key and line."""


class Secret:
    """A secret that never shows itself in a repr, a log or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


@dataclass(frozen=True)
class ComponentConfig:
    domain: str
    server: str
    secret: Secret
    handlers: list[Handler]
    identity: tuple[str, str, str] = ("component", "generic", "empc")
    builtins: Mapping[str, bool] = field(default_factory=dict)
    builtin_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    server_domain: str | None = None


@dataclass(frozen=True)
class PresenceConfig:
    """The presence an account sends once online."""

    show: str | None = None
    """One of :data:`PRESENCE_SHOWS`; None: plainly available."""
    status: str | None = None
    priority: int = 0
    """-128 to 127."""


@dataclass(frozen=True)
class AccountConfig:
    jid: str
    """A full JID: the domain in lower case, a resource always (one of
    ``empc-`` and 8 random hex digits when the config gives a bare JID)."""
    password: Secret
    server: str
    handlers: list[Handler]
    tls: str = "required"
    """One of :data:`TLS_POLICIES`."""
    trust_roots: str | None = None
    """A PEM file of CAs; None: the system's trust store."""
    presence: PresenceConfig = PresenceConfig()
    subscriptions: str | tuple[str, ...] = "all"
    """One of :data:`SUBSCRIPTION_POLICIES`, or the bare JIDs, domains and
    ``list:NAME`` entries whose subscriptions are approved."""
    identity: tuple[str, str, str] = ("client", "bot", "empc")
    builtins: Mapping[str, bool] = field(default_factory=dict)
    builtin_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def direct_tls(self) -> bool:
        """Whether ``server`` starts TLS itself (a ``tls:`` endpoint)."""
        return _endpoint_kind(self.server) == "tls"


@dataclass(frozen=True)
class StorageConfig:
    """The ``storage`` section: what :class:`~empc.storage.Database` takes."""

    url: str = DEFAULT_STORAGE_URL
    password: Secret | None = None
    pool_size: int = 5
    timeout: float = 10.0
    max_waiting: int = 100


@dataclass(frozen=True)
class Config:
    path: str
    components: list[ComponentConfig]
    link: LinkSettings
    backoff: Backoff
    action_timeout: float
    limits: Limits = Limits()  # noqa: RUF009
    access_lists: Mapping[str, list[str]] = field(default_factory=dict)
    storage: StorageConfig | None = None
    """None when the file has no ``storage`` section."""
    log_format: str = "text"
    """One of :data:`LOG_FORMATS`; ``twistd empc --log-format`` wins."""
    ready_timeout: float = 30.0
    """Seconds after which systemd hears ``READY=1`` even if a link is down."""
    metrics_listen: str | None = None
    """The server endpoint of the HTTP listener; None without a ``metrics`` section."""
    accounts: list[AccountConfig] = field(default_factory=list)


def load_config(path: str, environ: Mapping[str, str] = os.environ) -> Config:
    """Read and check the config file at ``path``.

    :raises ConfigError: naming the file, the key path and the line of the
        first problem found.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_describe_yaml_error(e)}") from None
    root = _Section(path, "", data if data is not None else {}, node)
    return _read_config(root, environ)


def _read_config(root: _Section, environ: Mapping[str, str]) -> Config:
    limits = root.section("limits")
    keepalive = root.section("keepalive")
    reconnect = root.section("reconnect")
    logging = root.section("logging")
    link = LinkSettings(
        max_stanza_size=limits.integer("max_stanza_size", 512 * 1024, minimum=1024),
        max_depth=limits.integer("max_depth", 64, minimum=1, maximum=MAX_DEPTH),
        keepalive_interval=keepalive.number("interval", 60.0),
        ping_interval=keepalive.number("ping_interval", 300.0),
        ping_timeout=keepalive.number("ping_timeout", 60.0, minimum=0.1),
        ping_target=_read_jid(keepalive, "ping_target"),
        grace=limits.number("grace", 10.0, minimum=0),
        close_timeout=limits.number("close_timeout", 5.0, minimum=0.1),
        max_send_queue=limits.integer("max_send_queue", 4 * 1024 * 1024, minimum=1024),
        log_stanzas=logging.boolean("debug", False),
    )
    action_timeout = limits.number("action_timeout", 30.0, minimum=0.001)
    rate = limits.number("rate", 0.0)
    load = Limits(
        max_in_flight=limits.integer("max_in_flight", 1000, minimum=1),
        rate=rate or None,
        burst=limits.integer("burst", 10, minimum=1),
        threads=limits.integer("threads", 10, minimum=1),
        blocking_queue=limits.integer("blocking_queue", 100, minimum=0),
    )
    access_lists = _read_access_lists(root)
    backoff = Backoff(
        initial_delay=reconnect.number("initial_delay", 1.0, minimum=0.01),
        max_delay=reconnect.number("max_delay", 60.0, minimum=0.01),
        permanent_error_delay=reconnect.number("permanent_error_delay", 300.0, minimum=0.01),
        stable_after=reconnect.number("stable_after", 60.0),
        standby_delay=reconnect.number("standby_delay", 5.0, minimum=0.01),
    )
    storage = _read_storage(root, environ)
    log_format = logging.string("format", "text")
    if log_format not in LOG_FORMATS:
        raise logging.error("format", f"expected text or json, got {log_format!r}")
    systemd = root.section("systemd")
    ready_timeout = systemd.number("ready_timeout", 30.0)
    metrics_listen = _read_metrics(root)
    components = [_read_component(entry, environ) for entry in root.sections("components")]
    accounts = [_read_account(entry, environ, access_lists) for entry in root.sections("accounts")]
    if not components and not accounts:
        given = [key for key in ("components", "accounts") if key in root.data]
        raise root.error(
            given[0] if given else "components",
            f"{'empty' if given else 'missing'}: list at least one component under"
            " components or one account under accounts",
        )
    for section in (limits, keepalive, reconnect, logging, systemd, root):
        section.refuse_unknown()
    return Config(
        root.path,
        components,
        link,
        backoff,
        action_timeout,
        load,
        access_lists,
        storage,
        log_format=log_format,
        ready_timeout=ready_timeout,
        metrics_listen=metrics_listen,
        accounts=accounts,
    )


def _read_metrics(root: _Section) -> str | None:
    if "metrics" not in root.data:
        return None
    section = root.section("metrics")
    listen = _read_endpoint(section, "listen", DEFAULT_METRICS_LISTEN, serverFromString, "server")
    section.refuse_unknown()
    return listen


def _read_endpoint(
    section: _Section, key: str, default: str, parse: Callable[[Any, str], object], kind: str
) -> str:
    """The endpoint description at ``key``, checked by ``parse`` (Twisted's
    ``serverFromString`` or ``clientFromString``); one it refuses is an
    error naming ``key`` and the ``kind`` of endpoint expected."""
    description = section.string(key, default)
    try:
        # Parsing builds the endpoint object only; the reactor is used once
        # it listens or connects, so none is needed to check the string
        # (Twisted warns that a name resolver will be wanted: not here).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            parse(None, description)
    except Exception as e:
        raise section.error(key, f"not a {kind} endpoint: {type(e).__name__}: {e}") from None
    return description


def _read_storage(root: _Section, environ: Mapping[str, str]) -> StorageConfig | None:
    if root.data.get("storage") is None:
        root.used.add("storage")
        return None
    section = root.section("storage")
    url = section.string("url", DEFAULT_STORAGE_URL)
    try:
        parsed = parse_url(url)
    except StorageError as e:
        raise section.error("url", str(e)) from None
    if parsed.password is not None:
        raise section.error(
            "url", "holds a password: give it in password_file or password_env instead"
        )
    if parsed.get_backend_name() == "sqlite":
        for key in ("password_file", "password_env"):
            if key in section.data:
                raise section.error(key, "a SQLite database takes no password")
    password = _read_password(section, environ)
    config = StorageConfig(
        url=url,
        password=password,
        pool_size=section.integer("pool_size", 5, minimum=1, maximum=1000),
        timeout=section.number("timeout", 10.0, minimum=0.1),
        max_waiting=section.integer("max_waiting", 100, minimum=0),
    )
    section.refuse_unknown()
    return config


def _read_password(section: _Section, environ: Mapping[str, str]) -> Secret | None:
    """The database password: the variable ``password_env`` names when it is
    set, else the content of ``password_file``, else none."""
    variable = section.optional_string("password_env")
    password_file = section.optional_string("password_file")
    if variable is not None and environ.get(variable):
        return Secret(environ[variable])
    if password_file is not None:
        return _read_secret_file(section, "password_file", password_file)
    if variable is not None:
        raise section.error("password_env", f"the environment variable {variable} is not set")
    return None


def _read_jid(section: _Section, key: str) -> str | None:
    text = section.optional_string(key)
    if text is not None:
        _parse_jid(section, key, text)
    return text


def _parse_jid(section: _Section, key: str, text: str) -> JID:
    """``text`` as a JID; an invalid one is an error naming ``key``."""
    try:
        return JID.parse(text)
    except InvalidJID as e:
        raise section.error(key, str(e)) from None


def _read_access_lists(root: _Section) -> dict[str, list[str]]:
    section = root.section("access_lists")
    lists = {}
    for name in list(section.data):
        entries = [entry for _, entry in section.items(name)]
        for index, entry in enumerate(entries):
            where = f"{name}[{index}]"
            if not isinstance(entry, str):
                raise section.error(where, "expected a JID or a domain")
            _parse_jid(section, where, entry)
        lists[str(name)] = entries
    return lists


def _read_component(section: _Section, environ: Mapping[str, str]) -> ComponentConfig:
    domain_text = section.string("domain")
    domain = _parse_jid(section, "domain", domain_text)
    if domain.local or domain.resource:
        raise section.error("domain", f"a component JID is a bare domain, not {domain_text!r}")
    secret = _read_secret(section, environ, "secret", DEFAULT_SECRET_ENV)
    server_domain = _read_jid(section, "server_domain")
    if server_domain is not None:
        host = _parse_jid(section, "server_domain", server_domain)
        if host.local or host.resource:
            raise section.error("server_domain", f"a server's domain, not {server_domain!r}")
    served = _read_served(section, ("component", "generic", "empc"))
    config = ComponentConfig(
        domain=domain.domain,
        server=section.string("server", DEFAULT_SERVER),
        secret=secret,
        handlers=served.handlers,
        identity=served.identity,
        builtins=served.builtins,
        builtin_config=served.builtin_config,
        server_domain=None if server_domain is None else JID.parse(server_domain).domain,
    )
    section.refuse_unknown()
    return config


def _read_account(
    section: _Section, environ: Mapping[str, str], access_lists: Mapping[str, list[str]]
) -> AccountConfig:
    jid_text = section.string("jid")
    jid = _parse_jid(section, "jid", jid_text)
    if jid.local is None:
        raise section.error("jid", f"an account's JID is user@domain, not {jid_text!r}")
    if jid.resource is None:
        # A resource of its own, so that a second process on the same
        # account does not take over this one's session.
        jid = JID(jid.local, jid.domain, RESOURCE_PREFIX + secrets.token_hex(4))
    password = _read_secret(section, environ, "password", None)
    default_server = f"tcp:host={quoteStringArgument(jid.domain)}:port={DEFAULT_CLIENT_PORT}"
    server = _read_endpoint(section, "server", default_server, clientFromString, "client")
    kind = _endpoint_kind(server)
    if kind not in ACCOUNT_ENDPOINTS:
        # ssl: and the like verify no certificate unless told to, and would
        # pass for encrypted: only STARTTLS and tls: check the server's name.
        raise section.error(
            "server",
            f"an account connects with tcp: or unix: (then STARTTLS) or tls: (direct TLS, "
            f"XEP-0368), not {kind}:",
        )
    tls = section.string("tls", TLS_POLICIES[0])
    if tls not in TLS_POLICIES:
        raise section.error("tls", f"expected required or optional, got {tls!r}")
    trust_roots = section.optional_string("trust_roots")
    if trust_roots is not None:
        if kind == "tls":
            # The endpoint starts TLS itself, with its own trust roots.
            raise section.error(
                "trust_roots",
                "applies to STARTTLS only; with a tls: server (direct TLS), give the "
                "endpoint's own trustRoots= (a directory of PEM files) instead",
            )
        _check_certificates(section, "trust_roots", trust_roots)
    presence = _read_presence(section.section("presence"))
    subscriptions = _read_subscriptions(section, access_lists)
    served = _read_served(section, ("client", "bot", "empc"))
    config = AccountConfig(
        jid=str(jid),
        password=password,
        server=server,
        handlers=served.handlers,
        tls=tls,
        trust_roots=trust_roots,
        presence=presence,
        subscriptions=subscriptions,
        identity=served.identity,
        builtins=served.builtins,
        builtin_config=served.builtin_config,
    )
    section.refuse_unknown()
    return config


def _endpoint_kind(endpoint: str) -> str:
    """The kind of a Twisted endpoint string (``tcp``, ``tls``...), which
    Twisted reads without regard to case."""
    return endpoint.partition(":")[0].lower()


def _check_certificates(section: _Section, key: str, path: str) -> None:
    """Refuse, naming ``key``, a file that cannot be read or that holds no
    valid PEM certificate: TLS would otherwise fail at each connection."""
    try:
        content = Path(path).read_bytes()
    except OSError as e:
        raise section.error(key, f"cannot read {path}: {e.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in content:
        raise section.error(key, f"{path} holds no PEM certificate")
    try:
        x509.load_pem_x509_certificates(content)
    except ValueError as e:
        raise section.error(key, f"{path} holds a certificate that cannot be read ({e})") from None


def _read_presence(section: _Section) -> PresenceConfig:
    show = section.optional_string("show")
    if show is not None and show not in PRESENCE_SHOWS:
        raise section.error("show", f"expected away, chat, dnd or xa, got {show!r}")
    presence = PresenceConfig(
        show=show,
        status=section.optional_string("status"),
        priority=section.integer("priority", 0, minimum=-128, maximum=127),
    )
    section.refuse_unknown()
    return presence


def _read_subscriptions(
    section: _Section, access_lists: Mapping[str, list[str]]
) -> str | tuple[str, ...]:
    """``all``, ``none``, ``handler``, or the tuple of the entries listed."""
    if not isinstance(section.data.get("subscriptions"), list):
        policy = section.string("subscriptions", SUBSCRIPTION_POLICIES[0])
        if policy not in SUBSCRIPTION_POLICIES:
            raise section.error(
                "subscriptions",
                f"expected all, none, handler or a list of JIDs, domains and list:NAME,"
                f" got {policy!r}",
            )
        return policy
    entries = []
    for index, entry in section.items("subscriptions"):
        where = f"subscriptions[{index}]"
        if not isinstance(entry, str):
            raise section.error(where, "expected a bare JID, a domain or list:NAME")
        try:
            # The rule the entries will be checked with: it refuses what
            # it could not match (an unknown list, an invalid JID).
            AccessRule([entry], None, access_lists)
        except ValueError as e:
            raise section.error(where, str(e)) from None
        entries.append(entry)
    return tuple(entries)


@dataclass(frozen=True)
class _Served:
    """What a component and an account both serve: their handlers, the
    built-in handlers and the identity disco shows."""

    handlers: list[Handler]
    identity: tuple[str, str, str]
    builtins: Mapping[str, bool]
    builtin_config: Mapping[str, Mapping[str, Any]]


def _read_served(section: _Section, default_identity: tuple[str, str, str]) -> _Served:
    identity_section = section.section("identity")
    category, kind, name = default_identity
    identity = (
        identity_section.string("category", category),
        identity_section.string("type", kind),
        identity_section.string("name", name),
    )
    builtins_section = section.section("builtins")
    builtins: dict[str, bool] = {}
    builtin_config: dict[str, Mapping[str, Any]] = {}
    for builtin, cls in BUILTINS.items():
        if isinstance(builtins_section.data.get(builtin), dict):  # on, with this config
            options = builtins_section.section(builtin).data
            try:
                cls(options)
            except Exception as e:
                raise builtins_section.error(builtin, f"refused its config: {e}") from None
            builtins[builtin], builtin_config[builtin] = True, options
        else:
            builtins[builtin] = builtins_section.boolean(builtin, True)
    handlers = [_read_handler(section, index, item) for index, item in section.items("handlers")]
    for part in (identity_section, builtins_section):
        part.refuse_unknown()
    return _Served(handlers, identity, builtins, builtin_config)


def _read_secret(
    section: _Section, environ: Mapping[str, str], key: str, default_env: str | None
) -> Secret:
    """The secret of ``section``: from the environment variable
    ``<key>_env`` names (``default_env`` when absent) if it is set and not
    empty, else from the file ``<key>_file`` names, else ``<key>`` itself.

    :raises ConfigError: for both ``<key>`` and ``<key>_file``, a file that
        cannot be read or is empty, or no secret at all.
    """
    env_key, file_key = f"{key}_env", f"{key}_file"
    variable = section.optional_string(env_key) or default_env
    inline = section.optional_string(key)
    secret_file = section.optional_string(file_key)
    if inline is not None and secret_file is not None:
        raise section.error(file_key, f"give either {key} or {file_key}, not both")
    if variable is not None and environ.get(variable):
        return Secret(environ[variable])
    if secret_file is not None:
        return _read_secret_file(section, file_key, secret_file)
    if inline:
        return Secret(inline)
    where = env_key if variable is None else f"the environment variable {variable}"
    raise section.error(key, f"no {key}: set {key}, {file_key} or {where}")


def _read_secret_file(section: _Section, key: str, path: str) -> Secret:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise section.error(key, f"cannot read {path}: {e.strerror}") from None
    if not value:
        raise section.error(key, f"{path} is empty")
    return Secret(value)


def _read_handler(section: _Section, index: int, item: Any) -> Handler:
    key = f"handlers[{index}]"
    if isinstance(item, str):
        name, config = item, {}
    elif isinstance(item, dict):
        entry = section.child(key, item)
        name = entry.string("class")
        config = entry.section("config").data
        entry.refuse_unknown()
    else:
        raise section.error(key, "a handler is 'module:Class' or a mapping with class and config")
    cls = _import_handler(name, lambda why: section.error(key, why))
    try:
        return cls(config)
    except Exception as e:
        raise section.error(key, f"{name} refused its config: {e}") from None


def _import_handler(name: str, error: Callable[[str], ConfigError]) -> type[Handler]:
    """The handler class ``name`` names: ``module:Class`` or an entry point."""
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            target: object = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except Exception as e:
            raise error(f"cannot load handler {name}: {type(e).__name__}: {e}") from None
    else:
        found = entry_points(group=HANDLER_ENTRY_POINTS, name=name)
        if not found:
            raise error(
                f"no handler named {name!r}: use 'module:Class' or the name of an"
                f" installed {HANDLER_ENTRY_POINTS} entry point"
            )
        try:
            target = next(iter(found)).load()
        except Exception as e:
            raise error(f"cannot load handler {name}: {type(e).__name__}: {e}") from None
    if not (isinstance(target, type) and issubclass(target, Handler)):
        raise error(f"{name} is not a subclass of empc.Handler")
    return target


class _Section:
    """One mapping of the config, with what is needed to explain errors."""

    def __init__(self, path: str, where: str, data: Any, node: yaml.Node | None) -> None:
        self.path = path
        self.where = where
        self.node = node
        if not isinstance(data, dict):
            raise ConfigError(
                f"{path}: {where or 'the top level'}{_line(node)}: expected a mapping"
            )
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def error(self, key: str, message: str) -> ConfigError:
        node = self._key_node(key) or self.node
        return ConfigError(f"{self.path}: {self._name(key)}{_line(node)}: {message}")

    def child(self, key: str, data: Any) -> _Section:
        return _Section(self.path, self._name(key), data, self._value_node(key) or self.node)

    def section(self, key: str) -> _Section:
        self.used.add(key)
        value = self.data.get(key)
        return self.child(key, {} if value is None else value)

    def items(self, key: str) -> Iterator[tuple[int, Any]]:
        self.used.add(key)
        value = self.data.get(key)
        value = [] if value is None else value
        if not isinstance(value, list):
            raise self.error(key, "expected a list")
        return iter(enumerate(value))

    def sections(self, key: str) -> list[_Section]:
        return [self.child(f"{key}[{i}]", item) for i, item in self.items(key)]

    def string(self, key: str, default: str | None = None) -> str:
        value = self.optional_string(key)
        if value is None:
            if default is None:
                raise self.error(key, "missing")
            return default
        return value

    def optional_string(self, key: str) -> str | None:
        value = self._get(key)
        if value is not None and not isinstance(value, str):
            raise self.error(key, f"expected a string, got {type(value).__name__}")
        return value

    def number(
        self, key: str, default: float, minimum: float = 0.0, maximum: float | None = None
    ) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {value!r}")
        if not math.isfinite(value):  # YAML's .inf and .nan
            raise self.error(key, f"expected a finite number, got {value}")
        if value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum}, got {value}")
        return float(value)

    def integer(self, key: str, default: int, minimum: int, maximum: int | None = None) -> int:
        """A count: a number with no fractional part (``2.0`` is 2)."""
        value = self.number(key, default, minimum, maximum)
        if value != int(value):
            raise self.error(key, f"expected a whole number, got {value}")
        return int(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def refuse_unknown(self) -> None:
        for key in self.data:
            if key not in self.used:
                raise self.error(str(key), "unknown key")

    def _get(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def _name(self, key: str) -> str:
        if key.startswith("["):
            return f"{self.where}{key}"
        return f"{self.where}.{key}" if self.where else key

    def _key_node(self, key: str) -> Any:
        """The node to point at for ``key``: the key itself, or a list item."""
        if key.endswith("]"):
            return self._value_node(key)
        if isinstance(self.node, yaml.MappingNode):
            for key_node, _ in self.node.value:
                if key_node.value == key:
                    return key_node
        return None

    def _value_node(self, key: str) -> Any:
        """The YAML node of ``key``'s value, or of ``name[index]``."""
        if key.endswith("]"):
            name, _, index = key[:-1].rpartition("[")
            items = self._value_node(name)
            if isinstance(items, yaml.SequenceNode) and int(index) < len(items.value):
                return items.value[int(index)]
            return None
        if isinstance(self.node, yaml.MappingNode):
            for key_node, value_node in self.node.value:
                if key_node.value == key:
                    return value_node
        return None


def _describe_yaml_error(error: yaml.YAMLError) -> str:
    """Where YAML went wrong, without PyYAML's own words: they may quote the
    secret (an unquoted value such as ``*x`` or ``!x`` reads as an alias or
    a tag, and the message names it)."""
    where = ""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}"
    return (
        f"{type(error).__name__}{where} (a value starting with * ! & % @ ` {{ [ "
        "or containing ': ' needs quotes)"
    )


def _line(node: yaml.Node | None) -> str:
    return "" if node is None else f" (line {node.start_mark.line + 1})"
