"""The example microblog scaled out: several ``twistd empc`` workers serving
tweeter.localhost from one PostgreSQL database, all connected to one
ejabberd, which spreads the domain's stanzas over their connections.

Beside them: a database of its own per test, made on the session's
PostgreSQL server and dropped after, and a proxy in front of one worker
that can swallow what the worker sends (to lose, as a killed process's
socket does, what it wrote but the server never got).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from component import ComponentProcess, ComponentStarter, CountingProxy
from servers import XmppServer

TWEETER = "tweeter.localhost"
HANDLER = "tweeter.handlers:Tweeter"
PUBSUB = "empc.pubsub:PubSub"
CONNECTED = re.escape(f"Component {TWEETER} connected")
CONNECT_TIMEOUT = 30.0
# The outbox's timings, short so that a test sees a killed worker's lease
# run out: the notifications it committed are another worker's to send
# after outbox_lease seconds, looked for every outbox_interval seconds.
OUTBOX = {"outbox_lease": 10.0, "outbox_interval": 2.0}


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url`` (a
    ``postgresql://`` url): its url; dropped on exit, whoever is still
    connected to it."""
    url = sa.make_url(server_url)
    name = f"tweeter_{secrets.token_hex(4)}"
    admin = f"host={url.host} port={url.port} user={url.username} dbname=postgres connect_timeout=5"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Workers:
    """Tweeter workers on one database, for one server; :meth:`stop_all`
    stops those still running and keeps their logs in ``workdir``."""

    def __init__(self, server: XmppServer, database_url: str, workdir: Path) -> None:
        self.server = server
        self.database_url = database_url
        self.workdir = workdir
        self._starter = ComponentStarter(workdir)

    @property
    def started(self) -> list[ComponentProcess]:
        return self._starter.started

    def start(self, count: int, ports: dict[int, int] | None = None) -> list[ComponentProcess]:
        """Start ``count`` workers; return them once all are connected.
        Worker ``i`` connects to ``ports[i]`` (a proxy's) if given, else to
        the server's component port.

        The first one starts alone: it makes the tables, which the others
        then find (two processes migrating one empty database at once
        would race to create them).
        """
        ports = ports or {}
        first = self.start_one(ports.get(0))
        first.wait_for(CONNECTED, CONNECT_TIMEOUT)
        others = [self.start_one(ports.get(index)) for index in range(1, count)]
        for worker in others:
            worker.wait_for(CONNECTED, CONNECT_TIMEOUT)
        return [first, *others]

    def start_one(self, port: int | None = None, **settings: Any) -> ComponentProcess:
        """Start one more worker, connecting to ``port`` if given; return it
        at once, connected or not. ``settings`` are more of
        :func:`component.component_config`'s (such as ``standby_delay``)."""
        return self._starter(
            self.server,
            domain=TWEETER,
            port=port,
            handlers=[HANDLER, {"class": PUBSUB, "config": {"creators": [], **OUTBOX}}],
            access_lists={"admins": []},
            storage={"url": self.database_url},
            # As the README says for several processes behind ejabberd: the
            # answer to a process's ping may go to another one.
            ping_interval=0,
            **settings,
        )

    def stop_all(self) -> None:
        self._starter.stop_all()
        for index, worker in enumerate(self.started):
            lines = worker.earlier_lines + worker.lines
            (self.workdir / f"worker-{index}.log").write_text("\n".join(lines) + "\n")


class HoldingProxy(CountingProxy):
    """Passes one worker's connections on to ``target_port`` on loopback,
    both ways, until :meth:`hold`: from then on what the worker sends is
    read and thrown away, while what the server sends still reaches it.
    A close on either side is passed on to the other."""

    def __init__(self, target_port: int) -> None:
        self.swallowed = 0  # bytes the worker sent that the server never got
        self._held = threading.Event()
        super().__init__(target_port)

    def hold(self) -> None:
        self._held.set()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:  # type: ignore[override]
        src.settimeout(None)
        # The server's end is the socket whose peer is the target.
        from_worker = src.getpeername() != self.target
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if from_worker and self._held.is_set():
                    self.swallowed += len(data)
                else:
                    dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
