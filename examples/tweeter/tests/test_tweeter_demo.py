"""The demo client's own failure path (its success needs a real server: see the README)."""

from __future__ import annotations

import pytest
from tweeter.demo import main, show


def test_the_demo_fails_clearly_without_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--server", "127.0.0.1", "--port", "1", "--timeout", "5"]) == 1
    assert "demo FAILED: alice@localhost: cannot connect to 127.0.0.1:1" in capsys.readouterr().err


def test_show_indents_continuation_lines(capsys: pytest.CaptureFixture[str]) -> None:
    show("bob", "<-", "t.example", "one\ntwo")
    assert capsys.readouterr().out == "bob   <- t.example: one\n                    two\n"
