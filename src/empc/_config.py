"""The config file: YAML, checked up front, every error naming key and line.

Reference (every key but ``components`` is optional)::

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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

import yaml
from twisted.internet.endpoints import serverFromString

from empc._connection import LinkSettings
from empc._service import Backoff
from empc.handlers import BUILTINS
from empc.protocol import JID, InvalidJID
from empc.routing import Handler, Limits
from empc.storage import StorageError, parse_url

DEFAULT_SERVER = "tcp:host=127.0.0.1:port=5347"
DEFAULT_SECRET_ENV = "EMPC_SECRET"
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
    )
    storage = _read_storage(root, environ)
    log_format = logging.string("format", "text")
    if log_format not in LOG_FORMATS:
        raise logging.error("format", f"expected text or json, got {log_format!r}")
    systemd = root.section("systemd")
    ready_timeout = systemd.number("ready_timeout", 30.0)
    metrics_listen = _read_metrics(root)
    components = [
        _read_component(entry, environ) for entry in root.sections("components", required=True)
    ]
    if not components:
        raise root.error("components", "list at least one component")
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
    )


def _read_metrics(root: _Section) -> str | None:
    if "metrics" not in root.data:
        return None
    section = root.section("metrics")
    listen = section.string("listen", DEFAULT_METRICS_LISTEN)
    try:
        # Parsing builds the endpoint object only; the reactor is used
        # once it listens, so none is needed to check the string.
        serverFromString(None, listen)
    except Exception as e:
        raise section.error("listen", f"not a server endpoint: {e}") from None
    section.refuse_unknown()
    return listen


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
    secret = _read_secret(section, environ)
    server_domain = _read_jid(section, "server_domain")
    if server_domain is not None:
        host = _parse_jid(section, "server_domain", server_domain)
        if host.local or host.resource:
            raise section.error("server_domain", f"a server's domain, not {server_domain!r}")
    identity_section = section.section("identity")
    identity = (
        identity_section.string("category", "component"),
        identity_section.string("type", "generic"),
        identity_section.string("name", "empc"),
    )
    builtins_section = section.section("builtins")
    builtins: dict[str, bool] = {}
    builtin_config: dict[str, Mapping[str, Any]] = {}
    for name, cls in BUILTINS.items():
        if isinstance(builtins_section.data.get(name), dict):  # on, with this config
            options = builtins_section.section(name).data
            try:
                cls(options)
            except Exception as e:
                raise builtins_section.error(name, f"refused its config: {e}") from None
            builtins[name], builtin_config[name] = True, options
        else:
            builtins[name] = builtins_section.boolean(name, True)
    handlers = [_read_handler(section, index, item) for index, item in section.items("handlers")]
    config = ComponentConfig(
        domain=domain.domain,
        server=section.string("server", DEFAULT_SERVER),
        secret=secret,
        handlers=handlers,
        identity=identity,
        builtins=builtins,
        builtin_config=builtin_config,
        server_domain=None if server_domain is None else JID.parse(server_domain).domain,
    )
    for part in (identity_section, builtins_section, section):
        part.refuse_unknown()
    return config


def _read_secret(section: _Section, environ: Mapping[str, str]) -> Secret:
    variable = section.string("secret_env", DEFAULT_SECRET_ENV)
    inline = section.optional_string("secret")
    secret_file = section.optional_string("secret_file")
    if inline is not None and secret_file is not None:
        raise section.error("secret_file", "give either secret or secret_file, not both")
    if environ.get(variable):
        return Secret(environ[variable])
    if secret_file is not None:
        return _read_secret_file(section, "secret_file", secret_file)
    if inline:
        return Secret(inline)
    raise section.error(
        "secret", f"no secret: set secret, secret_file or the environment variable {variable}"
    )


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

    def sections(self, key: str, required: bool = False) -> list[_Section]:
        if required and key not in self.data:
            raise self.error(key, "missing")
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
