"""The example microblog scaled out, and a worker killed while users post.

Three ``twistd empc`` workers serve tweeter.localhost from one PostgreSQL
database behind one ejabberd, which spreads the domain's stanzas over their
connections at random, stanza by stanza (every command here is one
stanza, and the state is in the database). Four users, online throughout,
follow one another by chat and subscribe to one another's microblog nodes,
then post at once; a worker is killed with SIGKILL in the middle.

What must hold afterwards, within a bounded wait: each post is stored at
most once, and each acknowledged one is stored; every follower gets every
stored post (acknowledged or not: the author may have missed the answer
of a post that was committed) at least once, as the chat message with the
id ``tweeter-<post number>`` from the author's address and as the PubSub
event of the item; repeats (the same post twice to one follower, as
at-least-once delivery allows) are counted, and few: at most what the
killed worker had in flight.

The figures (posts acknowledged, stored, deliveries, repeats, times) are
printed: ``pytest -s`` shows them.
"""

from __future__ import annotations

import re
import secrets
import signal
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from client import Received, XmppClient, login_all, pubsub_event
from component import ComponentProcess
from servers import EjabberdServer, XmppServer
from workers import TWEETER, HoldingProxy, Workers, fresh_database

pytestmark = pytest.mark.integration

WORKERS = 3
USERS = 4
FOLLOWERS = USERS - 1  # each user follows every other one
POSTS = 20  # per user, while a worker is killed
PACE = 0.2  # seconds between one user's posts (all users post each round)
KILL_ROUND = POSTS // 2
WAIT = 10.0  # for a command's answer in the setup
ANSWER_QUIET = 3.0  # no answer for that long: the rest were lost with the worker
ANSWER_WAIT = 30.0  # the most answers are waited for, in all
DELIVERY_WAIT = 60.0  # for every follower to have every post (the lease is 10 s)
# Repeats come from what the killed worker had sent of the notifications in
# flight when it died: a few posts per user, each to its followers.
MAX_REPEATS = FOLLOWERS * USERS * 3
POSTED = re.compile(r"Posted #(\d+) to (\d+) follower\(s\)\.")
NS_ATOM = "http://www.w3.org/2005/Atom"
LOGGED_FAILURE = re.compile(r"Traceback|Unhandled")


def address(user: str) -> str:
    """The user's address at the component (XEP-0106: ``@`` is ``\\40``)."""
    return user.replace("@", "\\40") + "@" + TWEETER


def node(user: str) -> str:
    return f"urn:xmpp:microblog:0:{user}"


# -- fixtures --------------------------------------------------------------------


@pytest.fixture(scope="module")
def accounts(ejabberd_server: XmppServer) -> list[tuple[str, str]]:
    """Four users of the session's ejabberd, new to it (so nothing another
    test left, such as offline messages, reaches them)."""
    server = ejabberd_server
    assert isinstance(server, EjabberdServer)
    server.start()  # a test elsewhere may have stopped it
    made = []
    for number in range(USERS):
        name, password = f"poster{number}-{secrets.token_hex(3)}", secrets.token_hex(8)
        server.run_tool(server.ctl("register", name, server.host, password))
        made.append((f"{name}@{server.host}", password))
    return made


@pytest.fixture
def database_url(postgresql_url: str) -> Iterator[str]:
    with fresh_database(postgresql_url) as url:
        yield url


