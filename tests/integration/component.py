"""The empc component as a black box: a ``twistd -n empc`` child process.

Its stdout (the twistd log) is read line by line from a thread into a list,
so a test can wait, with a bounded timeout, for a line matching a pattern.
Also a tiny TCP proxy that counts connections, to see reconnection attempts
from the outside.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import XmppServer

# Without this the child's stdout is block-buffered (it is a pipe) and log
# lines arrive late or only at exit.
_UNBUFFERED = {"PYTHONUNBUFFERED": "1"}
# On the child's PYTHONPATH, so a config can name test handlers such as
# ``sample_handlers:Weather``.
HERE = Path(__file__).resolve().parent
STOP_TIMEOUT = 10.0


def twistd_command(config: Path) -> list[str]:
    """``twistd -n --pidfile= empc -c CONFIG`` from the running venv.

    ``python -m twisted`` is the newer ``twist`` runner, not ``twistd``, so the
    venv's ``twistd`` script next to the interpreter is used.
    """
    twistd = Path(sys.executable).parent / "twistd"
    if not twistd.exists():
        pytest.fail(f"twistd not found next to {sys.executable}", pytrace=False)
    return [str(twistd), "-n", "--pidfile=", "empc", "-c", str(config)]


def component_config(
    components: Sequence[dict[str, Any]],
    *,
    accounts: Sequence[dict[str, Any]] = (),
    initial_delay: float = 0.5,
    max_delay: float = 2,
    permanent_error_delay: float = 30,
    standby_delay: float = 5,
    interval: float = 5,
    ping_interval: float = 10,
    ping_timeout: float = 5,
    access_lists: dict[str, list[str]] | None = None,
    limits: dict[str, Any] | None = None,
    storage: dict[str, Any] | None = None,
    sections: dict[str, Any] | None = None,
) -> str:
    """The YAML config for ``twistd empc``; ``components`` are the list items
    (``domain``, ``server``, ``secret``, ``handlers``...), ``accounts`` those
    of the accounts (``jid``, ``password``, ``server``...); ``access_lists``,
    ``limits`` and ``storage`` are the top-level sections of those names, if
    given; ``sections`` any others (``metrics``, ``logging``...)."""
    config: dict[str, Any] = {
        "reconnect": {
            "initial_delay": initial_delay,
            "max_delay": max_delay,
            "permanent_error_delay": permanent_error_delay,
            "standby_delay": standby_delay,
        },
        "keepalive": {
            "interval": interval,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
        },
    }
    if components:
        config["components"] = list(components)
    if accounts:
        config["accounts"] = list(accounts)
    if access_lists is not None:
        config["access_lists"] = access_lists
    if limits is not None:
        config["limits"] = limits
    if storage is not None:
        config["storage"] = storage
    config.update(sections or {})
    return yaml.safe_dump(config, sort_keys=False)


def tcp_endpoint(port: int, host: str = "127.0.0.1") -> str:
    return f"tcp:host={host}:port={port}"


def _python_path() -> str:
    """The inherited PYTHONPATH with this directory in front."""
    inherited = os.environ.get("PYTHONPATH")
    return os.pathsep.join([str(HERE), inherited] if inherited else [str(HERE)])


class ComponentProcess:
    """A running ``twistd -n empc`` and everything it printed so far."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self._lines: list[str] = []
        self.earlier_lines: list[str] = []  # the output of runs before restart()
        self._changed = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> ComponentProcess:
        self._proc = subprocess.Popen(
            twistd_command(self.config),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env={**os.environ, **_UNBUFFERED, "PYTHONPATH": _python_path()},
            text=True,
            errors="replace",
            start_new_session=True,  # so stop() can kill any child it spawns
        )
        self._reader = threading.Thread(
            target=self._read, args=(self._proc,), name="empc-log", daemon=True
        )
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:  # EOF: wake waiters so they see the exit
            self._changed.notify_all()

    # -- log access -----------------------------------------------------------

    @property
    def lines(self) -> list[str]:
        with self._changed:
            return list(self._lines)

    def output(self) -> str:
        return "\n".join(self.lines)

    def matching(self, pattern: str | re.Pattern[str]) -> list[str]:
        regex = re.compile(pattern)
        return [line for line in self.lines if regex.search(line)]

    def count(self, pattern: str | re.Pattern[str]) -> int:
        return len(self.matching(pattern))

    def wait_for(
        self,
        pattern: str | re.Pattern[str],
        timeout: float = 15.0,
        *,
        count: int = 1,
    ) -> str:
        """Wait until ``count`` lines match ``pattern`` (a regex, searched);
        return the last of them.  Fail with the whole log on timeout, or as
        soon as the process has exited without printing them."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self._lines if regex.search(line)]
                if len(found) >= count:
                    return found[count - 1]
                remaining = deadline - time.monotonic()
                exited = self._reader is None or not self._reader.is_alive()
                if remaining <= 0 or exited:
                    break
                self._changed.wait(min(remaining, 0.5))
        why = "exited" if exited else f"timed out after {timeout}s"
        pytest.fail(
            f"empc {why} before {count} line(s) matched {regex.pattern!r} "
            f"(got {len(found)}); exit code {self.returncode}\n"
            f"--- empc log ---\n{self.output()}"
        )

    # -- process control ------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def send_signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        self._proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after ``timeout`` s."""
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._reader is not None:
            self._reader.join(5)  # let the last lines in
        return code

    def restart(self) -> ComponentProcess:
        """Stop, then start again with the same config (and so the same
        data); the log starts afresh, so ``wait_for`` sees only the new run."""
        self.stop()
        with self._changed:
            self.earlier_lines += self._lines
            self._lines.clear()
        return self.start()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL the whole group after STOP_TIMEOUT."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            if self.wait(STOP_TIMEOUT) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


