"""examples/hack end to end: ``twistd empc`` on the example's own configs, as
a component beside real Prosody and ejabberd and as an account logged in to
them over STARTTLS, echoing a real client and answering its ping.

The configs are the shipped ones with only what the test servers impose
changed: their ports, a domain and an account they know, the private CA.
The ``hack`` package must be installed (its ``empc.handlers`` entry point
names the handler).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from client import XmppClient, login
from component import ComponentProcess, tcp_endpoint
from servers import XmppServer
from tls import TlsCertificates

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hack"
NS_HACK = "urn:example:hack"
START_TIMEOUT = 30.0

RunHack = Callable[[str, Callable[[dict[str, Any]], None]], ComponentProcess]


@pytest.fixture
def run_hack(tmp_path: Path) -> Iterator[RunHack]:
    """``run_hack(name, change)``: ``twistd empc`` on the example's config
    ``name`` once ``change`` has edited its one entry; stopped at teardown."""
    started: list[ComponentProcess] = []

    def run(name: str, change: Callable[[dict[str, Any]], None]) -> ComponentProcess:
        config = yaml.safe_load((EXAMPLE / name).read_text())
        (entry,) = config.get("components") or config["accounts"]
        change(entry)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config))
        started.append(ComponentProcess(path, tmp_path).start())
        return started[-1]

    yield run
    for process in started:
        process.stop()


def assert_the_hack_answers(client: XmppClient, chat_to: str, iq_to: str) -> None:
    """``chat_to`` echoes a chat message; ``iq_to`` pongs and shows the feature."""
    assert client.chat(chat_to, "hello hack").body == "hello hack"
    pong = client.iq(iq_to, f"<ping xmlns='{NS_HACK}'/>")
    assert pong.type == "result", pong.xml
    assert pong.element.find(f"{{{NS_HACK}}}pong") is not None, pong.xml
    assert NS_HACK in client.disco_info(iq_to).features


def test_the_hack_component_answers_a_real_client(
    xmpp_server: XmppServer, run_hack: RunHack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # hack.localhost is no domain of the test servers: it runs as echo.localhost.
    domain = "echo.localhost"
    monkeypatch.setenv("HACK_SECRET", xmpp_server.component(domain).secret)

    def change(entry: dict[str, Any]) -> None:
        entry.update(domain=domain, server=tcp_endpoint(xmpp_server.component_port))

    process = run_hack("component.yaml", change)
    process.wait_for(f"Component {domain} connected to", timeout=START_TIMEOUT)
    jid, password = xmpp_server.account("alice")
    with login(jid, password, xmpp_server.c2s_port) as alice:
        assert_the_hack_answers(alice, domain, domain)


def test_the_hack_account_answers_a_real_client(
    tls_xmpp_server: XmppServer,
    tls_certificates: TlsCertificates,
    run_hack: RunHack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The test servers' account for empc is bot@localhost; the resource stays.
    bot, password = tls_xmpp_server.bot
    monkeypatch.setenv("HACK_PASSWORD", password)

    def change(entry: dict[str, Any]) -> None:
        assert entry["tls"] == "required"
        entry.update(
            jid=entry["jid"].replace("hack@localhost", bot),
            server=tcp_endpoint(tls_xmpp_server.c2s_port),
            trust_roots=str(tls_certificates.ca_file),
        )

    process = run_hack("account.yaml", change)
    # The roster comes after the initial presence: the bot is available then.
    process.wait_for(f"Roster of {bot}", timeout=START_TIMEOUT)
    jid, alice_password = tls_xmpp_server.account("alice")
    ca_file = tls_certificates.ca_file
    with login(jid, alice_password, tls_xmpp_server.c2s_port, ca_file=ca_file) as alice:
        # Messages go to the bare JID; IQs to the full one (the server
        # answers those to the bare JID itself).
        assert_the_hack_answers(alice, bot, f"{bot}/hack")
