"""Deployments from the README, against real servers: TLS to ejabberd's
component listener, several processes for one domain behind ejabberd (which
balances between them), and a second process refused by Prosody with
``conflict`` that takes over once the first one stops.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from client import XmppClient, login
from component import ComponentProcess, CountingProxy, StartComponent
from sample_handlers import NS_WHOAMI
from servers import LOOPBACK, EjabberdServer, ServiceListener, XmppServer, free_port
from tls import TlsCertificates

pytestmark = pytest.mark.integration

DOMAIN = "echo.localhost"
CONNECTED = re.escape(f"Component {DOMAIN} connected")
COULD_NOT_CONNECT = re.escape(f"Could not connect {DOMAIN}:")
CONNECT_TIMEOUT = 20.0
# Small reconnect delays, so that a retry loop shows within seconds.
BACKOFF = {"initial_delay": 0.5, "max_delay": 2}
# How long connection attempts are counted, from the first failure. With
# the delays above (0.5 s, then 1 s, then 2 s, each stretched by up to half
# by the jitter) the retries come at least 0.5, 1.5 and 3.5 s after it, so
# 2 or 3 of them fall in this window (4 leaves room for a slow machine); a
# retry loop without backoff would make dozens or hundreds.
WATCH = 4.0
MIN_ATTEMPTS, MAX_ATTEMPTS = 2, 4
# ClientService's log line for each retry it schedules.
RETRY_DELAY = re.compile(r"Scheduling retry \d+ to connect .* in ([0-9.]+) seconds")
PINGS = 20
STANDBY_DELAY = 1.0
STANDING_BY = re.escape(f"Another process serves {DOMAIN}: standing by")
WHOAMI = f"<whoami xmlns='{NS_WHOAMI}'/>"


def _client(server: XmppServer) -> XmppClient:
    jid, password = server.users[0]
    return login(jid, password, server.c2s_port)


def _whoami(client: XmppClient) -> int:
    """The PID of the component process that answered."""
    reply = client.iq(DOMAIN, WHOAMI)
    assert reply.type == "result", reply.xml
    answer = reply.element.find(f"{{{NS_WHOAMI}}}whoami")
    assert answer is not None, reply.xml
    return int(answer.get("pid", "0"))


def _check_retries_back_off(proxy: CountingProxy, component: ComponentProcess) -> None:
    """Once ``component`` has logged its first failure, it keeps trying
    (through ``proxy``, which counts the attempts) but not in a tight loop:
    its first delay is about initial_delay, and the second is longer."""
    before = proxy.connections
    time.sleep(WATCH)
    attempts = proxy.connections - before
    log = component.output()
    assert MIN_ATTEMPTS <= attempts <= MAX_ATTEMPTS, (
        f"{attempts} connection attempts in {WATCH} s after the first failure\n{log}"
    )
    delays = [float(m.group(1)) for line in component.lines if (m := RETRY_DELAY.search(line))]
    assert len(delays) >= 2, log
    initial, maximum = BACKOFF["initial_delay"], BACKOFF["max_delay"]
    assert initial <= delays[0] <= initial * 1.5, log
    assert delays[0] < delays[1] <= maximum * 1.5, log


@dataclass(frozen=True)
class TlsEjabberd:
    """An ejabberd with two more component listeners, direct TLS: one with
    a certificate for localhost (``right_port``), one with a certificate for
    another name (``wrong_port``)."""

    server: EjabberdServer
    certificates: TlsCertificates
    right_port: int
    wrong_port: int

    def endpoint(self, port: int) -> str:
        """A TLS endpoint verifying the name localhost, connecting to
        ``port`` on 127.0.0.1 (never ::1, where ejabberd does not listen)."""
        return (
            f"tls:host=localhost:port={port}:trustRoots={self.certificates.ca_dir}"
            f":endpoint=tcp\\:{LOOPBACK}\\:{port}"
        )


@pytest.fixture(scope="module")
def tls_ejabberd(
    tmp_path_factory: pytest.TempPathFactory, tls_certificates: TlsCertificates
) -> Iterator[TlsEjabberd]:
    certificates = tls_certificates
    right_port, wrong_port = free_port(), free_port()
    server = EjabberdServer(
        tmp_path_factory.mktemp("ejabberd-tls"),
        service_listeners=[
            ServiceListener(right_port, certificates.server.combined),
            ServiceListener(wrong_port, certificates.wrong_name.combined),
        ],
    )
    try:
        server.start()
        yield TlsEjabberd(server, certificates, right_port, wrong_port)
    finally:
        server.stop()


# -- TLS to ejabberd --------------------------------------------------------


def test_tls_handshake_and_ping(tls_ejabberd: TlsEjabberd, start_component: StartComponent) -> None:
    server = tls_ejabberd.server
    component = start_component(
        server,
        components=[{"domain": DOMAIN, "server": tls_ejabberd.endpoint(tls_ejabberd.right_port)}],
    )
    line = component.wait_for(CONNECTED, CONNECT_TIMEOUT)
    assert str(tls_ejabberd.right_port) in line, line  # the TLS listener, not the plain one
    with _client(server) as client:
        reply = client.ping(DOMAIN)
    assert reply.type == "result", reply.xml
    assert component.count(COULD_NOT_CONNECT) == 0, component.output()


def test_tls_certificate_for_another_name_is_refused(
    tls_ejabberd: TlsEjabberd, start_component: StartComponent
) -> None:
    # The proxy passes the TLS bytes through, counting the connections.
    proxy = CountingProxy(tls_ejabberd.wrong_port)
    try:
        component = start_component(
            tls_ejabberd.server,
            components=[{"domain": DOMAIN, "server": tls_ejabberd.endpoint(proxy.port)}],
            **BACKOFF,
        )
        line = component.wait_for(COULD_NOT_CONNECT, CONNECT_TIMEOUT)
        _check_retries_back_off(proxy, component)
    finally:
        proxy.stop()
    log = component.output()
    assert re.search(r"(?i)certificate|verif", line), f"no certificate failure in {line!r}\n{log}"
    assert component.count(CONNECTED) == 0, log
    assert component.returncode is None, log


# -- several processes for one domain ---------------------------------------


def test_ejabberd_balances_between_two_processes(
    ejabberd_server: XmppServer, start_component: StartComponent
) -> None:
    ejabberd_server.start()  # a previous test may have stopped it
    first = start_component(ejabberd_server, handlers=["sample_handlers:WhoAmI"])
    second = start_component(ejabberd_server, handlers=["sample_handlers:WhoAmI"])
    for process in (first, second):
        process.wait_for(CONNECTED, CONNECT_TIMEOUT)
    with _client(ejabberd_server) as client:
        pings = [client.ping(DOMAIN) for _ in range(PINGS)]
        answered_by = [_whoami(client) for _ in range(PINGS)]
    assert [reply.type for reply in pings] == ["result"] * PINGS, [r.xml for r in pings]
    # Random balancing: one process answering all 20 has odds of 2 in a million.
    assert set(answered_by) == {first.pid, second.pid}, answered_by
    for process in (first, second):
        assert process.count(COULD_NOT_CONNECT) == 0, process.output()


def test_prosody_refuses_a_second_process_which_stands_by_and_takes_over(
    prosody_server: XmppServer, start_component: StartComponent
) -> None:
    prosody_server.start()  # a previous test may have stopped it
    first = start_component(prosody_server, handlers=["sample_handlers:WhoAmI"])
    first.wait_for(CONNECTED, CONNECT_TIMEOUT)
    proxy = CountingProxy(prosody_server.component_port)
    try:
        second = start_component(
            prosody_server,
            handlers=["sample_handlers:WhoAmI"],
            port=proxy.port,
            standby_delay=STANDBY_DELAY,
        )
        second.wait_for(STANDING_BY, CONNECT_TIMEOUT)
        # A steady try every standby_delay (1 to 1.5 s with the jitter),
        # said once, not a loop and not a growing backoff.
        before = proxy.connections
        time.sleep(WATCH)
        attempts = proxy.connections - before
        assert 2 <= attempts <= 5, f"{attempts} attempts in {WATCH} s\n{second.output()}"
        assert second.count(STANDING_BY) == 1, second.output()
        assert second.count(COULD_NOT_CONNECT) == 0, second.output()
        assert second.count(CONNECTED) == 0, second.output()
        with _client(prosody_server) as client:
            assert _whoami(client) == first.pid

        first.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert first.wait(10) == 0, first.output()
        second.wait_for(CONNECTED, 10)
        # Within a standby delay or two of the first one's going.
        assert time.monotonic() - stopped < 4 * STANDBY_DELAY, second.output()
        with _client(prosody_server) as client:
            reply = client.ping(DOMAIN)
            assert reply.type == "result", reply.xml
            assert _whoami(client) == second.pid
    finally:
        proxy.stop()
