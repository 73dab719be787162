"""JSON log lines, and how ``twistd empc`` chooses them."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import LogLevel
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.scripts.twistd import ServerOptions

from empc._config import ConfigError, Secret, load_config
from empc._logging import JSONLinesObserver, event_as_json, stdout_observer
from empc._tap import Options

CONFIG = """components:
  - domain: echo.example.org
    secret: s3cret
"""


def event(**fields: Any) -> dict[str, Any]:
    return {
        "log_format": "Linked {domain}",
        "log_level": LogLevel.info,
        "log_namespace": "empc._service",
        "log_time": 1_700_000_000.25,
        "log_logger": object(),
        "log_source": None,
        "domain": "echo.example.org",
        **fields,
    }


def test_an_event_is_one_object_with_time_level_namespace_message_and_fields() -> None:
    assert json.loads(event_as_json(event())) == {
        "time": "2023-11-14T22:13:20.250000+00:00",
        "level": "info",
        "namespace": "empc._service",
        "message": "Linked echo.example.org",
        "domain": "echo.example.org",
    }


def test_the_observer_writes_one_line_per_event() -> None:
    out = io.StringIO()
    observer = JSONLinesObserver(out)
    observer(event())
    observer(event(domain="two.example.org"))
    lines = out.getvalue().split("\n")
    assert lines[2] == ""
    assert [json.loads(line)["domain"] for line in lines[:2]] == [
        "echo.example.org",
        "two.example.org",
    ]


def test_a_message_with_newlines_stays_on_one_line() -> None:
    assert "\n" not in event_as_json(event(domain="a\nb"))


def test_a_field_named_like_a_reserved_key_is_prefixed() -> None:
    record = json.loads(event_as_json(event(message="from the field", level=3)))
    assert record["message"] == "Linked echo.example.org"
    assert record["field_message"] == "from the field"
    assert record["field_level"] == 3


def test_a_value_json_cannot_hold_is_written_as_its_text() -> None:
    record = json.loads(event_as_json(event(secret=Secret("hunter2"), ratio=float("nan"))))
    assert record["secret"] == "Secret('********')"
    assert record["ratio"] == "nan"


def test_a_failure_brings_its_traceback() -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        failure = Failure()
    record = json.loads(event_as_json(event(log_failure=failure)))
    assert "ValueError: bad value" in record["traceback"]


# Choosing the format


def write(tmp_path: Path) -> str:
    path = tmp_path / "empc.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return str(path)


def twistd(tmp_path: Path, *arguments: str, log_format: str = "json") -> ServerOptions:
    options = ServerOptions()
    options.parseOptions([*arguments, "empc", "-c", write(tmp_path), "--log-format", log_format])
    return options


def test_log_format_json_makes_twistd_log_json_lines(tmp_path: Path) -> None:
    assert isinstance(twistd(tmp_path, "--nodaemon")["logger"](), JSONLinesObserver)


def test_the_config_s_log_format_applies_without_the_option(tmp_path: Path) -> None:
    path = tmp_path / "json.yaml"
    path.write_text(CONFIG + "logging: {format: json}\n", encoding="utf-8")
    options = ServerOptions()
    options.parseOptions(["--nodaemon", "empc", "-c", str(path)])
    assert isinstance(options["logger"](), JSONLinesObserver)


def test_text_leaves_twistd_s_own_logging_alone(tmp_path: Path) -> None:
    assert twistd(tmp_path, log_format="text")["logger"] is None  # twistd's own text observer


def test_an_unknown_log_format_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(usage.UsageError, match="--log-format: expected text or json"):
        Options().parseOptions(["-c", write(tmp_path), "--log-format", "xml"])


@pytest.mark.parametrize(
    "other",
    [["--nodaemon", "--syslog"], ["--nodaemon", "--logger", "twisted.logger.FileLogObserver"]],
)
def test_json_with_another_observer_is_a_usage_error(tmp_path: Path, other: list[str]) -> None:
    with pytest.raises(usage.UsageError, match="cannot be combined"):
        twistd(tmp_path, *other)


@pytest.mark.parametrize("where", [[], ["--nodaemon", "--logfile", "empc.log"]])
def test_json_away_from_standard_output_is_a_usage_error(tmp_path: Path, where: list[str]) -> None:
    with pytest.raises(usage.UsageError, match="writes to standard output"):
        twistd(tmp_path, *where)


def test_json_with_logfile_dash_is_accepted(tmp_path: Path) -> None:
    options = twistd(tmp_path, "--nodaemon", "--logfile=-")
    assert isinstance(options["logger"](), JSONLinesObserver)


def test_the_json_observer_of_twistd_writes_to_standard_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stdout_observer()(event())
    assert json.loads(capsys.readouterr().out)["message"] == "Linked echo.example.org"


def test_the_debug_switch_turns_on_the_stanza_log_of_every_link(tmp_path: Path) -> None:
    path = tmp_path / "debug.yaml"
    path.write_text(CONFIG + "logging: {debug: true}\n", encoding="utf-8")
    assert load_config(str(path), {}).link.log_stanzas
    assert not load_config(write(tmp_path), {}).link.log_stanzas


def test_a_debug_switch_that_is_no_boolean_names_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "debug.yaml"
    path.write_text(CONFIG + "logging:\n  debug: loud\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"logging\.debug \(line \d+\): "):
        load_config(str(path), {})
