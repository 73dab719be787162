"""``empc new``, end to end: empc installed from this checkout into a fresh
virtual environment makes a project there; the project installs with its
test extra, passes its own tests, is checked by ``empc check``, runs under
``twistd`` against a real Prosody, answers a real client's IQ and chat
command, and stops cleanly; its systemd unit passes ``systemd-analyze
verify``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import component
import pytest
from client import login
from component import ComponentProcess
from servers import XmppServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NAME = "echo_bot"
DOMAIN = "echo.localhost"
NS = f"urn:example:{NAME}"
SECRET_VARIABLE = "ECHO_BOT_SECRET"
INSTALL_TIMEOUT = 600
COMMAND_TIMEOUT = 120
CONNECT_TIMEOUT = 20.0
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"


@dataclass(frozen=True)
class Generated:
    """The fresh environment's ``bin`` directory and the project it made."""

    bin: Path
    project: Path


def run(command: Sequence[str | Path], cwd: Path, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run ``command``; its output, or fail the test showing it."""
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        # The fresh environment's own packages, not this checkout's.
        env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{output}"
    return output


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    where = tmp_path_factory.mktemp("generated")
    venv = where / "venv"
    run([sys.executable, "-m", "venv", venv], where)
    bin = venv / "bin"
    run([bin / "pip", "install", "-q", ROOT], where, INSTALL_TIMEOUT)
    # The installed empc makes the project: its templates are in the wheel.
    run([bin / "empc", "new", NAME, "--domain", DOMAIN, "--directory", where], where)
    project = where / NAME
    run([bin / "pip", "install", "-q", f"{project}[test]"], where, INSTALL_TIMEOUT)
    return Generated(bin, project)


@pytest.fixture
def running(
    generated: Generated, prosody_server: XmppServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ComponentProcess]:
    """The project's component, run by the fresh environment's twistd, as
    its README says, linked to Prosody's component port."""
    prosody_server.start()  # a previous test may have stopped it
    config = generated.project / "config.yaml"
    text = config.read_text()
    assert "port=5347" in text, text
    config.write_text(text.replace("port=5347", f"port={prosody_server.component_port}"))
    secret = prosody_server.component(DOMAIN).secret
    monkeypatch.setenv(SECRET_VARIABLE, secret)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.setattr(
        component,
        "twistd_command",
        lambda config: [str(generated.bin / "twistd"), "-n", "--pidfile=", "empc", "-c", config],
    )
    process = ComponentProcess(config, generated.project).start()
    try:
        process.wait_for(re.escape(f"Component {DOMAIN} connected"), CONNECT_TIMEOUT)
        yield process
    finally:
        process.stop()


def test_the_generated_tests_pass_in_a_fresh_environment(generated: Generated) -> None:
    output = run([generated.bin / "pytest", "-q", "-p", "no:cacheprovider"], generated.project)
    assert "6 passed" in output, output


def test_empc_check_loads_the_config_naming_the_handler_by_entry_point(
    generated: Generated,
) -> None:
    output = run([generated.bin / "empc", "check", "-c", "config.yaml"], generated.project)
    assert DOMAIN in output, output
    assert "EchoBotHandler" in output, output


def test_the_component_answers_its_iq_and_its_chat_command_then_stops_cleanly(
    running: ComponentProcess, prosody_server: XmppServer
) -> None:
    jid, password = prosody_server.users[0]
    with login(jid, password, prosody_server.c2s_port) as client:
        reply = client.iq(DOMAIN, f"<hello xmlns='{NS}'/>")
        assert reply.type == "result", reply.xml
        assert reply.element.findtext(f"{{{NS}}}hello") == f"Hello from {DOMAIN}", reply.xml
        answer = client.chat(DOMAIN, "greet Alice")
        assert answer.body == "Hello, Alice!", answer.xml
    running.send_signal(signal.SIGTERM)
    assert running.wait(10) == 0, running.output()


def test_the_unit_passes_systemd_analyze_verify(generated: Generated, tmp_path: Path) -> None:
    # verify wants ExecStart's binary to exist: the fresh environment's
    # twistd stands in for /opt/NAME/bin/twistd; nothing else is changed.
    unit = (generated.project / f"{NAME}.service").read_text()
    original = f"ExecStart=/opt/{NAME}/bin/twistd "
    assert original in unit, unit
    installed = tmp_path / f"{NAME}.service"
    installed.write_text(unit.replace(original, f"ExecStart={generated.bin / 'twistd'} "))
    output = run([SYSTEMD_ANALYZE, "verify", installed], tmp_path)
    assert output == "", output
