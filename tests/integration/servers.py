"""Real Prosody and ejabberd servers, run as child processes for integration tests.

Each server gets its own directory (config, data, logs), listens on loopback
only, on free ports picked here, and runs in its own process group so that
stopping it never leaves a process behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NoReturn

import pytest

if TYPE_CHECKING:
    from tls import TlsFiles

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
COMMAND_TIMEOUT = 60.0

# Search /usr/sbin too: ejabberdctl lives there and may not be on a user's PATH.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


@dataclass(frozen=True)
class ComponentEntry:
    """An external component the server accepts: its domain and shared secret.

    A ``privileged`` one is granted the XEP-0356 permissions (roster both,
    message outgoing, presence roster; on Prosody also the IQ permissions of
    ``PRIVILEGED_IQ_NAMESPACES``) and the XEP-0355 delegation of
    ``DELEGATED_NAMESPACE`` on the server's host.
    """

    domain: str
    secret: str
    privileged: bool = False


# The namespace the server delegates to the privileged component.
DELEGATED_NAMESPACE = "urn:example:delegated"
# Prosody's mod_privilege (urn:xmpp:privilege:2) only: the namespaces of the
# IQs a privileged component may send on a user's behalf, and their types.
PRIVILEGED_IQ_NAMESPACES = {"urn:xmpp:ping": "get", DELEGATED_NAMESPACE: "both"}

DEFAULT_COMPONENTS: tuple[ComponentEntry, ...] = (
    ComponentEntry("echo.localhost", "s3cret"),
    ComponentEntry("second.localhost", "s3cond"),
    # The example microblog of examples/tweeter (tests/integration/test_tweeter.py).
    ComponentEntry("tweeter.localhost", "tw33ter"),
    # Privileged entity and delegated namespace (test_privileged_servers.py).
    ComponentEntry("privileged.localhost", "pr1v1leged", privileged=True),
)


@dataclass(frozen=True)
class ServiceListener:
    """An extra ejabberd_service listener for the same components (ejabberd
    only), on ``port``: direct TLS with ``certfile`` (PEM: the certificate,
    then its private key) when one is given, else plain TCP."""

    port: int
    certfile: Path | None = None


@dataclass(frozen=True)
class DomainBalancing:
    """How ejabberd spreads the stanzas for one component domain over the
    connections serving it (ejabberd's top-level ``domain_balancing``).

    ``type`` keys the choice: ``random`` (per stanza), ``source`` /
    ``destination`` (full JID of from / to), ``bare_source`` /
    ``bare_destination`` (bare JID).  ``component_number`` (2 to 1000) is
    the number of slots: a connection beyond it gets no route, and the share
    of a slot no connection holds is dropped.  ejabberd 23.01 needs it
    whenever the domain is listed (registering a route reads it).
    """

    type: str
    component_number: int


_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port free on loopback right now, never the same one twice per run."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port
    raise RuntimeError("could not find a free TCP port on loopback")


def find_binary(name: str, server: str) -> str:
    """The binary's full path, or fail the test (never skip: the servers are
    a hard requirement of the integration suite)."""
    path = shutil.which(name, path=_SEARCH_PATH)
    if path is None:
        pytest.fail(
            f"{server} integration tests need the {name!r} binary, which is not "
            f"installed (searched {_SEARCH_PATH}); install the {server} package.",
            pytrace=False,
        )
    return path


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class _ProcessInfo:
    pid: int
    ppid: int
    pgid: int
    state: str


def _processes() -> list[_ProcessInfo]:
    """All processes, from /proc (no psutil in the venv)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # The command name is in parentheses and may contain spaces.
        state, ppid, pgid = stat[stat.rindex(")") + 2 :].split()[:3]
        found.append(_ProcessInfo(int(entry.name), int(ppid), int(pgid), state))
    return found


def _live_group_members(pgid: int) -> list[int]:
    """PIDs of non-zombie processes in process group ``pgid``.

    Zombies are ignored: an orphan's is reaped by PID 1 whenever it gets to it.
    """
    return [p.pid for p in _processes() if p.pgid == pgid and p.state != "Z"]


def _children(pid: int) -> list[int]:
    return [p.pid for p in _processes() if p.ppid == pid and p.state != "Z"]


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is already gone
        os.killpg(pgid, sig)


