"""The YAML config: defaults, secrets, handlers, and errors naming key and line."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from empc import _tap
from empc._config import Config, ConfigError, load_config
from empc._connection import LinkSettings
from empc._service import Backoff
from empc._threads import ActionThreads
from empc.handlers import Disco, Ping, Version
from empc.routing import Limits

SECRET = "Zq7-distinctive-SECRET-4711"
NO_ENV: dict[str, str] = {}


@pytest.fixture
def write(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a config file and return its path."""

    def write(text: str, name: str = "empc.yaml") -> str:
        path = tmp_path / name
        path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
        return str(path)

    return write


def error_of(path: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, NO_ENV if environ is None else environ)
    return str(caught.value)


MINIMAL = f"""
components:
  - domain: echo.example.org
    secret: {SECRET}
"""


# A valid config


def test_minimal_config_loads_one_component(write) -> None:  # type: ignore[no-untyped-def]
    config = load_config(write(MINIMAL), NO_ENV)
    assert isinstance(config, Config)
    [component] = config.components
    assert component.domain == "echo.example.org"
    assert component.secret.reveal() == SECRET


def test_minimal_config_gets_the_defaults(write) -> None:  # type: ignore[no-untyped-def]
    config = load_config(write(MINIMAL), NO_ENV)
    [component] = config.components
    assert component.server == "tcp:host=127.0.0.1:port=5347"
    assert component.handlers == []
    assert component.identity == ("component", "generic", "empc")
    assert component.builtins == {
        "ping": True,
        "disco": True,
        "version": True,
        "commands": True,
        "privilege": True,
        "delegation": True,
    }
    assert config.link == LinkSettings()
    assert config.backoff == Backoff()
    assert config.limits == Limits()
    assert config.action_timeout == 30.0


def test_config_records_its_path(write) -> None:  # type: ignore[no-untyped-def]
    path = write(MINIMAL)
    assert load_config(path, NO_ENV).path == path


def test_domain_is_kept_in_lower_case(write) -> None:  # type: ignore[no-untyped-def]
    path = write(f"components:\n  - domain: Echo.Example.ORG\n    secret: {SECRET}\n")
    assert load_config(path, NO_ENV).components[0].domain == "echo.example.org"


def test_every_section_is_read(write) -> None:  # type: ignore[no-untyped-def]
    path = write(
        f"""
        components:
          - domain: echo.example.org
            server: tcp:host=xmpp.example.org:port=5275
            secret: {SECRET}
            identity: {{category: gateway, type: irc, name: Bridge}}
            builtins: {{ping: false}}
        limits:
          max_stanza_size: 65536
          max_depth: 32
          action_timeout: 5
          grace: 20
          close_timeout: 2.5
          max_in_flight: 50
          rate: 4
          burst: 6
          threads: 3
          blocking_queue: 7
          max_send_queue: 100000
        keepalive:
          interval: 10
          ping_interval: 20
          ping_timeout: 3
          ping_target: example.org
        reconnect:
          initial_delay: 2
          max_delay: 30
          permanent_error_delay: 600
          stable_after: 90
        """
    )
    config = load_config(path, NO_ENV)
    [component] = config.components
    assert component.server == "tcp:host=xmpp.example.org:port=5275"
    assert component.identity == ("gateway", "irc", "Bridge")
    assert component.builtins == {
        "ping": False,
        "disco": True,
        "version": True,
        "commands": True,
        "privilege": True,
        "delegation": True,
    }
    assert config.action_timeout == 5.0
    assert config.link == LinkSettings(
        max_stanza_size=65536,
        max_depth=32,
        keepalive_interval=10.0,
        ping_interval=20.0,
        ping_timeout=3.0,
        ping_target="example.org",
        grace=20.0,
        close_timeout=2.5,
        max_send_queue=100000,
    )
    assert config.limits == Limits(max_in_flight=50, rate=4.0, burst=6, threads=3, blocking_queue=7)
    assert (
        config.backoff.initial_delay,
        config.backoff.max_delay,
        config.backoff.permanent_error_delay,
        config.backoff.stable_after,
    ) == (2.0, 30.0, 600.0, 90.0)


