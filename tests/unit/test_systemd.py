"""systemd's notify protocol, against a datagram socket the test listens on."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_service import Harness
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs

from empc import _tap
from empc._config import ConfigError, load_config
from empc._connection import LinkSettings
from empc._service import ComponentService
from empc._systemd import (
    SystemdNotifier,
    notifier_from_environ,
    notify_address,
    watchdog_interval,
)
from empc._threads import ActionThreads


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[socket.socket]:
    """The listening end systemd would hold: a datagram socket in a file."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listening:
        listening.bind(str(tmp_path / "notify"))
        listening.setblocking(False)
        yield listening


def received(listening: socket.socket) -> list[str]:
    """Every datagram waiting on ``listening`` (bounded: a test sends few)."""
    messages = []
    for _ in range(100):
        try:
            messages.append(listening.recv(4096).decode())
        except BlockingIOError:
            break
    return messages


def notifier(
    listening: socket.socket,
    clock: Clock,
    domains: tuple[str, ...] = ("a.example.org", "b.example.org"),
    watchdog: float | None = None,
) -> SystemdNotifier:
    return SystemdNotifier(
        listening.getsockname(), domains, clock, ready_timeout=30, watchdog_interval=watchdog
    )


def test_starting_sends_the_status_and_not_ready(systemd: socket.socket) -> None:
    notifier(systemd, Clock()).startService()
    assert received(systemd) == [
        "STATUS=0 of 2 components linked; waiting: a.example.org, b.example.org"
    ]


def test_ready_goes_once_every_component_has_linked(systemd: socket.socket) -> None:
    service = notifier(systemd, Clock())
    service.startService()
    service.link_changed("a.example.org", True)
    service.link_changed("b.example.org", True)
    assert received(systemd)[1:] == [
        "STATUS=1 of 2 components linked; waiting: b.example.org",
        "READY=1\nSTATUS=2 of 2 components linked",
    ]


def test_ready_goes_only_once_when_a_link_comes_back(systemd: socket.socket) -> None:
    service = notifier(systemd, Clock(), domains=("a.example.org",))
    service.startService()
    service.link_changed("a.example.org", True)
    service.link_changed("a.example.org", False)
    service.link_changed("a.example.org", True)
    assert [m for m in received(systemd) if m.startswith("READY=1")] == [
        "READY=1\nSTATUS=1 of 1 components linked"
    ]


def test_links_up_before_the_start_make_the_start_ready(systemd: socket.socket) -> None:
    service = notifier(systemd, Clock(), domains=("a.example.org",))
    service.link_changed("a.example.org", True)
    assert received(systemd) == []
    service.startService()
    assert received(systemd) == ["READY=1\nSTATUS=1 of 1 components linked"]


def test_ready_goes_after_the_timeout_when_a_component_has_not_linked(
    systemd: socket.socket,
) -> None:
    clock = Clock()
    service = notifier(systemd, clock)
    service.startService()
    service.link_changed("a.example.org", True)
    clock.advance(29.9)
    assert not any(m.startswith("READY=1") for m in received(systemd))
    clock.advance(0.1)
    assert received(systemd) == ["READY=1\nSTATUS=1 of 2 components linked; waiting: b.example.org"]


def test_ready_after_the_timeout_is_not_sent_again_when_all_link(systemd: socket.socket) -> None:
    clock = Clock()
    service = notifier(systemd, clock, domains=("a.example.org",))
    service.startService()
    clock.advance(30)
    received(systemd)
    service.link_changed("a.example.org", True)
    assert received(systemd) == ["STATUS=1 of 1 components linked"]


def test_ready_cancels_the_timeout(systemd: socket.socket) -> None:
    clock = Clock()
    service = notifier(systemd, clock, domains=("a.example.org",))
    service.startService()
    service.link_changed("a.example.org", True)
    assert clock.getDelayedCalls() == []


def test_watchdog_beats_at_the_interval_while_the_reactor_runs(systemd: socket.socket) -> None:
    clock = Clock()
    service = notifier(systemd, clock, watchdog=5.0)
    service.startService()
    assert received(systemd).count("WATCHDOG=1") == 1
    clock.advance(4.9)
    assert received(systemd) == []
    clock.advance(0.1)
    assert received(systemd) == ["WATCHDOG=1"]
    clock.pump([5.0, 5.0])
    assert received(systemd) == ["WATCHDOG=1", "WATCHDOG=1"]


def test_stopping_sends_stopping_and_ends_the_watchdog_and_timeout(
    systemd: socket.socket,
) -> None:
    clock = Clock()
    service = notifier(systemd, clock, watchdog=5.0)
    service.startService()
    received(systemd)
    service.stopService()
    assert received(systemd) == ["STOPPING=1"]
    assert clock.getDelayedCalls() == []


