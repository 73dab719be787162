"""Accounts end to end: ``twistd empc`` logged in as an ordinary user of real
Prosody and ejabberd, over STARTTLS on certificates of a private CA, talking
to a real client.

The servers are tls_conftest's: each requires STARTTLS, offers SCRAM and
XEP-0198, and has the account ``bot@localhost``.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from client import Received, XmppClient, login
from component import ComponentProcess, ComponentStarter
from servers import XmppServer
from tls import CuttableProxy, TlsCertificates

pytestmark = pytest.mark.integration

BOT = "bot@localhost"
ECHO = ["sample_handlers:Echo"]
LOGIN_TIMEOUT = 30.0
# What each TLS server offers that is strongest among what empc speaks.
STRONGEST = {"prosody": "SCRAM-SHA-256", "ejabberd": "SCRAM-SHA-256"}


@pytest.fixture
def starter(tmp_path: Path) -> Iterator[ComponentStarter]:
    starter = ComponentStarter(tmp_path)
    yield starter
    starter.stop_all()


def _client(server: XmppServer, name: str, certificates: TlsCertificates) -> XmppClient:
    jid, password = server.account(name)
    return login(jid, password, server.c2s_port, available=True, ca_file=certificates.ca_file)


def _session_line(process: ComponentProcess) -> str:
    return process.wait_for(r"Session of bot@localhost/", timeout=LOGIN_TIMEOUT)


@contextlib.contextmanager
def _behind_a_proxy(
    server: XmppServer,
    certificates: TlsCertificates,
    starter: ComponentStarter,
    handlers: list[str],
    **settings: Any,
) -> Iterator[tuple[CuttableProxy, ComponentProcess]]:
    """The bot logged in through a proxy whose connections a test can cut."""
    proxy = CuttableProxy(server.c2s_port)
    try:
        process = starter.account(
            server,
            trust_roots=certificates.ca_file,
            port=proxy.port,
            handlers=handlers,
            **settings,
        )
        _session_line(process)
        yield proxy, process
    finally:
        proxy.stop()


def _assert_refused(process: ComponentProcess, why: str) -> None:
    """The account's log-in is refused for ``why`` (a pattern), and no
    session ever starts."""
    process.wait_for(rf"Could not connect bot@localhost: {why}", timeout=LOGIN_TIMEOUT)
    assert process.count("Session of") == 0


def test_an_account_logs_in_over_starttls_with_scram_and_echoes_a_real_client(
    tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates, starter: ComponentStarter
) -> None:
    process = starter.account(tls_xmpp_server, trust_roots=tls_certificates.ca_file, handlers=ECHO)
    line = _session_line(process)
    assert f"TLS, {STRONGEST[tls_xmpp_server.name]}, stream management resumable" in line
    with _client(tls_xmpp_server, "alice", tls_certificates) as alice:
        answer = alice.chat(BOT, "hello")
        assert answer.body == "echo: hello"
        assert answer.sender == f"{BOT}/empc"  # a client answers from its full JID
        (identity,) = alice.disco_info(f"{BOT}/empc").identities
        assert (identity["category"], identity["type"]) == ("client", "bot")


def test_an_account_logs_in_with_scram_sha_1_where_the_server_offers_only_it(
    prosody_server: XmppServer, starter: ComponentStarter
) -> None:
    # The plain Prosody keeps SCRAM-SHA-1 hashes (its default) and offers no
    # TLS; an account that allows a clear stream logs in with SHA-1.
    process = starter.account(prosody_server, trust_roots=None, handlers=ECHO)
    assert "no TLS, SCRAM-SHA-1" in _session_line(process)
    jid, password = prosody_server.account("alice")
    with login(jid, password, prosody_server.c2s_port) as alice:
        assert alice.chat(BOT, "sha-1").body == "echo: sha-1"


def test_a_wrong_password_is_refused_permanently_with_a_clear_line(
    tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates, starter: ComponentStarter
) -> None:
    process = starter.account(
        tls_xmpp_server, trust_roots=tls_certificates.ca_file, password="not-the-password"
    )
    process.wait_for(
        r"Could not connect bot@localhost: not-authorized: the password for that JID is wrong",
        timeout=LOGIN_TIMEOUT,
    )
    process.wait_for(r"Next attempt for bot@localhost in 30\.0 seconds", timeout=5)
    assert process.count("Traceback") == 0


def test_a_server_certificate_for_another_name_is_refused(
    wrong_name_xmpp_server: XmppServer,
    tls_certificates: TlsCertificates,
    starter: ComponentStarter,
) -> None:
    process = starter.account(wrong_name_xmpp_server, trust_roots=tls_certificates.ca_file)
    _assert_refused(process, r"the server's TLS certificate is not valid")


def test_a_server_without_tls_is_refused_when_tls_is_required(
    prosody_server: XmppServer, tls_certificates: TlsCertificates, starter: ComponentStarter
) -> None:
    process = starter.account(prosody_server, trust_roots=tls_certificates.ca_file)
    _assert_refused(process, r"the server does not offer TLS, and the account requires it")


def test_presence_subscriptions_are_answered_as_the_config_says(
    tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates, starter: ComponentStarter
) -> None:
    process = starter.account(
        tls_xmpp_server,
        trust_roots=tls_certificates.ca_file,
        account={"subscriptions": ["alice@localhost"]},
    )
    _session_line(process)
    with (
        _client(tls_xmpp_server, "alice", tls_certificates) as alice,
        _client(tls_xmpp_server, "carol", tls_certificates) as carol,
    ):
        assert alice.subscribe(BOT).type == "subscribed"
        carol.send_presence(BOT, "subscribe")
        refused = carol.wait_for(BOT, lambda p: p.type == "unsubscribed", kind="presence")
        assert refused.sender == BOT


def test_stream_management_resumes_after_a_cut_and_delivers_each_message_once(
    tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates, starter: ComponentStarter
) -> None:
    with _behind_a_proxy(tls_xmpp_server, tls_certificates, starter, ECHO) as (proxy, process):
        with _client(tls_xmpp_server, "alice", tls_certificates) as alice:
            assert alice.chat(BOT, "before").body == "echo: before"
            assert proxy.cut() == 1
            # Sent while the link is down: the server keeps them for the
            # session, and hands them over once it is resumed.
            during = [f"during {n}" for n in range(5)]
            for body in during:
                alice.send_message(BOT, body)
            process.wait_for(r"Resumed the session of bot@localhost", timeout=LOGIN_TIMEOUT)
            echoes = [alice.wait_for_message(f"{BOT}/empc", _body(f"echo: {b}")) for b in during]
            assert [e.body for e in echoes] == [f"echo: {b}" for b in during]
            assert alice.chat(BOT, "after").body == "echo: after"
            # Exactly once: nothing more comes.
            extra = alice.take(f"{BOT}/empc", wait=1.0)
            assert [e.body for e in extra] == []
        assert process.count("Session of bot@localhost/") == 1  # resumed, never bound anew
        assert process.count("may not have arrived") == 0


def _body(expected: str) -> Callable[[Received], bool]:
    return lambda received: received.body == expected


def test_check_connect_logs_an_account_in(
    tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates, tmp_path: Path
) -> None:
    # `empc check --connect`: a log-in without any presence, then a clean close.
    jid, password = tls_xmpp_server.bot
    config = tmp_path / "account.yaml"
    config.write_text(
        "accounts:\n"
        f"  - jid: {jid}\n"
        f"    password: {password}\n"
        f"    server: tcp:host=127.0.0.1:port={tls_xmpp_server.c2s_port}\n"
        f"    trust_roots: {tls_certificates.ca_file}\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "empc", "check", "-c", str(config), "--connect"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"log-in of {jid}/" in result.stdout
    assert result.stdout.rstrip().endswith("accepted")
    assert time.monotonic() - started < 60


def test_an_account_logs_in_over_direct_tls(
    tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates, starter: ComponentStarter
) -> None:
    # XEP-0368: a tls: endpoint; Twisted verifies the certificate for its host.
    port = tls_xmpp_server.direct_tls_port
    endpoint = f"tls:host=localhost:port={port}:trustRoots={tls_certificates.ca_dir}"
    process = starter.account(
        tls_xmpp_server,
        trust_roots=None,  # the endpoint's trustRoots= instead
        handlers=ECHO,
        account={"server": endpoint, "tls": "required"},
    )
    assert f"TLS, {STRONGEST[tls_xmpp_server.name]}" in _session_line(process)
    with _client(tls_xmpp_server, "alice", tls_certificates) as alice:
        assert alice.chat(BOT, "direct").body == "echo: direct"


def test_an_answer_finished_while_the_link_is_down_arrives_once_it_is_resumed(
    tls_xmpp_server: XmppServer, tls_certificates: TlsCertificates, starter: ComponentStarter
) -> None:
    # The server counted the message as handled before the cut; the echo,
    # ready while the link is down, waits for the resumed session.
    with _behind_a_proxy(
        tls_xmpp_server,
        tls_certificates,
        starter,
        ["sample_handlers:SlowEcho"],
        initial_delay=3,  # back after the echo is ready (LINGER = 1.5 s)
        max_delay=4,
    ) as (proxy, process):
        with _client(tls_xmpp_server, "alice", tls_certificates) as alice:
            alice.send_message(BOT, "slow")
            time.sleep(0.5)  # the bot has the message; its echo is 1 s away
            assert proxy.cut() == 1
            process.wait_for(r"Resumed the session of bot@localhost", timeout=LOGIN_TIMEOUT)
            echo = alice.wait_for_message(f"{BOT}/empc", _body("late echo: slow"))
            assert echo.body == "late echo: slow"
            assert alice.take(f"{BOT}/empc", wait=1.0) == []
        assert process.count("never sent") == 0
