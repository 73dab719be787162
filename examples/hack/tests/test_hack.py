"""The hack, as a component and as an account: the same answers from either."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import hack
import pytest
from hack import NS_HACK, Hack

from empc import load_config
from empc.testing import FakeServer

HERE = Path(__file__).resolve().parent.parent
ALICE = "alice@localhost/phone"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


# Who answers: the component's domain, or the account's full JID.
@pytest.fixture(params=["hack.localhost", "hack@localhost/hack"], ids=["component", "account"])
def address(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def server(address: str) -> Iterator[FakeServer]:
    if "@" in address:
        server = FakeServer([Hack()], account=address)
    else:
        server = FakeServer([Hack()], domain=address)
    server.clear()  # an account's presence and roster request
    yield server
    server.stop()


def chat(body: str = "", extra: str = "", type: str = "chat") -> str:
    text = f"<body>{body}</body>" if body else ""
    return f"<message type='{type}' from='{ALICE}' id='m1'>{text}{extra}</message>"


def test_a_chat_message_comes_back_to_its_sender(server: FakeServer, address: str) -> None:
    (echo,) = server.deliver(chat("hello"))
    assert (echo.get("type"), echo.get("to"), echo.get("from")) == ("chat", ALICE, address)
    assert echo.get("id") == "m1"
    assert echo.findtext("{jabber:component:accept}body") == "hello"


def test_the_echo_keeps_the_thread(server: FakeServer) -> None:
    server.deliver(chat("hello", "<thread parent='p1'>t1</thread>"))
    server.only("self::c:message[c:body='hello'][c:thread[@parent='p1']='t1']")


def test_the_echo_carries_only_the_body_and_the_thread(server: FakeServer) -> None:
    state = "<active xmlns='http://jabber.org/protocol/chatstates'/>"
    (echo,) = server.deliver(chat("hello", f"<subject>s</subject>{state}"))
    assert [child.tag for child in echo] == ["{jabber:component:accept}body"]


def test_a_message_without_a_body_gets_no_echo(server: FakeServer) -> None:
    state = "<composing xmlns='http://jabber.org/protocol/chatstates'/>"
    assert server.deliver(chat(extra=state)) == []


def test_a_groupchat_message_gets_no_echo(server: FakeServer) -> None:
    # In a room, an echo would come back to the hack as a message again.
    assert server.deliver(chat("hello", type="groupchat")) == []


def test_its_ping_is_answered_with_a_pong(server: FakeServer, address: str) -> None:
    (pong,) = server.deliver(f"<iq type='get' id='p1'><ping xmlns='{NS_HACK}'/></iq>")
    assert (pong.get("type"), pong.get("id"), pong.get("from")) == ("result", "p1", address)
    assert [child.tag for child in pong] == [f"{{{NS_HACK}}}pong"]


def test_disco_info_shows_its_ping(server: FakeServer) -> None:
    server.deliver(f"<iq type='get'><query xmlns='{NS_DISCO_INFO}'/></iq>")
    server.only(f"self::c:iq[@type='result']/d:query/d:feature[@var='{NS_HACK}']", d=NS_DISCO_INFO)


def test_the_component_config_serves_hack_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HACK_SECRET", "s3cret")
    server = FakeServer.from_config(str(HERE / "component.yaml"))
    assert server.connected and server.domain == "hack.localhost"
    server.deliver(chat("hello"))
    server.only("self::c:message[@from='hack.localhost'][c:body='hello']")


def test_the_account_config_logs_in_as_hack_localhost() -> None:
    config = load_config(str(HERE / "account.yaml"), environ={"HACK_PASSWORD": "pw"})
    (account,) = config.accounts
    assert (account.jid, account.password.reveal()) == ("hack@localhost/hack", "pw")
    assert (account.server, account.tls) == ("tcp:host=127.0.0.1:port=5222", "required")
    (handler,) = account.handlers
    assert isinstance(handler, Hack)
    # Run as that account, it answers.
    server = FakeServer(account.handlers, account=account.jid)
    server.deliver(chat("hello"))
    server.only("self::c:message[@from='hack@localhost/hack'][c:body='hello']")


def test_the_readme_shows_the_handler_as_it_is() -> None:
    (shown,) = re.findall(r"```python\n(.*?)```", (HERE / "README.md").read_text(), re.S)
    assert hack.__file__ is not None
    assert shown in Path(hack.__file__).read_text()