# The ``start_component`` fixture: start_component(server, **options).
StartComponent = Callable[..., ComponentProcess]


class ComponentStarter:
    """Starts ``twistd empc`` processes for a server, their configs in
    ``workdir``; ``stop_all()`` stops every one started.  The
    ``start_component`` fixture is one (see its doc for the options)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[ComponentProcess] = []

    def __call__(
        self,
        server: XmppServer,
        *,
        domain: str = "echo.localhost",
        secret: str | None = None,
        port: int | None = None,
        handlers: list[Any] | None = None,
        components: list[dict[str, Any]] | None = None,
        **settings: Any,
    ) -> ComponentProcess:
        if components is None:
            single: dict[str, Any] = {"domain": domain}
            if secret is not None:
                single["secret"] = secret
            if handlers is not None:
                single["handlers"] = handlers
            components = [single]
        endpoint = tcp_endpoint(port or server.component_port)
        entries = []
        for item in components:
            entry = {"domain": item["domain"], "server": endpoint}
            if "secret" not in item:  # only then must the server know the domain
                entry["secret"] = server.component(item["domain"]).secret
            entries.append({**entry, **item})
        config = self.workdir / f"empc-{len(self.started)}.yaml"
        config.write_text(component_config(entries, **settings))
        process = ComponentProcess(config, self.workdir)
        self.started.append(process)
        return process.start()

    def account(
        self,
        server: XmppServer,
        *,
        trust_roots: Path | None,
        port: int | None = None,
        handlers: list[Any] | None = None,
        password: str | None = None,
        account: dict[str, Any] | None = None,
        **settings: Any,
    ) -> ComponentProcess:
        """``twistd empc`` running the server's bot account: over STARTTLS
        trusting ``trust_roots``, or over a clear stream if None; on the
        server's c2s port unless ``port`` (a proxy's) is given; with the
        bot's password unless ``password``; ``account`` adds or replaces
        keys of its entry."""
        jid, bot_password = server.bot
        entry: dict[str, Any] = {
            "jid": f"{jid}/empc",
            "password": password or bot_password,
            "server": tcp_endpoint(port or server.c2s_port),
        }
        if trust_roots is None:
            entry["tls"] = "optional"
        else:
            entry["trust_roots"] = str(trust_roots)
        if handlers is not None:
            entry["handlers"] = handlers
        entry.update(account or {})
        config = self.workdir / f"empc-{len(self.started)}.yaml"
        config.write_text(component_config([], accounts=[entry], **settings))
        process = ComponentProcess(config, self.workdir)
        self.started.append(process)
        return process.start()

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


class CountingProxy:
    """Forwards TCP connections from a loopback port to ``target_port``,
    counting the connections accepted: the component's connection attempts."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.2)  # so the accept loop notices stop()
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed
            with self._lock:
                self.connections += 1
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(None)
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        # Pass the close on, so each side sees the other hang up.
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        self._thread.join(5)
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
