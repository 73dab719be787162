"""The README's main job: ``bash scripts/demo.sh --play`` works end to end.

It starts a real Prosody and the tweeter component, and the scripted demo
client plays its conversation against them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from servers import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DONE = "Demo finished: every step worked."


def test_demo_script_plays_the_tweeter_conversation(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "C2S_PORT": str(free_port()),
        "COMPONENT_PORT": str(free_port()),
        "DEMO_DIR": str(tmp_path / "demo"),
        "SKIP_SETUP": "1",  # the test command has installed everything
    }
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        script = subprocess.Popen(
            ["bash", "scripts/demo.sh", "--play"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while DONE not in log.read_text() and time.monotonic() < deadline:
            assert script.poll() is None, log.read_text()
            time.sleep(0.5)
        assert DONE in log.read_text(), log.read_text()
    finally:
        script.send_signal(signal.SIGTERM)  # the script stops what it started
        try:
            script.wait(timeout=20)
        finally:
            os.killpg(script.pid, signal.SIGKILL) if script.poll() is None else None
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True
    ).stdout
    assert leftovers == "", f"processes left running: {leftovers}"