@pytest.fixture
def workers(ejabberd_server: XmppServer, database_url: str, tmp_path: Path) -> Iterator[Workers]:
    """Tweeter workers on the test's database (none started yet); their
    logs are kept in the test's directory."""
    ejabberd_server.start()
    started = Workers(ejabberd_server, database_url, tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def database(database_url: str) -> Iterator[sa.Engine]:
    """The test's database, read directly."""
    engine = sa.create_engine(database_url.replace("postgresql:", "postgresql+psycopg:"))
    yield engine
    engine.dispose()


@pytest.fixture
def users(
    ejabberd_server: XmppServer, accounts: list[tuple[str, str]]
) -> Iterator[dict[str, XmppClient]]:
    """The users logged in, available (notifications to their bare JIDs
    reach them), by bare JID."""
    with login_all(accounts, ejabberd_server.c2s_port, available=True) as clients:
        yield {jid: client for (jid, _), client in zip(accounts, clients, strict=True)}


# -- the steps ---------------------------------------------------------------------


def command(client: XmppClient, text: str) -> str:
    """Send a chat command to the component; its answer's text."""
    answer = client.chat(TWEETER, text, timeout=WAIT)
    assert answer.type == "chat" and answer.body is not None, answer.xml
    return answer.body


def follow_one_another(users: dict[str, XmppClient]) -> None:
    """Each user posts once (which makes the user's node), then follows
    every other one by chat and subscribes to their nodes."""
    for user, client in users.items():
        assert POSTED.fullmatch(command(client, f"post hello from {user}")), user
    for user, client in users.items():
        for other in users:
            if other != user:
                assert command(client, f"follow {other}") == f"You now follow {other}."
                answer = client.subscribe_node(TWEETER, node(other), timeout=WAIT)
                assert answer.subscription == "subscribed", answer.reply.xml


@dataclass
class Posting:
    """The posts sent, by the id of their chat message; the answers came."""

    token: str
    texts: dict[str, tuple[str, str]] = field(default_factory=dict)  # id: (author, text)
    answers: dict[str, Received] = field(default_factory=dict)
    answers_waited: float = 0.0

    def acknowledged(self) -> dict[str, int]:
        """The number of each acknowledged post, by its text."""
        found = {}
        for sent, answer in self.answers.items():
            posted = POSTED.fullmatch(answer.body or "")
            if answer.type == "chat" and posted:
                found[self.texts[sent][1]] = int(posted.group(1))
        return found

    def unanswered(self) -> list[str]:
        return [text for sent, (_, text) in self.texts.items() if sent not in self.answers]

    def refused(self) -> list[str]:
        """The answers that are not an acknowledgement (errors)."""
        return [
            answer.xml
            for answer in self.answers.values()
            if not POSTED.fullmatch(answer.body or "")
        ]


def post_at_once(
    users: dict[str, XmppClient],
    rounds: int,
    token: str,
    midway: Callable[[], None],
    pace: float = PACE,
) -> Posting:
    """Every user posts ``rounds`` times, one post each per round, a round
    every ``pace`` s, without waiting for the answers; ``midway`` runs
    after half the rounds. Then the answers are collected."""
    posting = Posting(token)
    for number in range(rounds):
        if number == rounds // 2:
            midway()
        for user, client in users.items():
            text = f"{token} {user} #{number}"
            posting.texts[client.send_message(TWEETER, f"post {text}")] = (user, text)
        time.sleep(pace)
    collect_answers(users, posting)
    return posting


def collect_answers(users: dict[str, XmppClient], posting: Posting) -> None:
    """Take the answers to the posts from the inboxes, until all came or
    none came for ANSWER_QUIET s (those of the killed worker never come)."""
    started = last = time.monotonic()
    while len(posting.answers) < len(posting.texts):
        now = time.monotonic()
        if now - last > ANSWER_QUIET or now - started > ANSWER_WAIT:
            break
        for client in users.values():
            for answer in client.take(TWEETER, lambda m: m.id in posting.texts):
                posting.answers[answer.id] = answer
                last = time.monotonic()
        time.sleep(0.1)
    posting.answers_waited = time.monotonic() - started


def stored_posts(database: sa.Engine, token: str) -> Counter[tuple[str, int, str]]:
    """(author, number, text) of each post stored whose text holds
    ``token``, with how many times it is stored."""
    query = sa.text(
        "SELECT n.name, i.item_id, i.payload FROM pubsub_items i "
        "JOIN pubsub_nodes n ON n.id = i.node_id WHERE i.payload LIKE :pattern"
    )
    found: Counter[tuple[str, int, str]] = Counter()
    with database.connect() as connection:
        for name, item_id, payload in connection.execute(query, {"pattern": f"%{token}%"}):
            title = ET.fromstring(payload).findtext(f"{{{NS_ATOM}}}title", "")
            found[(name.removeprefix(node("")), int(item_id), title)] += 1
    return found


# A delivery: (follower, "chat" or "event", author, post number).
Delivery = tuple[str, str, str, int]


def deliveries(users: dict[str, XmppClient], token: str) -> Counter[Delivery]:
    """The posts holding ``token`` that reached each user so far, as chat
    messages from the author's address and as PubSub events, with how
    many times each came."""
    found: Counter[Delivery] = Counter()
    for user, client in users.items():
        for message in client.inbox():
            if message.kind != "message" or token not in message.xml:
                continue
            event = pubsub_event(message)
            if event is not None and message.sender == TWEETER:
                author = event.node.removeprefix(node(""))
                found.update((user, "event", author, int(item)) for item in event.item_ids)
            elif message.bare_sender.endswith(f"@{TWEETER}") and message.id.startswith("tweeter-"):
                author = message.bare_sender.removesuffix(f"@{TWEETER}").replace("\\40", "@")
                found[(user, "chat", author, int(message.id.removeprefix("tweeter-")))] += 1
    return found


@dataclass
class Delivered:
    """What was to come to the followers, what came, and how long it was
    waited for."""

    expected: set[Delivery]
    came: Counter[Delivery]
    waited: float

    @property
    def repeats(self) -> int:
        return sum(count - 1 for count in self.came.values())

    def summary(self) -> str:
        missing = self.expected - self.came.keys()
        return (
            f"{len(self.expected) - len(missing)} of {len(self.expected)} deliveries came "
            f"({len(missing)} missing), {self.repeats} repeats; waited {self.waited:.1f} s"
        )

    def check(self, max_repeats: int = MAX_REPEATS) -> None:
        """Every expected delivery came, nothing else, and at most
        ``max_repeats`` repeats."""
        self.check_complete()
        assert self.repeats <= max_repeats, [d for d, count in self.came.items() if count > 1]

    def check_complete(self) -> None:
        """Every expected delivery came, and nothing else."""
        missing = self.expected - self.came.keys()
        by_kind = Counter(kind for _, kind, _, _ in missing)
        posts = sorted({number for _, _, _, number in missing})
        assert not missing, f"{len(missing)} never came ({dict(by_kind)}), of posts {posts}"
        assert self.came.keys() <= self.expected, sorted(self.came.keys() - self.expected)


def deliver(
    users: dict[str, XmppClient], token: str, stored: Counter[tuple[str, int, str]]
) -> Delivered:
    """Wait until every stored post came to each of its author's
    followers, both ways, or DELIVERY_WAIT s passed."""
    expected = {
        (follower, kind, author, number)
        for author, number, _ in stored
        for follower in users
        if follower != author
        for kind in ("chat", "event")
    }
    started = time.monotonic()
    while True:
        came = deliveries(users, token)
        waited = time.monotonic() - started
        if expected <= came.keys() or waited > DELIVERY_WAIT:
            return Delivered(expected, came, waited)
        time.sleep(0.5)


def check_stored(stored: Counter[tuple[str, int, str]], acknowledged: dict[str, int]) -> None:
    """Each post stored at most once; each acknowledged post stored, under its number."""
    texts = Counter(text for _, _, text in stored.elements())
    assert all(count == 1 for count in texts.values()), texts.most_common(3)
    assert {text: number for _, number, text in stored if text in acknowledged} == acknowledged


def check_bodies(users: dict[str, XmppClient], stored: Counter[tuple[str, int, str]]) -> None:
    """Each chat notification's body is the text of the post its id names."""
    texts = {number: text for _, number, text in stored}
    for client in users.values():
        for message in client.inbox():
            if message.id.startswith("tweeter-") and message.bare_sender.endswith(TWEETER):
                number = int(message.id.removeprefix("tweeter-"))
                if number in texts:
                    assert message.body == texts[number], message.xml
                    assert message.type == "chat", message.xml


def failures_logged(survivors: list[ComponentProcess]) -> list[str]:
    return [line for worker in survivors for line in worker.lines if LOGGED_FAILURE.search(line)]


# -- the tests --------------------------------------------------------------------


def test_a_worker_killed_while_users_post_loses_no_post(
    workers: Workers, users: dict[str, XmppClient], database: sa.Engine
) -> None:
    running = workers.start(WORKERS)
    follow_one_another(users)
    victim, survivors = running[0], running[1:]
    killed_at: list[float] = []

    def kill() -> None:
        victim.send_signal(signal.SIGKILL)
        killed_at.append(time.monotonic())

    token = secrets.token_hex(4)
    began = time.monotonic()
    posting = post_at_once(users, POSTS, token, kill)
    assert victim.wait(10) == -signal.SIGKILL, victim.output()

    acknowledged = posting.acknowledged()
    stored = stored_posts(database, token)
    check_stored(stored, acknowledged)
    delivered = deliver(users, token, stored)
    print(
        f"\nscale-out, a worker killed: {len(posting.texts)} posts sent, "
        f"{len(acknowledged)} acknowledged, {len(posting.unanswered())} unanswered, "
        f"{len(posting.refused())} refused, {len(stored)} stored "
        f"({len(stored) - len(acknowledged)} without acknowledgement); "
        f"posting and answers took {killed_at[0] - began + posting.answers_waited:.1f} s "
        f"with the kill at {killed_at[0] - began:.1f} s; {delivered.summary()}"
    )
    assert posting.refused() == []
    assert len(acknowledged) >= len(posting.texts) // 2, posting.unanswered()
    delivered.check()
    check_bodies(users, stored)
    assert failures_logged(survivors) == []


def test_what_a_killed_worker_wrote_but_the_server_never_got_is_sent_by_another(
    workers: Workers,
    users: dict[str, XmppClient],
    database: sa.Engine,
    ejabberd_server: XmppServer,
) -> None:
    """The third worker's output is swallowed by a proxy while users post
    (as the bytes a killed process had not yet handed to the network are
    lost), and it is killed half-way: the posts it committed reach the
    followers through the others' outbox drainers, once its lease ran
    out."""
    proxy = HoldingProxy(ejabberd_server.component_port)
    try:
        running = workers.start(WORKERS, ports={WORKERS - 1: proxy.port})
        follow_one_another(users)
        victim, survivors = running[-1], running[:-1]
        token = secrets.token_hex(4)
        proxy.hold()
        # A third of the posts, at random, go to the held worker: with 24
        # of them, the odds that none does are 6 in 100,000.
        killed_at: list[float] = []

        def kill() -> None:
            # Half-way: what the held worker wrote in the first rounds has
            # not settled (outbox_settle) when it dies.
            victim.send_signal(signal.SIGKILL)
            killed_at.append(time.monotonic())

        posting = post_at_once(users, 6, token, kill, pace=0.1)
        (killed,) = killed_at
        assert victim.wait(10) == -signal.SIGKILL, victim.output()
    finally:
        proxy.stop()

    acknowledged = posting.acknowledged()
    stored = stored_posts(database, token)
    # The held worker's posts: stored, never acknowledged.
    held = [text for _, _, text in stored if text not in acknowledged]
    assert held, f"no post went to the held worker ({proxy.swallowed} bytes swallowed)"
    delivered = deliver(users, token, stored)
    print(
        f"\nscale-out, a held worker killed: {len(posting.texts)} posts sent, "
        f"{len(acknowledged)} acknowledged, {len(stored)} stored, {len(held)} by the held "
        f"worker ({proxy.swallowed} bytes swallowed); {delivered.summary()}, "
        f"until {time.monotonic() - killed:.1f} s after the kill"
    )
    delivered.check()
    check_bodies(users, stored)
    assert failures_logged(survivors) == []
