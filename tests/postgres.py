"""A real PostgreSQL server for tests: Debian's binaries, run in a
temporary directory on a loopback port, as the ``postgres`` user when the
tests run as root (PostgreSQL refuses to run as root).

A missing binary fails the test; it never skips (PostgreSQL is a hard
requirement of the test suite, installed by ``scripts/setup.sh``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

BINARIES = Path(os.environ.get("EMPC_POSTGRESQL_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "empc"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def _loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class PostgresServer:
    """One PostgreSQL cluster of its own, made by :meth:`start`, removed by
    :meth:`remove`; :meth:`stop` and :meth:`start` stop and start it again
    on the same port with the same data (a restart, as an operator's)."""

    def __init__(self) -> None:
        for name in ("initdb", "postgres"):
            if not (BINARIES / name).is_file():
                pytest.fail(
                    f"the PostgreSQL tests need {BINARIES / name}, which is not installed: "
                    "install Debian's postgresql package (scripts/setup.sh does)",
                    pytrace=False,
                )
        self._as_postgres = os.geteuid() == 0
        self.directory = Path(tempfile.mkdtemp(prefix="empc-postgresql-"))
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.directory, user.pw_uid, user.pw_gid)
        self.data = self.directory / "data"
        self.sockets = self.directory / "sockets"
        self.log = self.directory / "postgresql.log"
        self.port = _loopback_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._made = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _command(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        return [*prefix, *args]

    def start(self) -> None:
        """Start (making the cluster and its database the first time);
        returns once it accepts connections."""
        if self.running:
            return
        if not self._made:
            initdb = f"{BINARIES}/initdb -D {self.data} -U postgres --auth=trust -E UTF8 --no-sync"
            self._run(*initdb.split())
            self._run("mkdir", str(self.sockets))
        # Loopback only; durability off: the tests lose nothing they need.
        postgres = (
            f"{BINARIES}/postgres -D {self.data} -h 127.0.0.1 -p {self.port} -k {self.sockets}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                self._command(*postgres.split()),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_ready()
        if not self._made:
            with psycopg.connect(self._dsn("postgres"), autocommit=True) as connection:
                connection.execute(f"CREATE DATABASE {DATABASE}")
            self._made = True

    def stop(self) -> None:
        """Fast shutdown (sessions are ended, their transactions rolled
        back); SIGKILL if it takes longer than STOP_TIMEOUT."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        """Stop, and delete the cluster."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database} connect_timeout=2"

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                pytest.fail(f"PostgreSQL exited at start:\n{self.log_text()}", pytrace=False)
            try:
                psycopg.connect(self._dsn("postgres")).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"PostgreSQL did not start in {START_TIMEOUT} s:\n{self.log_text()}")

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            self._command(*args), capture_output=True, cwd=self.directory, check=False
        )
        if done.returncode:
            pytest.fail(f"{args[0]} failed: {done.stdout.decode()}{done.stderr.decode()}")