# Errors naming the key path and line


def test_missing_components_is_named(write) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write("limits:\n  action_timeout: 5\n"))
    assert "components" in message
    assert "missing" in message


def test_empty_file_is_missing_components(write) -> None:  # type: ignore[no-untyped-def]
    assert "components" in error_of(write(""))


def test_empty_components_list_is_refused(write) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write("components: []\n"))
    assert "components" in message
    assert "at least one" in message


def test_error_names_the_file(write) -> None:  # type: ignore[no-untyped-def]
    path = write("limits: {}\n")
    assert error_of(path).startswith(f"{path}: ")


def test_unknown_component_key_is_refused_with_key_path_and_line(write) -> None:  # type: ignore[no-untyped-def]
    path = write(
        f"""
        components:
          - domain: echo.example.org
            secret: {SECRET}
            bogus: 1
        """
    )
    message = error_of(path)
    assert "components[0].bogus (line 4)" in message
    assert "unknown key" in message


def test_unknown_top_level_key_is_refused_with_its_line(write) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write(MINIMAL + "loging: verbose\n"))
    assert "loging (line 4): unknown key" in message


def test_the_log_format_is_read(write) -> None:  # type: ignore[no-untyped-def]
    assert load_config(write(MINIMAL + "logging: {format: json}\n"), NO_ENV).log_format == "json"


def test_an_unknown_log_format_is_refused_with_its_line(write) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write(MINIMAL + "logging: {format: xml}\n"))
    assert "logging.format (line 4): expected text or json, got 'xml'" in message


def test_unknown_nested_key_is_refused_with_key_path(write) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write(MINIMAL + "keepalive:\n  intervall: 5\n"))
    assert "keepalive.intervall (line 5): unknown key" in message


def test_unknown_key_in_the_second_component_names_its_index(write) -> None:  # type: ignore[no-untyped-def]
    path = write(
        f"""
        components:
          - domain: a.example.org
            secret: {SECRET}
          - domain: b.example.org
            secret: {SECRET}
            identity: {{category: x, colour: red}}
        """
    )
    assert "components[1].identity.colour (line 6)" in error_of(path)


def test_wrong_type_of_a_number_is_named_with_its_line(write) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write(MINIMAL + "limits:\n  action_timeout: soon\n"))
    assert "limits.action_timeout (line 5)" in message
    assert "expected a number" in message


def test_boolean_is_not_a_number(write) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write(MINIMAL + "keepalive:\n  interval: true\n"))
    assert "keepalive.interval (line 5)" in message
    assert "expected a number" in message


def test_wrong_type_of_a_string_is_named_with_its_line(write) -> None:  # type: ignore[no-untyped-def]
    path = write(f"components:\n  - domain: 42\n    secret: {SECRET}\n")
    message = error_of(path)
    assert "components[0].domain (line 2)" in message
    assert "expected a string" in message


def test_wrong_type_of_a_boolean_is_named_with_its_line(write) -> None:  # type: ignore[no-untyped-def]
    path = write(MINIMAL + "    builtins: {ping: maybe}\n")
    message = error_of(path)
    assert "components[0].builtins.ping (line 4)" in message
    assert "expected true or false" in message


def test_a_built_in_may_be_given_its_config(write) -> None:  # type: ignore[no-untyped-def]
    path = write(MINIMAL + "    builtins: {commands: {idle_timeout: 300}}\n")
    [component] = load_config(path, NO_ENV).components
    assert component.builtins["commands"] is True
    assert component.builtin_config == {"commands": {"idle_timeout": 300}}


def test_a_built_in_s_bad_config_is_named_with_its_line(write) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write(MINIMAL + "    builtins: {commands: {idle_timeout: 0}}\n"))
    assert "components[0].builtins.commands (line 4)" in message
    assert "idle_timeout must be positive" in message


def test_section_that_is_not_a_mapping_is_refused(write) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write(MINIMAL + "limits: [1, 2]\n"))
    assert "limits (line 4)" in message
    assert "expected a mapping" in message


