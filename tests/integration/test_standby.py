"""The example microblog on Prosody, with a standby process: Prosody
accepts one connection per component, so a second ``twistd empc`` worker
on the same PostgreSQL database is refused with ``conflict`` and stands
by, trying every ``standby_delay`` seconds.

Three users, online throughout, follow one another by chat and subscribe
to one another's microblog nodes, then post at once. The active worker
connects through a proxy that, half-way, starts swallowing what it sends
(as the bytes a killed process had not yet handed to the network are
lost); a moment later it is killed with SIGKILL. The posts it got
meanwhile are committed with their notifications, but neither answered
nor notified. The standby must take over within seconds (the posts sent
in between are refused by Prosody: no component is there), and
afterwards each post is stored at most once, each acknowledged one is
stored, and every follower gets every stored post at least once, as the
chat message and as the PubSub event: those the killed worker left in the
outbox are sent by the standby once their lease (10 s) runs out. Repeats
are counted.

The figures are printed: ``pytest -s`` shows them.
"""

from __future__ import annotations

import math
import re
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from client import XmppClient, login_all
from component import ComponentProcess
from servers import XmppServer
from test_scale_out import (
    check_bodies,
    check_stored,
    deliver,
    failures_logged,
    follow_one_another,
    post_at_once,
    stored_posts,
)
from workers import CONNECT_TIMEOUT, CONNECTED, TWEETER, HoldingProxy, Workers, fresh_database

pytestmark = pytest.mark.integration

USERS = 3
ROUNDS = 16  # posts per user; the kill comes after half of them
PACE = 0.3  # seconds between rounds
HELD = 0.7  # seconds from the hold to the kill: about two rounds, under outbox_settle
STANDBY_DELAY = 1.0
STANDING_BY = re.escape(f"Another process serves {TWEETER}: standing by")
# From the kill to the standby's "connected" line: Prosody sees the socket
# close at once, and the standby tries every 1 to 1.5 s (with the jitter).
TAKEOVER_BOUND = 10.0
# Repeats: the notifications the killed process sent in its last
# outbox_settle (2 s, its default) before the hold, which had reached the
# followers but not yet left its outbox, are sent again by the standby.
# Each round's posts make USERS * (USERS - 1) deliveries of each kind.
SETTLE = 2.0
MAX_REPEATS = math.ceil((SETTLE + HELD) / PACE + 1) * USERS * (USERS - 1) * 2


@pytest.fixture
def workers(prosody_server: XmppServer, postgresql_url: str, tmp_path: Path) -> Iterator[Workers]:
    """Tweeter workers on a database of the test's own (none started yet);
    their logs are kept in the test's directory."""
    prosody_server.start()  # a test elsewhere may have stopped it
    with fresh_database(postgresql_url) as url:
        started = Workers(prosody_server, url, tmp_path)
        try:
            yield started
        finally:
            started.stop_all()


@pytest.fixture
def database(workers: Workers) -> Iterator[sa.Engine]:
    """The workers' database, read directly."""
    engine = sa.create_engine(workers.database_url.replace("postgresql:", "postgresql+psycopg:"))
    yield engine
    engine.dispose()


@pytest.fixture
def users(prosody_server: XmppServer) -> Iterator[dict[str, XmppClient]]:
    """alice, bob and carol logged in, available, by bare JID."""
    accounts = prosody_server.users[:USERS]
    with login_all(accounts, prosody_server.c2s_port, available=True) as clients:
        yield {jid: client for (jid, _), client in zip(accounts, clients, strict=True)}


class Takeover:
    """Watches ``standby`` from a thread, once :meth:`start` is called (at
    the kill), for its "connected" line: ``seconds`` is how long after the
    start it came, None while it has not (or not within ``bound`` s)."""

    def __init__(self, standby: ComponentProcess, bound: float) -> None:
        self.standby = standby
        self.bound = bound
        self.seconds: float | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        began = time.monotonic()
        while time.monotonic() - began < self.bound:
            if self.standby.count(CONNECTED):
                self.seconds = time.monotonic() - began
                return
            time.sleep(0.02)

    def join(self) -> float | None:
        self._thread.join(self.bound + 1)
        return self.seconds


def test_the_standby_takes_over_from_a_killed_process_and_loses_no_post(
    workers: Workers,
    users: dict[str, XmppClient],
    database: sa.Engine,
    prosody_server: XmppServer,
) -> None:
    began = time.monotonic()
    proxy = HoldingProxy(prosody_server.component_port)
    try:
        (active,) = workers.start(1, ports={0: proxy.port})
        standby = workers.start_one(standby_delay=STANDBY_DELAY)
        standby.wait_for(STANDING_BY, CONNECT_TIMEOUT)
        follow_one_another(users)
        assert standby.count(CONNECTED) == 0, standby.output()

        takeover = Takeover(standby, TAKEOVER_BOUND)
        killed_at: list[float] = []

        def kill() -> None:
            active.send_signal(signal.SIGKILL)
            killed_at.append(time.monotonic())
            takeover.start()

        killer = threading.Timer(HELD, kill)

        def hold() -> None:
            proxy.hold()
            killer.start()

        token = secrets.token_hex(4)
        posting = post_at_once(users, ROUNDS, token, hold, pace=PACE)
        killer.join()
        (killed,) = killed_at
        assert active.wait(10) == -signal.SIGKILL, active.output()
    finally:
        proxy.stop()
    took = takeover.join()
    assert took is not None, f"no takeover in {TAKEOVER_BOUND} s\n{standby.output()}"

    acknowledged = posting.acknowledged()
    stored = stored_posts(database, token)
    check_stored(stored, acknowledged)
    # The held worker's posts: stored, never acknowledged.
    held = [text for _, _, text in stored if text not in acknowledged]
    delivered = deliver(users, token, stored)
    print(
        f"\nstandby on Prosody, the active process held and killed: "
        f"{len(posting.texts)} posts sent, {len(acknowledged)} acknowledged, "
        f"{len(posting.refused())} refused, {len(posting.unanswered())} unanswered, "
        f"{len(stored)} stored ({len(held)} by the held process, {proxy.swallowed} bytes "
        f"swallowed); standby connected {took:.2f} s after the kill; {delivered.summary()}, "
        f"until {time.monotonic() - killed:.1f} s after the kill; "
        f"{time.monotonic() - began:.1f} s in all"
    )
    assert held, f"no post went to the held process ({proxy.swallowed} bytes swallowed)"
    assert len(acknowledged) >= len(posting.texts) // 2, posting.unanswered()
    delivered.check(MAX_REPEATS)
    check_bodies(users, stored)
    assert standby.count(STANDING_BY) == 1, standby.output()
    assert failures_logged([standby]) == []