def test_a_socket_nobody_listens_on_is_logged_not_raised(tmp_path: Path) -> None:
    service = SystemdNotifier(str(tmp_path / "gone"), ["a.example.org"], Clock(), ready_timeout=30)
    with capturedLogs() as events:
        service.startService()
    assert service.running
    assert [e["log_format"] for e in events] == ["Cannot notify systemd at {address!r}: {why}"]


def test_notify_socket_starting_with_at_is_an_abstract_address() -> None:
    assert notify_address("@/org/freedesktop/systemd1/notify") == (
        b"\0/org/freedesktop/systemd1/notify"
    )
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"


def test_abstract_notify_socket_is_reached(systemd: socket.socket) -> None:
    name = f"empc-test-{os.getpid()}-{id(systemd)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        abstract.bind(b"\0" + name.encode())
        abstract.setblocking(False)
        found = notifier_from_environ({"NOTIFY_SOCKET": "@" + name}, ["a"], Clock(), 30)
        assert found is not None
        found.send("READY=1")
        assert received(abstract) == ["READY=1"]


def test_without_notify_socket_there_is_no_notifier() -> None:
    assert notifier_from_environ({}, ["a.example.org"], Clock(), 30) is None


def test_watchdog_interval_is_half_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}, pid=7) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "7"}, pid=7) == 10.0


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "soon"},
        {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "8"},
    ],
)
def test_watchdog_is_off_unless_asked_for_this_process(environ: dict[str, str]) -> None:
    assert watchdog_interval(environ, pid=7) is None


def test_notifier_from_environ_beats_the_watchdog(systemd: socket.socket) -> None:
    environ = {"NOTIFY_SOCKET": systemd.getsockname(), "WATCHDOG_USEC": "2000000"}
    clock = Clock()
    found = notifier_from_environ(environ, ["a"], clock, 30, pid=os.getpid())
    assert found is not None
    found.startService()
    received(systemd)
    clock.advance(1.0)
    assert received(systemd) == ["WATCHDOG=1"]


# Wiring: the component services and the config


def reporting(links: list[bool]) -> Harness:
    """The service harness, its service telling ``links`` of each link."""
    harness = Harness()
    harness.service = ComponentService(
        harness.component,
        harness.endpoint,  # type: ignore[arg-type]
        "s3cret",
        harness.clock,
        link=LinkSettings(keepalive_interval=0, ping_interval=0),
        on_link=links.append,
    )
    return harness


def test_a_component_service_reports_its_link_going_up_and_down() -> None:
    links: list[bool] = []
    reporting(links).connect().lose(ConnectionLost())
    assert links == [True, False]


def test_a_refused_handshake_reports_no_link() -> None:
    links: list[bool] = []
    harness = reporting(links)
    harness.refuse(harness.start(), "not-authorized")
    assert links == []


def write_config(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "empc.yaml"
    path.write_text(
        "components:\n  - domain: a.example.org\n    secret: s3cret\n" + extra, encoding="utf-8"
    )
    return str(path)


def test_ready_timeout_defaults_to_30_seconds(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path), {}).ready_timeout == 30.0


def test_ready_timeout_is_read_from_the_systemd_section(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "systemd:\n  ready_timeout: 5\n"), {})
    assert config.ready_timeout == 5.0


def test_a_negative_ready_timeout_names_key_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"systemd\.ready_timeout \(line 5\): must be at least"):
        load_config(write_config(tmp_path, "systemd:\n  ready_timeout: -1\n"), {})


def test_without_notify_socket_the_services_are_built_as_before(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path), {})
    assert isinstance(_tap.build_services(config, MemoryReactorClock(), {}), ActionThreads)


def test_with_notify_socket_a_started_process_tells_systemd(
    tmp_path: Path, systemd: socket.socket
) -> None:
    config = load_config(write_config(tmp_path), {})
    reactor = MemoryReactorClock()
    top = _tap.build_services(config, reactor, {"NOTIFY_SOCKET": systemd.getsockname()})
    top.startService()
    assert received(systemd) == ["STATUS=0 of 1 components linked; waiting: a.example.org"]
    reactor.advance(30)
    assert received(systemd) == ["READY=1\nSTATUS=0 of 1 components linked; waiting: a.example.org"]
    top.stopService()


def test_stopping_the_process_tells_systemd(tmp_path: Path, systemd: socket.socket) -> None:
    config = load_config(write_config(tmp_path), {})
    environ = {"NOTIFY_SOCKET": systemd.getsockname()}
    top = _tap.build_services(config, MemoryReactorClock(), environ)
    top.startService()
    received(systemd)
    top.stopService()
    assert received(systemd) == ["STOPPING=1"]
