"""The installed ``empc check --connect`` asks real Prosody once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from component import component_config, tcp_endpoint
from servers import XmppServer

pytestmark = pytest.mark.integration

DOMAIN = "echo.localhost"


def check_connect(
    server: XmppServer, secret: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "empc.yaml"
    entry = {"domain": DOMAIN, "server": tcp_endpoint(server.component_port), "secret": secret}
    config.write_text(component_config([entry]), encoding="utf-8")
    empc = Path(sys.executable).parent / "empc"
    return subprocess.run(
        [str(empc), "check", "-c", str(config), "--connect", "--timeout", "10"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_connect_reports_accepted_for_the_right_secret_and_not_authorized_otherwise(
    prosody_server: XmppServer, tmp_path: Path
) -> None:
    prosody_server.start()
    right = check_connect(prosody_server, prosody_server.component(DOMAIN).secret, tmp_path)
    assert right.returncode == 0, right.stderr
    assert right.stdout.splitlines()[-1] == f"handshake of {DOMAIN}: accepted"

    wrong = check_connect(prosody_server, "not-the-secret", tmp_path)
    assert wrong.returncode == 1
    assert wrong.stdout.splitlines()[-1] == (
        f"handshake of {DOMAIN}: not-authorized: the secret is wrong"
    )