def test_components_that_is_not_a_list_is_refused(write) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write("components: echo.example.org\n"))
    assert "components (line 1)" in message
    assert "expected a list" in message


def test_number_below_its_minimum_is_refused(write) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write(MINIMAL + "limits:\n  max_stanza_size: 10\n"))
    assert "limits.max_stanza_size (line 5)" in message
    assert "at least" in message


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("limits:\n  burst: 0\n", "limits.burst (line 5): must be at least 1, got 0"),
        ("limits:\n  max_depth: 0\n", "limits.max_depth (line 5): must be at least 1, got 0"),
        (
            "limits:\n  max_send_queue: 10\n",
            "limits.max_send_queue (line 5): must be at least 1024, got 10",
        ),
        (
            "limits:\n  max_depth: 201\n",
            "limits.max_depth (line 5): must be at most 200, got 201",
        ),
        ("limits:\n  grace: -1\n", "limits.grace (line 5): must be at least 0, got -1"),
        (
            "limits:\n  close_timeout: 0.05\n",
            "limits.close_timeout (line 5): must be at least 0.1, got 0.05",
        ),
        ("limits:\n  threads: 0\n", "limits.threads (line 5): must be at least 1, got 0"),
        (
            "limits:\n  blocking_queue: -1\n",
            "limits.blocking_queue (line 5): must be at least 0, got -1",
        ),
        (
            "reconnect:\n  stable_after: -1\n",
            "reconnect.stable_after (line 5): must be at least 0.0, got -1",
        ),
    ],
)
def test_limit_out_of_its_range_is_refused_naming_key_and_line(
    write, line: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    assert error_of(write(MINIMAL + line)).endswith(message)


@pytest.mark.parametrize("key", ["max_depth", "threads", "blocking_queue", "burst"])
def test_count_with_a_fraction_is_refused(write, key: str) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write(MINIMAL + f"limits:\n  {key}: 2.5\n"))
    assert message.endswith(f"limits.{key} (line 5): expected a whole number, got 2.5")


@pytest.mark.parametrize("value", [".inf", ".nan"])
def test_number_that_is_not_finite_is_refused(write, value: str) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write(MINIMAL + f"limits:\n  threads: {value}\n"))
    assert "limits.threads (line 5): expected a finite number" in message


def test_count_written_with_a_zero_fraction_is_a_whole_number(write) -> None:  # type: ignore[no-untyped-def]
    config = load_config(write(MINIMAL + "limits:\n  threads: 4.0\n"), NO_ENV)
    assert config.limits.threads == 4


@pytest.mark.parametrize(
    ("line", "read"),
    [
        ("limits:\n  max_depth: 1\n", lambda c: c.link.max_depth == 1),
        ("limits:\n  max_depth: 200\n", lambda c: c.link.max_depth == 200),
        ("limits:\n  blocking_queue: 0\n", lambda c: c.limits.blocking_queue == 0),
        ("reconnect:\n  stable_after: 0\n", lambda c: c.backoff.stable_after == 0.0),
    ],
)
def test_limit_at_the_edge_of_its_range_is_accepted(write, line: str, read) -> None:  # type: ignore[no-untyped-def]
    assert read(load_config(write(MINIMAL + line), NO_ENV))


def test_missing_domain_is_named(write) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write(f"components:\n  - secret: {SECRET}\n"))
    assert "components[0].domain" in message
    assert "missing" in message


def test_domain_with_a_local_part_is_refused(write) -> None:  # type: ignore[no-untyped-def]
    path = write(f"components:\n  - domain: bot@example.org\n    secret: {SECRET}\n")
    message = error_of(path)
    assert "components[0].domain (line 2)" in message
    assert "bare domain" in message


def test_invalid_yaml_names_the_file(write) -> None:  # type: ignore[no-untyped-def]
    path = write("components: [\n  - domain: x\n")
    message = error_of(path)
    assert message.startswith(f"{path}: ")
    assert "not valid YAML" in message


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nowhere.yaml")
    message = error_of(path)
    assert message.startswith(f"{path}: ")
    assert "cannot read" in message


# Secrets


