"""``empc check``: the report of what would run, its errors, and --connect."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import write_config
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.python.failure import Failure

from empc.__main__ import main
from empc._check import try_handshake
from empc._config import Config, load_config
from empc._tap import build_services

SAMPLE = """
    components:
      - domain: echo.example.org
        server: tcp:host=127.0.0.1:port=5347
        secret: test
        handlers: [support:Greeter]
    access_lists:
      admins: [alice@example.org]
    limits:
      max_in_flight: 7
"""
SERVER_HEADER = (
    b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
    b" xmlns='jabber:component:accept' id='3BF96D32' from='echo.example.org'>"
)
# XEP-0114's example: SHA-1 of the stream id 3BF96D32 and the secret "test".
HANDSHAKE = b">aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e</handshake>"
TIMEOUT = 10.0


def stream_error(condition: str) -> bytes:
    return (
        f"<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        "</stream:error></stream:stream>"
    ).encode()


class FakeEndpoint:
    """Connects to a StringTransport the test plays the server on."""

    def __init__(self) -> None:
        self.transport = StringTransport()
        self.protocol: IProtocol | None = None

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        protocol = factory.buildProtocol(self.transport.getPeer())
        assert protocol is not None
        self.protocol = protocol
        protocol.makeConnection(self.transport)
        return succeed(protocol)

    def server_says(self, data: bytes) -> None:
        assert self.protocol is not None
        self.protocol.dataReceived(data)

    def connection_lost(self) -> None:
        assert self.protocol is not None
        self.protocol.connectionLost(Failure(ConnectionDone()))


class Endpoint:
    """An endpoint whose connect() returns a given Deferred."""

    def __init__(self, outcome: Deferred[IProtocol]) -> None:
        self.outcome = outcome

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        return self.outcome


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, SAMPLE))


def handshake(config: Config, endpoint: object, clock: Clock) -> list[str]:
    """The answers try_handshake has given so far (at most one)."""
    answers: list[str] = []
    try_handshake(config.components[0], config, endpoint, clock, TIMEOUT).addCallback(  # type: ignore[arg-type]
        answers.append
    )
    return answers


def test_check_prints_components_handlers_routes_lists_and_limits_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "-c", write_config(tmp_path, SAMPLE)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "component echo.example.org" in out
    assert "  server: tcp:host=127.0.0.1:port=5347" in out
    assert "    support:Greeter" in out
    assert "      3. message chat (priority 0) -> Greeter.greet" in out
    assert "  admins: alice@example.org" in out
    assert "  max_in_flight: 7" in out
    assert "storage: none" in out


def test_check_never_prints_the_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["check", "-c", write_config(tmp_path, SAMPLE.replace("test", "s3cr3t-value"))])
    assert "s3cr3t-value" not in capsys.readouterr().out


def test_check_of_a_wrong_config_prints_the_config_error_in_one_line_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, SAMPLE.replace("max_in_flight: 7", "max_in_flight: 0"))
    assert main(["check", "-c", path]) == 1
    assert capsys.readouterr().err == (
        f"error: {path}: limits.max_in_flight (line 9): must be at least 1, got 0\n"
    )


def test_check_of_a_component_that_cannot_be_built_prints_the_start_up_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, SAMPLE.replace("port=5347", "port=none"))
    with pytest.raises(usage.UsageError) as start_up:
        build_services(load_config(path), Clock())
    assert main(["check", "-c", path]) == 1
    assert capsys.readouterr().err == f"error: {start_up.value}\n"


def test_handshake_accepted_is_reported_once_the_stream_is_closed(config: Config) -> None:
    endpoint, clock = FakeEndpoint(), Clock()
    answer = handshake(config, endpoint, clock)
    endpoint.server_says(SERVER_HEADER)
    assert endpoint.transport.value().endswith(HANDSHAKE)
    endpoint.server_says(b"<handshake/>")
    assert endpoint.transport.value().endswith(b"</stream:stream>")
    assert answer == []
    endpoint.server_says(b"</stream:stream>")
    endpoint.connection_lost()
    assert answer == ["accepted"]


@pytest.mark.parametrize(
    ("condition", "words"),
    [
        ("not-authorized", "not-authorized: the secret is wrong"),
        ("host-unknown", "host-unknown: the server has no component named echo.example.org"),
        ("conflict", "conflict: another connection already serves echo.example.org"),
    ],
)
def test_handshake_refused_is_reported_in_plain_words(
    config: Config, condition: str, words: str
) -> None:
    endpoint = FakeEndpoint()
    answer = handshake(config, endpoint, Clock())
    endpoint.server_says(SERVER_HEADER + stream_error(condition))
    endpoint.connection_lost()
    assert answer == [words]


def test_handshake_unanswered_for_the_timeout_is_timed_out(config: Config) -> None:
    endpoint, clock = FakeEndpoint(), Clock()
    answer = handshake(config, endpoint, clock)
    endpoint.server_says(SERVER_HEADER)
    clock.advance(TIMEOUT)
    assert endpoint.transport.disconnecting
    endpoint.connection_lost()
    assert answer == ["timed out"]


def test_connection_not_made_within_the_timeout_is_timed_out(config: Config) -> None:
    clock = Clock()
    answer = handshake(config, Endpoint(Deferred()), clock)
    clock.advance(TIMEOUT - 0.1)
    assert answer == []
    clock.advance(0.1)
    assert answer == ["timed out"]


def test_connection_refused_is_reported(config: Config) -> None:
    answer = handshake(config, Endpoint(fail(ConnectionRefusedError())), Clock())
    assert answer == ["connection refused"]


def test_check_finds_the_storage_beside_a_metrics_listener(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "state.sqlite3"
    extra = f"    storage: {{url: 'sqlite:///{database}'}}\n    metrics: {{}}\n"
    assert main(["check", "-c", write_config(tmp_path, SAMPLE + extra)]) == 0
    out = capsys.readouterr().out
    assert "storage: none" not in out
    assert "state.sqlite3" in out