class XmppServer(ABC):
    """A real XMPP server under test.

    Ports and data survive ``restart()``, so a component configured once can
    reconnect to the same address after the server comes back.

    Without ``tls`` the c2s port speaks plaintext only, as the component
    tests need.  With ``tls`` (the certificate it presents for ``host``,
    whatever names the certificate holds) the c2s port requires STARTTLS,
    ``direct_tls_port`` serves direct TLS (XEP-0368), SASL offers SCRAM and
    XEP-0198 stream management is on.
    """

    name: ClassVar[str]
    # Whether register_users() needs the server up (else it runs before start).
    register_needs_server: ClassVar[bool]
    # Log lines that mean a failed start even though the process keeps running.
    fatal_log_pattern: ClassVar[str | None] = None
    host = "localhost"

    def __init__(
        self,
        workdir: Path,
        components: Sequence[ComponentEntry] = DEFAULT_COMPONENTS,
        tls: TlsFiles | None = None,
    ) -> None:
        self.workdir = workdir
        self.components = tuple(components)
        self.tls = tls
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.direct_tls_port: int | None = None if tls is None else free_port()
        self.users: list[tuple[str, str]] = [
            (f"alice@{self.host}", "alice-pw"),
            (f"bob@{self.host}", "bob-pw"),
            (f"carol@{self.host}", "carol-pw"),
            # The account empc itself logs in as.
            (f"bot@{self.host}", "bot-pw"),
        ]
        self.console_log = workdir / "console.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._provisioned = False
        self._log_offset = 0  # where the current start's output begins

    # -- public API -------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server and return once its c2s and component ports accept."""
        if self.running:
            return
        first_start = not self._provisioned
        if first_start:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.write_config()
            if not self.register_needs_server:
                self.register_users()
        with self.console_log.open("ab") as log:
            self._log_offset = log.tell()
            # Own session = own process group: stop() signals the whole tree.
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self.environment(),
                start_new_session=True,
            )
        _live_servers[self._proc.pid] = self
        self._wait_until_listening()
        if first_start:
            if self.register_needs_server:
                self.register_users()
            self._provisioned = True

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), SIGKILL after STOP_TIMEOUT; never leaks."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _live_servers.pop(proc.pid, None)
        pgid = proc.pid  # start_new_session: the leader's PID is the group's
        for pid in self.stop_targets(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader so it does not count as alive
            if not _live_group_members(pgid):
                break
            time.sleep(0.1)
        else:
            _signal_group(pgid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5
            while _live_group_members(pgid) and time.monotonic() < kill_deadline:
                time.sleep(0.1)
        # The group got SIGKILL above if needed; nothing more we can do.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        """Everything the server printed, over all its starts."""
        try:
            return self.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _log_since_start(self) -> str:
        with self.console_log.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    def account(self, name: str) -> tuple[str, str]:
        """The JID and password of the user ``name`` (e.g. "carol")."""
        for jid, password in self.users:
            if jid.partition("@")[0] == name:
                return jid, password
        raise KeyError(name)

    @property
    def bot(self) -> tuple[str, str]:
        """The JID and password of the account empc logs in as."""
        return self.account("bot")

    def component(self, domain: str) -> ComponentEntry:
        for entry in self.components:
            if entry.domain == domain:
                return entry
        raise KeyError(domain)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} c2s={self.c2s_port} "
            f"direct_tls={self.direct_tls_port} "
            f"component={self.component_port} running={self.running}>"
        )

    # -- per-server hooks ---------------------------------------------------

    @abstractmethod
    def write_config(self) -> None: ...

    @abstractmethod
    def command(self) -> list[str]: ...

    def stop_targets(self, leader: int) -> list[int]:
        """The processes to send SIGTERM to for a graceful stop."""
        return [leader]

    def environment(self) -> dict[str, str]:
        # HOME in the work dir: nothing (e.g. an Erlang cookie) lands in ~root.
        return {**os.environ, "HOME": str(self.workdir)}

    @abstractmethod
    def register_users(self) -> None:
        """Create the accounts in ``self.users``."""

    # -- helpers --------------------------------------------------------------

    def listening_ports(self) -> tuple[int, ...]:
        """The ports that must accept connections before start() returns."""
        if self.direct_tls_port is None:
            return (self.c2s_port, self.component_port)
        return (self.c2s_port, self.component_port, self.direct_tls_port)

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        ports = self.listening_ports()
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                self.fail(f"{self.name} exited with code {self._proc.returncode}")
            listening = all(port_accepts(port) for port in ports)
            # Checked after the ports: an error logged before they opened counts.
            if self.fatal_log_pattern and (
                error := re.search(f".*(?:{self.fatal_log_pattern}).*", self._log_since_start())
            ):
                self.fail(f"{self.name} failed to start: {error.group(0)}")
            if listening:
                return
            time.sleep(0.2)
        self.fail(f"{self.name} did not listen on ports {ports} in {START_TIMEOUT}s")

    def run_tool(self, args: Sequence[str]) -> str:
        """Run an admin command (prosodyctl/ejabberdctl); fail with its output."""
        try:
            done = subprocess.run(
                list(args),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                cwd=self.workdir,
                env=self.environment(),
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            self.fail(f"{args!r} timed out after {COMMAND_TIMEOUT}s: {exc.output!r}")
        output = done.stdout + done.stderr
        if done.returncode != 0:
            self.fail(f"{args!r} failed with code {done.returncode}:\n{output}")
        return output

    def fail(self, message: str) -> NoReturn:
        self.stop()
        pytest.fail(f"{message}\n--- {self.name} log ---\n{self.log_text()}")


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _prosody_component(component: ComponentEntry) -> str:
    section = (
        f"Component {_lua_string(component.domain)}\n"
        f"\tcomponent_secret = {_lua_string(component.secret)}\n"
    )
    if component.privileged:
        section += '\tmodules_enabled = { "privilege", "delegation" }\n'
    return section


def _prosody_privileges(domains: Sequence[str]) -> str:
    """The VirtualHost options of mod_privilege and mod_delegation (from
    prosody-modules) granting ``domains`` their permissions and the
    delegation (only one entity is served a namespace: the first listed)."""
    if not domains:
        return ""
    iq = "".join(
        f"[{_lua_string(ns)}] = {_lua_string(kind)}; "
        for ns, kind in PRIVILEGED_IQ_NAMESPACES.items()
    )
    entities = "".join(
        f'\t\t[{_lua_string(domain)}] = {{ roster = "both"; message = "outgoing"; '
        f'presence = "roster"; iq = {{ {iq}}} }},\n'
        for domain in domains
    )
    return f"""\
\tprivileged_entities = {{
{entities}\t}}
\tdelegations = {{
\t\t[{_lua_string(DELEGATED_NAMESPACE)}] = {{ jid = {_lua_string(domains[0])} }},
\t}}
"""


class ProsodyServer(XmppServer):
    """Prosody 0.12, run in the foreground: ``prosody -F --config FILE``."""

    name = "prosody"
    register_needs_server = False
    # Prosody logs these and keeps running, e.g. when a port is taken.
    fatal_log_pattern = "Failed to open server port|Failed to activate service"

    def __init__(
        self,
        workdir: Path,
        components: Sequence[ComponentEntry] = DEFAULT_COMPONENTS,
        tls: TlsFiles | None = None,
    ) -> None:
        self.prosody = find_binary("prosody", "Prosody")
        self.prosodyctl = find_binary("prosodyctl", "Prosody")
        super().__init__(workdir, components, tls)
        self.config_path = workdir / "prosody.cfg.lua"

    def write_config(self) -> None:
        data = self.workdir / "data"
        certs = self.workdir / "certs"  # empty: a TLS server names its own in `ssl`
        data.mkdir(exist_ok=True)
        certs.mkdir(exist_ok=True)
        components = "\n".join(_prosody_component(c) for c in self.components)
        privileged = [c.domain for c in self.components if c.privileged]
        # The modules run on the VirtualHost (the options are read there) and
        # in each privileged component's section (which tells the host when
        # the component has authenticated).
        modules = ["roster", "saslauth", "disco", "ping", "register", "offline"]
        if privileged:
            modules += ["privilege", "delegation"]
        direct_tls = ""
        if self.direct_tls_port is not None:
            direct_tls = f" {self.direct_tls_port} "
            modules += ["tls", "smacks"]
        self.config_path.write_text(f"""\
-- Generated for empc integration tests.
-- Tests run as root; without this, mod_posix refuses to start.
run_as_root = true
pidfile = {_lua_string(str(self.workdir / "prosody.pid"))}
data_path = {_lua_string(str(data))}
certificates = {_lua_string(str(certs))}
log = {{ {{ levels = {{ min = "debug" }}, to = "console" }} }}

interfaces = {{ "{LOOPBACK}" }}
c2s_ports = {{ {self.c2s_port} }}
c2s_direct_tls_ports = {{{direct_tls}}}
legacy_ssl_ports = {{}}
component_ports = {{ {self.component_port} }}
component_interfaces = {{ "{LOOPBACK}" }}

{self._c2s_security()}authentication = "internal_hashed"
storage = "internal"

-- offline: a chat message to a user who is not online waits for their next login.
modules_enabled = {{ {", ".join(map(_lua_string, modules))} }}
-- No s2s: nothing outside loopback, and no listener on the 5269 default.
modules_disabled = {{ "s2s" }}

VirtualHost "{self.host}"
{_prosody_privileges(privileged)}
{components}""")

    def _c2s_security(self) -> str:
        """The global options for c2s encryption and authentication."""
        if self.tls is None:
            return "c2s_require_encryption = false\nallow_unencrypted_plain_auth = true\n"
        # SHA-256 hashes stored: SASL offers SCRAM-SHA-256 (and PLAIN over
        # TLS) but no SCRAM-SHA-1, since only one hash is stored.
        return f"""\
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
password_hash = "SHA-256"
ssl = {{
\tcertificate = {_lua_string(str(self.tls.certificate))};
\tkey = {_lua_string(str(self.tls.key))};
}}
"""

    def command(self) -> list[str]:
        return [self.prosody, "-F", "--config", str(self.config_path)]

    def register_users(self) -> None:
        # prosodyctl writes the account files directly: no running server needed.
        for jid, password in self.users:
            user, host = jid.split("@")
            self.run_tool(
                [
                    self.prosodyctl,
                    "--config",
                    str(self.config_path),
                    "register",
                    user,
                    host,
                    password,
                ]
            )


class EjabberdServer(XmppServer):
    """ejabberd 23.01 via ``ejabberdctl ... foreground`` with a private node.

    The node is distributed without epmd (``ERL_DIST_PORT``), so it cannot
    clash with a system ejabberd or epmd, and ejabberdctl talks to it on that
    port.

    ``service_listeners`` adds ejabberd_service listeners (e.g. TLS ones)
    beside the plain one on ``component_port``, for the same components.
    ``domain_balancing`` sets how the connections of a component domain
    share its stanzas (by default: at random, preferring the node's own).
    """

    name = "ejabberd"
    register_needs_server = True

    def __init__(
        self,
        workdir: Path,
        components: Sequence[ComponentEntry] = DEFAULT_COMPONENTS,
        service_listeners: Sequence[ServiceListener] = (),
        tls: TlsFiles | None = None,
        domain_balancing: Mapping[str, DomainBalancing] | None = None,
    ) -> None:
        self.service_listeners = tuple(service_listeners)
        self.domain_balancing = dict(domain_balancing or {})
        self.ejabberdctl = find_binary("ejabberdctl", "ejabberd")
        find_binary("erl", "ejabberd (Erlang runtime)")
        super().__init__(workdir, components, tls)
        self.config_path = workdir / "ejabberd.yml"
        self.ctl_config_path = workdir / "ejabberdctl.cfg"
        self.spool_dir = workdir / "spool"
        self.logs_dir = workdir / "logs"
        self.dist_port = free_port()
        # The mnesia database is bound to the node name: keep it for restarts.
        self.node = f"empctest{os.getpid()}{secrets.token_hex(3)}@localhost"
        self.cookie = secrets.token_hex(16)

    def write_config(self) -> None:
        self.spool_dir.mkdir(exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        services = "".join(
            f"      {c.domain}:\n        password: {c.secret}\n" for c in self.components
        )
        extra_listeners = "".join(
            _service_listener(listener, services) for listener in self.service_listeners
        )
        privileged = [c.domain for c in self.components if c.privileged]
        privileged_acl = privileged_rule = privileged_modules = ""
        if privileged:
            # The access rule "privileged" matches the privileged components only.
            servers = "".join(f"      - {domain}\n" for domain in privileged)
            privileged_acl = f"  privileged:\n    server:\n{servers}"
            privileged_rule = "  privileged:\n    allow: privileged\n"
            privileged_modules = _EJABBERD_PRIVILEGE_MODULES
        self.config_path.write_text(f"""\
# Generated for empc integration tests.
hosts:
  - {self.host}
loglevel: info
log_rotate_count: 0
{self._c2s_security()}
  - port: {self.component_port}
    ip: "{LOOPBACK}"
    module: ejabberd_service
    # Each component connection serves its own domain only: by default
    # ejabberd spreads every listed domain over all of them.
    global_routes: false
    hosts:
{services}{self._direct_tls_listener()}{extra_listeners}auth_method: internal
# Plain storage: both PLAIN and SCRAM work for the test client.
auth_password_format: plain
acl:
  local:
    user_regexp: ""
{privileged_acl}access_rules:
  local:
    allow: local
  c2s:
    allow: all
{privileged_rule}{self._domain_balancing()}modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  # A chat message to a user who is not online waits for their next login.
  mod_offline: {{}}
{privileged_modules}{"" if self.tls is None else _EJABBERD_STREAM_MANAGEMENT}""")
        # Sourced by ejabberdctl after its own defaults, so these win.
        self.ctl_config_path.write_text(f"""\
ERLANG_NODE={self.node}
ERL_OPTIONS="-setcookie {self.cookie} -kernel inet_dist_use_interface {{127,0,0,1}}"
# Run as the current user (root) in our tmp dir instead of su'ing to the
# ejabberd user, which could not enter pytest's private tmp dir.
EXEC_CMD=as_current_user
{self._node_discovery()}EJABBERD_PID_PATH={self.workdir / "ejabberd.pid"}
CONTRIB_MODULES_PATH={self.workdir / "contrib"}
""")

    def _node_discovery(self) -> str:
        """The ejabberdctl.cfg lines that say how nodes find this one (and
        ejabberdctl finds it): here, without epmd, on its own port.  Every
        node is then looked for on that one port, so no two nodes on one
        machine can reach each other (see EjabberdClusterNode)."""
        return f"# Distribution without epmd, on our own port.\nERL_DIST_PORT={self.dist_port}\n"

    def _domain_balancing(self) -> str:
        """The top-level ``domain_balancing`` option, if any domain has one."""
        if not self.domain_balancing:
            return ""
        domains = "".join(
            f"  {domain}:\n    type: {balancing.type}\n"
            f"    component_number: {balancing.component_number}\n"
            for domain, balancing in self.domain_balancing.items()
        )
        return f"domain_balancing:\n{domains}"

    def _c2s_security(self) -> str:
        """The certificates and the c2s listener (the first of ``listen``)."""
        if self.tls is None:
            certfiles, starttls = "[]", "starttls_required: false"
        else:
            certfiles = f"\n  - {json.dumps(str(self.tls.combined))}"
            starttls = "starttls: true\n    starttls_required: true"
        return f"""\
certfiles: {certfiles}
listen:
  - port: {self.c2s_port}
    ip: "{LOOPBACK}"
    module: ejabberd_c2s
    {starttls}"""

    def _direct_tls_listener(self) -> str:
        """A c2s listener for direct TLS (XEP-0368), if the server has TLS."""
        if self.direct_tls_port is None:
            return ""
        return f"""\
  - port: {self.direct_tls_port}
    ip: "{LOOPBACK}"
    module: ejabberd_c2s
    tls: true
"""

    def listening_ports(self) -> tuple[int, ...]:
        return (*super().listening_ports(), *(x.port for x in self.service_listeners))

    def ctl(self, *args: str) -> list[str]:
        return [
            self.ejabberdctl,
            "--config",
            str(self.config_path),
            "--ctl-config",
            str(self.ctl_config_path),
            "--spool",
            str(self.spool_dir),
            "--logs",
            str(self.logs_dir),
            "--node",
            self.node,
            *args,
        ]

    def command(self) -> list[str]:
        return self.ctl("foreground")

    def stop_targets(self, leader: int) -> list[int]:
        # ejabberdctl (bash) runs erl as a child without exec.  SIGTERM to bash
        # kills it at once and orphans the VM; SIGTERM to the VM makes it shut
        # down cleanly, and bash then exits with it.
        return _children(leader) or [leader]

    def register_users(self) -> None:
        for jid, password in self.users:
            user, host = jid.split("@")
            self.run_tool(self.ctl("register", user, host, password))


# mod_privilege and mod_delegation, each permission and the delegated
# namespace granted by the access rule "privileged".
_EJABBERD_PRIVILEGE_MODULES = f"""\
  mod_privilege:
    roster:
      both: privileged
    message:
      outgoing: privileged
    presence:
      roster: privileged
  mod_delegation:
    namespaces:
      "{DELEGATED_NAMESPACE}":
        access: privileged
        filtering: []
"""


# XEP-0198 with resumption, on the defaults (resume_timeout 300 s).
_EJABBERD_STREAM_MANAGEMENT = """\
  mod_stream_mgmt:
    resume_timeout: 300
"""


def _service_listener(listener: ServiceListener, services: str) -> str:
    """One more item of ejabberd's ``listen`` list, ``services`` its hosts."""
    tls = ""
    if listener.certfile is not None:
        tls = f"    tls: true\n    certfile: {json.dumps(str(listener.certfile))}\n"
    return f"""\
  - port: {listener.port}
    ip: "{LOOPBACK}"
    module: ejabberd_service
    global_routes: false
{tls}    hosts:
{services}"""


class EjabberdClusterNode(EjabberdServer):
    """One node of an :class:`EjabberdCluster`: an ejabberd with its own
    node name (``empctest<label>...@localhost``), spool, logs and ports, the
    cluster's cookie, found by the other nodes through the cluster's epmd.

    Only the node that ``registers_users`` creates the accounts: the others
    get them (with every other table) when they join its cluster.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        label: str,
        cookie: str,
        epmd_port: int,
        registers_users: bool,
        components: Sequence[ComponentEntry] = DEFAULT_COMPONENTS,
        domain_balancing: Mapping[str, DomainBalancing] | None = None,
    ) -> None:
        super().__init__(workdir, components, domain_balancing=domain_balancing)
        self.label = label
        self.node = f"empctest{label}{os.getpid()}{secrets.token_hex(3)}@localhost"
        self.cookie = cookie
        self.epmd_port = epmd_port
        self.registers_users = registers_users

    def _node_discovery(self) -> str:
        # ERL_DIST_PORT would make every node look for the others on its own
        # port: two nodes on one machine could never meet.  So each listens
        # on a port the system picks, announced to the cluster's epmd (never
        # the system's, and never one that erl would start and leave behind).
        # No fixed port: these options are ejabberdctl's commands' too.
        return f"""\
# Nodes find each other through the cluster's private epmd.
export ERL_EPMD_PORT={self.epmd_port}
ERL_OPTIONS="$ERL_OPTIONS -start_epmd false"
"""

    def register_users(self) -> None:
        if self.registers_users:
            super().register_users()

    def wait_until_listening(self) -> None:
        """Return once the node's ports accept again (after a join, which
        restarts ejabberd on the node); fail if they do not."""
        self._wait_until_listening()


class EjabberdCluster:
    """Two ejabberd 23.01 nodes on this machine, one Mnesia cluster.

    ``nodes[0]`` (A) is started first and holds the accounts; ``nodes[1]``
    (B) joins it with ``ejabberdctl join_cluster`` on its first start, after
    which both share every table: a user registered once logs in on either
    node, and a stanza entering one node reaches a session or a component
    connection on the other.  Each node has its own ``c2s_port`` and
    ``component_port``, and the same hosts, components (every component
    domain may be connected on both nodes at once) and ``domain_balancing``.

    The nodes find each other through a private epmd on ``epmd_port``
    (loopback only), started and stopped with the cluster.
    """

    LABELS = ("A", "B")

    def __init__(
        self,
        workdir: Path,
        components: Sequence[ComponentEntry] = DEFAULT_COMPONENTS,
        domain_balancing: Mapping[str, DomainBalancing] | None = None,
    ) -> None:
        self.workdir = workdir
        self.epmd = find_binary("epmd", "ejabberd (Erlang runtime)")
        self.epmd_port = free_port()
        self.epmd_log = workdir / "epmd.log"
        self._epmd: subprocess.Popen[bytes] | None = None
        cookie = secrets.token_hex(16)
        self.nodes = tuple(
            EjabberdClusterNode(
                workdir / f"node-{label}",
                label=label,
                cookie=cookie,
                epmd_port=self.epmd_port,
                registers_users=index == 0,
                components=components,
                domain_balancing=domain_balancing,
            )
            for index, label in enumerate(self.LABELS)
        )
        self._joined = False
        # The nodes in the order they stopped: Mnesia lets the last one down
        # start alone, while the others wait for it to come back.
        self._stopped: list[int] = []

    # -- the cluster as a unit -----------------------------------------------

    def start(self) -> None:
        """Start whatever is not running (epmd, then the node that stopped
        last first), joining B to A the first time; return once every node
        listens.  Cheap when all run, so a test can call it to undo a
        previous test's ``stop_node``."""
        self._start_epmd()
        order = [i for i in reversed(self._stopped)] + [
            i for i in range(len(self.nodes)) if i not in self._stopped
        ]
        for index in order:
            self.start_node(index)
        if not self._joined:
            first, *others = self.nodes
            for node in others:
                node.run_tool(node.ctl("join_cluster", first.node))
                node.wait_until_listening()
            self._joined = True

    def stop(self) -> None:
        """Stop every node (B first, A last), then epmd; never leaks."""
        for index in reversed(range(len(self.nodes))):
            self.stop_node(index)
        self._stop_epmd()

    # -- one node ----------------------------------------------------------------

    def stop_node(self, index: int) -> None:
        """Stop node ``index`` (0 for A, 1 for B); the other goes on alone."""
        node = self.nodes[index]
        if node.running:
            node.stop()
            if index in self._stopped:
                self._stopped.remove(index)
            self._stopped.append(index)

    def start_node(self, index: int) -> None:
        """Start node ``index`` again (it rejoins the cluster it was in) and
        return once it listens; nothing if it runs."""
        node = self.nodes[index]
        if not node.running:
            node.start()
        if index in self._stopped:
            self._stopped.remove(index)

    def running_nodes(self, index: int = 0) -> set[str]:
        """The node names ``ejabberdctl list_cluster`` gives on node ``index``
        (the cluster's nodes that are running)."""
        node = self.nodes[index]
        return set(node.run_tool(node.ctl("list_cluster")).split())

    # -- what the nodes share --------------------------------------------------

    @property
    def users(self) -> list[tuple[str, str]]:
        return self.nodes[0].users

    def account(self, name: str) -> tuple[str, str]:
        return self.nodes[0].account(name)

    def log_text(self) -> str:
        """Every node's output, each under its name."""
        return "\n".join(f"--- {n.node} ---\n{n.log_text()}" for n in self.nodes)

    def __repr__(self) -> str:
        return f"<EjabberdCluster epmd={self.epmd_port} nodes={self.nodes!r}>"

    # -- the private epmd ----------------------------------------------------------

    def _start_epmd(self) -> None:
        if self._epmd is not None and self._epmd.poll() is None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.epmd_log.open("ab") as log:
            self._epmd = subprocess.Popen(
                [self.epmd, "-port", str(self.epmd_port), "-address", LOOPBACK],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _live_epmds[self._epmd.pid] = self._epmd
        deadline = time.monotonic() + START_TIMEOUT
        while not port_accepts(self.epmd_port):
            if self._epmd.poll() is not None or time.monotonic() > deadline:
                self._stop_epmd()
                pytest.fail(f"epmd did not listen on {self.epmd_port}: {self.epmd_log.read_text()}")
            time.sleep(0.1)

    def _stop_epmd(self) -> None:
        epmd, self._epmd = self._epmd, None
        if epmd is not None:
            _stop_process(epmd)


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, SIGKILL after STOP_TIMEOUT, for a process that has no children."""
    _live_epmds.pop(proc.pid, None)
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


SERVER_CLASSES: dict[str, type[XmppServer]] = {
    ProsodyServer.name: ProsodyServer,
    EjabberdServer.name: EjabberdServer,
}

# Servers started and not stopped yet, by leader PID: cleaned up at exit even
# if a fixture's teardown never ran (e.g. pytest interrupted twice).
_live_servers: dict[int, XmppServer] = {}
# The clusters' private epmd processes, by PID, likewise.
_live_epmds: dict[int, subprocess.Popen[bytes]] = {}


def stop_all_servers() -> None:
    for server in list(_live_servers.values()):
        server.stop()
    for epmd in list(_live_epmds.values()):
        _stop_process(epmd)


atexit.register(stop_all_servers)