def test_secret_is_read_from_secret_file(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret_file = tmp_path / "echo.secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    path = write(f"components:\n  - domain: echo.example.org\n    secret_file: {secret_file}\n")
    assert load_config(path, NO_ENV).components[0].secret.reveal() == SECRET


def test_missing_secret_file_is_named(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "missing.secret"
    path = write(f"components:\n  - domain: echo.example.org\n    secret_file: {missing}\n")
    message = error_of(path)
    assert "components[0].secret_file (line 3)" in message
    assert str(missing) in message


def test_empty_secret_file_is_refused(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty.secret"
    empty.write_text("\n", encoding="utf-8")
    path = write(f"components:\n  - domain: echo.example.org\n    secret_file: {empty}\n")
    assert "is empty" in error_of(path)


def test_secret_and_secret_file_together_are_refused(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret_file = tmp_path / "echo.secret"
    secret_file.write_text("other", encoding="utf-8")
    path = write(MINIMAL + f"    secret_file: {secret_file}\n")
    assert "not both" in error_of(path)


def test_empc_secret_in_the_environment_wins_over_the_inline_secret(write) -> None:  # type: ignore[no-untyped-def]
    config = load_config(write(MINIMAL), {"EMPC_SECRET": "from-env"})
    assert config.components[0].secret.reveal() == "from-env"


def test_empc_secret_in_the_environment_wins_over_secret_file(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret_file = tmp_path / "echo.secret"
    secret_file.write_text(SECRET, encoding="utf-8")
    path = write(f"components:\n  - domain: echo.example.org\n    secret_file: {secret_file}\n")
    config = load_config(path, {"EMPC_SECRET": "from-env"})
    assert config.components[0].secret.reveal() == "from-env"


def test_empty_environment_variable_does_not_count(write) -> None:  # type: ignore[no-untyped-def]
    config = load_config(write(MINIMAL), {"EMPC_SECRET": ""})
    assert config.components[0].secret.reveal() == SECRET


def test_secret_env_renames_the_variable(write) -> None:  # type: ignore[no-untyped-def]
    path = write(MINIMAL + "    secret_env: ECHO_SECRET\n")
    config = load_config(path, {"ECHO_SECRET": "renamed", "EMPC_SECRET": "default"})
    assert config.components[0].secret.reveal() == "renamed"


def test_secret_env_alone_is_enough(write) -> None:  # type: ignore[no-untyped-def]
    path = write("components:\n  - domain: echo.example.org\n    secret_env: ECHO_SECRET\n")
    config = load_config(path, {"ECHO_SECRET": "renamed"})
    assert config.components[0].secret.reveal() == "renamed"


def test_no_secret_at_all_mentions_empc_secret(write) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write("components:\n  - domain: echo.example.org\n"))
    assert "components[0].secret" in message
    assert "EMPC_SECRET" in message


def test_no_secret_with_secret_env_mentions_that_variable(write) -> None:  # type: ignore[no-untyped-def]
    path = write("components:\n  - domain: echo.example.org\n    secret_env: ECHO_SECRET\n")
    assert "ECHO_SECRET" in error_of(path, {"EMPC_SECRET": "not this one"})


def test_secret_is_not_in_the_repr_of_the_config(write) -> None:  # type: ignore[no-untyped-def]
    config = load_config(write(MINIMAL), NO_ENV)
    assert SECRET not in repr(config)
    assert SECRET not in str(config.components[0].secret)


def test_secret_from_the_environment_is_not_in_the_repr_of_the_config(write) -> None:  # type: ignore[no-untyped-def]
    config = load_config(write(MINIMAL), {"EMPC_SECRET": SECRET + "-env"})
    assert SECRET not in repr(config)


@pytest.mark.parametrize(
    "tail",
    [
        "    bogus: 1\n",
        "    secret_file: /nonexistent\n",
        "    domain2: x\n",
        "limits:\n  action_timeout: never\n",
        "reconnect: 5\n",
    ],
)
def test_secret_is_not_in_config_error_messages(write, tail: str) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write(MINIMAL + tail))
    assert SECRET not in message


def test_secret_of_a_wrong_type_is_not_in_the_error_message(write) -> None:  # type: ignore[no-untyped-def]
    path = write(f"components:\n  - domain: echo.example.org\n    secret: [{SECRET}]\n")
    message = error_of(path)
    assert "components[0].secret (line 3)" in message
    assert SECRET not in message


def test_secret_is_not_in_the_error_message_of_invalid_yaml(write) -> None:  # type: ignore[no-untyped-def]
    # PyYAML's messages quote the offending line with its context; a syntax
    # error on the secret's own line must not put the secret in the message.
    path = write(f'components:\n  - domain: echo.example.org\n    secret: "{SECRET}\n')
    message = error_of(path)
    assert "not valid YAML" in message
    assert SECRET not in message


# Handlers


def test_handler_by_module_and_class(write) -> None:  # type: ignore[no-untyped-def]
    path = write(MINIMAL + "    handlers:\n      - empc.handlers:Ping\n")
    [handler] = load_config(path, NO_ENV).components[0].handlers
    assert isinstance(handler, Ping)
    assert handler.config == {}


def test_handler_with_a_config_mapping(write) -> None:  # type: ignore[no-untyped-def]
    path = write(
        MINIMAL
        + "    handlers:\n"
        + "      - class: empc.handlers:Version\n"
        + "        config: {name: weather-bot}\n"
    )
    [handler] = load_config(path, NO_ENV).components[0].handlers
    assert isinstance(handler, Version)
    assert handler.config == {"name": "weather-bot", "version": ""}


def test_handlers_keep_their_order(write) -> None:  # type: ignore[no-untyped-def]
    path = write(MINIMAL + "    handlers: [empc.handlers:Disco, empc.handlers:Ping]\n")
    handlers = load_config(path, NO_ENV).components[0].handlers
    assert [type(h) for h in handlers] == [Disco, Ping]


def test_handler_that_cannot_be_imported_is_named_with_its_key_path(write) -> None:  # type: ignore[no-untyped-def]
    path = write(MINIMAL + "    handlers:\n      - no_such_module_xyz:Thing\n")
    message = error_of(path)
    assert "components[0].handlers[0] (line 5)" in message
    assert "no_such_module_xyz:Thing" in message


def test_handler_class_missing_from_its_module_is_named(write) -> None:  # type: ignore[no-untyped-def]
    path = write(MINIMAL + "    handlers:\n      - empc.handlers:Pong\n")
    message = error_of(path)
    assert "components[0].handlers[0]" in message
    assert "empc.handlers:Pong" in message


def test_handler_mapping_with_a_bad_class_names_its_key_path(write) -> None:  # type: ignore[no-untyped-def]
    path = write(
        MINIMAL
        + "    handlers:\n      - empc.handlers:Ping\n      - class: no_such_module_xyz:Thing\n"
    )
    message = error_of(path)
    assert "components[0].handlers[1]" in message
    assert "no_such_module_xyz:Thing" in message


def test_handler_that_is_not_a_handler_subclass_is_refused(write) -> None:  # type: ignore[no-untyped-def]
    path = write(MINIMAL + "    handlers:\n      - empc.protocol:JID\n")
    message = error_of(path)
    assert "components[0].handlers[0]" in message
    assert "not a subclass of empc.Handler" in message


def test_handler_that_is_not_a_class_is_refused(write) -> None:  # type: ignore[no-untyped-def]
    path = write(MINIMAL + "    handlers:\n      - empc._config:load_config\n")
    assert "not a subclass of empc.Handler" in error_of(path)


def test_handler_name_without_a_colon_that_is_no_entry_point_is_refused(write) -> None:  # type: ignore[no-untyped-def]
    path = write(MINIMAL + "    handlers:\n      - surely-no-such-entry-point\n")
    message = error_of(path)
    assert "components[0].handlers[0]" in message
    assert "surely-no-such-entry-point" in message


def test_unknown_key_in_a_handler_mapping_is_refused(write) -> None:  # type: ignore[no-untyped-def]
    path = write(
        MINIMAL + "    handlers:\n      - class: empc.handlers:Ping\n        settings: {}\n"
    )
    assert "components[0].handlers[0].settings (line 6): unknown key" in error_of(path)


def test_handler_entry_of_a_wrong_type_is_refused(write) -> None:  # type: ignore[no-untyped-def]
    path = write(MINIMAL + "    handlers:\n      - 42\n")
    assert "components[0].handlers[0]" in error_of(path)


# twistd options


def test_tap_options_load_the_config(write, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("EMPC_SECRET", raising=False)
    options = _tap.Options()
    options.parseOptions(["-c", write(MINIMAL)])
    assert options["parsed"].components[0].domain == "echo.example.org"


def test_tap_options_turn_a_config_error_into_a_usage_error_with_the_same_message(
    write, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("EMPC_SECRET", raising=False)
    path = write(MINIMAL + "    bogus: 1\n")
    expected = error_of(path)
    with pytest.raises(usage.UsageError) as caught:
        _tap.Options().parseOptions(["-c", path])
    assert str(caught.value) == expected


def test_limits_threads_sizes_the_thread_pool(write) -> None:  # type: ignore[no-untyped-def]
    config = load_config(write(MINIMAL + "limits:\n  threads: 3\n"), NO_ENV)
    threads = _tap.build_services(config, MemoryReactorClock())
    assert isinstance(threads, ActionThreads)
    assert threads.size == 3


def test_falsy_section_of_a_wrong_type_is_refused(write) -> None:  # type: ignore[no-untyped-def]
    # Only an empty value (``limits:``) may stand for an empty mapping; a
    # falsy value of another type is as wrong as ``limits: 5``.
    message = error_of(write(MINIMAL + "limits: false\n"))
    assert "limits (line 4)" in message
    assert "expected a mapping" in message


def test_falsy_handlers_of_a_wrong_type_are_refused(write) -> None:  # type: ignore[no-untyped-def]
    message = error_of(write(MINIMAL + "    handlers: 0\n"))
    assert "components[0].handlers (line 4)" in message
    assert "expected a list" in message


def test_handler_named_by_an_installed_entry_point_is_loaded(
    write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    # A distribution installed on the path offers Version as "versioned".
    dist_info = tmp_path / "site" / "weather_plugin-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: weather-plugin\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[empc.handlers]\nversioned = empc.handlers:Version\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    path = write(MINIMAL + "    handlers:\n      - class: versioned\n        config: {name: w}\n")
    [component] = load_config(path, NO_ENV).components
    [handler] = component.handlers
    assert isinstance(handler, Version)
    assert handler.config["name"] == "w"


@pytest.mark.parametrize("prefix", ["*", "!"])
def test_an_unquoted_secret_read_as_an_alias_or_tag_is_not_in_the_error(write, prefix: str) -> None:  # type: ignore[no-untyped-def]
    path = write(f"components:\n  - domain: echo.example.org\n    secret: {prefix}{SECRET}\n")
    message = error_of(path)
    assert SECRET not in message
    assert "line 3" in message


def test_an_invalid_ping_target_is_refused(write) -> None:  # type: ignore[no-untyped-def]
    path = write(MINIMAL + "keepalive:\n  ping_target: 'a b@'\n")
    assert "keepalive.ping_target (line 5)" in error_of(path)


def test_server_domain_defaults_to_none_and_is_read_in_lower_case(write) -> None:  # type: ignore[no-untyped-def]
    [default] = load_config(write(MINIMAL), NO_ENV).components
    assert default.server_domain is None
    path = write(
        f"components:\n  - domain: echo.example.org\n    secret: {SECRET}\n"
        "    server_domain: XMPP.Example.NET\n"
    )
    [component] = load_config(path, NO_ENV).components
    assert component.server_domain == "xmpp.example.net"


@pytest.mark.parametrize("value", ["admin@example.org", "example.org/res"])
def test_a_server_domain_that_is_no_domain_names_key_and_line(write, value: str) -> None:  # type: ignore[no-untyped-def]
    path = write(
        f"components:\n  - domain: echo.example.org\n    secret: {SECRET}\n"
        f"    server_domain: {value}\n"
    )
    assert error_of(path).endswith(
        f"components[0].server_domain (line 4): a server's domain, not {value!r}"
    )
