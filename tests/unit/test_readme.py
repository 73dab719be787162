"""The README's code runs: its handlers import, its examples of data forms,
commands, registration and PubSub run, its storage example compiles, and
its test-kit example passes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_examples_run(tmp_path: Path) -> None:
    echo, weather, settings, *_, tests = python_blocks()
    (tmp_path / "echo.py").write_text(echo)
    (tmp_path / "weather.py").write_text(weather)
    (tmp_path / "test_weather.py").write_text(tests)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_weather.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    imported = subprocess.run(
        [sys.executable, "-c", "import echo"], cwd=tmp_path, capture_output=True, text=True
    )
    assert imported.returncode == 0, imported.stderr
    (tmp_path / "settings.py").write_text(settings)
    forms = subprocess.run(
        [sys.executable, "settings.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert forms.returncode == 0, forms.stderr
    assert forms.stdout.startswith("bob None True [JID(local='carol'"), forms.stdout


def test_readme_building_block_examples_run(tmp_path: Path) -> None:
    _, _, _, commands, gateway, storage, pubsub, concierge, _ = python_blocks()
    compile(storage, "storage.py", "exec")  # it needs its migrations directory to run
    for name, code in (
        ("commands.py", commands),
        ("gateway.py", gateway),
        ("pubsub.py", pubsub),
        ("concierge.py", concierge),  # defines a handler: it imports
    ):
        (tmp_path / name).write_text(code)
        run = subprocess.run(
            [sys.executable, name], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, f"{name}: {run.stderr}"
