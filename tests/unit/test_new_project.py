"""``empc new NAME``: the project it makes loads, names its handler by entry
point and passes its own tests; it refuses bad names and existing folders
and overwrites nothing; its systemd unit keeps the README unit's shape."""

from __future__ import annotations

import configparser
import os
import re
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from empc.__main__ import main
from empc._config import ConfigError, load_config
from empc._new import NewProjectError, new_project

NAME = "hello_bot"
README = Path(__file__).resolve().parents[2] / "README.md"
FILES = {
    "pyproject.toml",
    "README.md",
    "config.yaml",
    ".gitignore",
    f"{NAME}.service",
    f"{NAME}.secret",
    f"src/{NAME}/__init__.py",
    f"src/{NAME}/handlers.py",
    "tests/test_handlers.py",
}
# The unit's settings that hold the project's name rather than empc's.
NAMED_SETTINGS = {
    "Description",
    "ExecStart",
    "LoadCredential",
    "StateDirectory",
    "WorkingDirectory",
}


def made(tmp_path: Path, *arguments: str) -> Path:
    """The project NAME made in tmp_path by ``empc new``."""
    assert main(["new", NAME, "--directory", str(tmp_path), *arguments]) == 0
    return tmp_path / NAME


def installed(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``project`` importable, with the entry points its pyproject
    declares, as an install would, and work in its folder."""
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    points = pyproject["project"]["entry-points"]
    dist_info = project / "site" / f"{NAME}-0.1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {NAME}\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in entries.items())
            for group, entries in points.items()
        )
    )
    monkeypatch.syspath_prepend(str(project / "site"))
    monkeypatch.syspath_prepend(str(project / "src"))
    monkeypatch.chdir(project)


@pytest.fixture(autouse=True)
def forget_the_package() -> Iterator[None]:
    """Each test imports its own project's package, and leaves none behind."""
    yield
    for module in [m for m in sys.modules if m == NAME or m.startswith(f"{NAME}.")]:
        del sys.modules[module]


def unit_settings(text: str) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return {section: dict(parser[section]) for section in parser.sections()}


# -- what it makes ---------------------------------------------------------------


def test_every_file_is_made_and_every_name_filled_in(tmp_path: Path) -> None:
    project = made(tmp_path)
    found = {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}
    assert found == FILES
    for relative in FILES - {f"{NAME}.secret"}:
        text = (project / relative).read_text()
        assert not re.search(r"\$\{?[a-z]", text), f"{relative} has a placeholder left"
    handlers = (project / f"src/{NAME}/handlers.py").read_text()
    assert "class HelloBotHandler(Handler):" in handlers
    assert 'NS = "urn:example:hello_bot"' in handlers


def test_the_secret_is_random_and_readable_by_its_owner_only(tmp_path: Path) -> None:
    first, second = new_project(NAME, tmp_path).path, new_project("other", tmp_path).path
    secret = first / f"{NAME}.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text().strip()) >= 32
    assert secret.read_text() != (second / "other.secret").read_text()


def test_pyproject_offers_the_handler_as_an_entry_point_and_a_test_extra(tmp_path: Path) -> None:
    pyproject = tomllib.loads((made(tmp_path) / "pyproject.toml").read_text())
    assert pyproject["build-system"]["build-backend"] == "hatchling.build"
    assert pyproject["project"]["name"] == NAME
    assert pyproject["project"]["dependencies"] == [f"empc>={version('empc')}"]
    assert pyproject["project"]["entry-points"]["empc.handlers"] == {
        NAME: f"{NAME}.handlers:HelloBotHandler"
    }
    assert any(
        r.startswith("pytest") for r in pyproject["project"]["optional-dependencies"]["test"]
    )
    assert pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [f"src/{NAME}"]


def test_config_loads_naming_the_handler_by_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = made(tmp_path)
    installed(project, monkeypatch)
    config = load_config("config.yaml", environ={})
    (component,) = config.components
    assert component.domain == "hello-bot.localhost"
    assert component.server == "tcp:host=127.0.0.1:port=5347"
    assert component.secret.reveal() == (project / f"{NAME}.secret").read_text().strip()
    (handler,) = component.handlers
    assert type(handler).__name__ == "HelloBotHandler"
    assert handler.config["greeting"] == "Hello"
    assert config.storage is not None
    assert config.storage.url == f"sqlite:///{NAME}.sqlite3"


def test_the_secret_variable_wins_over_the_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed(made(tmp_path), monkeypatch)
    config = load_config("config.yaml", environ={"HELLO_BOT_SECRET": "from-the-environment"})
    assert config.components[0].secret.reveal() == "from-the-environment"


def test_postgresql_storage_takes_its_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed(made(tmp_path, "--storage", "postgresql"), monkeypatch)
    config = load_config("config.yaml", environ={"HELLO_BOT_DB_PASSWORD": "pw"})
    assert config.storage is not None
    assert config.storage.url == f"postgresql://{NAME}@127.0.0.1:5432/{NAME}"
    assert config.storage.password is not None and config.storage.password.reveal() == "pw"
    with pytest.raises(ConfigError, match="HELLO_BOT_DB_PASSWORD is not set"):
        load_config("config.yaml", environ={})


def test_the_domain_option_reaches_config_readme_and_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = made(tmp_path, "--domain", "Echo.Localhost")
    installed(project, monkeypatch)
    assert load_config("config.yaml", environ={}).components[0].domain == "echo.localhost"
    readme = (project / "README.md").read_text()
    assert 'Component "echo.localhost"' in readme
    assert '"echo.localhost":\n        password:' in readme
    assert (
        "echo.localhost"
        in unit_settings((project / f"{NAME}.service").read_text())["Unit"]["Description"]
    )


def test_the_generated_tests_pass(tmp_path: Path) -> None:
    project = made(tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": "src"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "6 passed" in run.stdout, run.stdout


def test_the_unit_has_the_readme_units_settings(tmp_path: Path) -> None:
    (readme_unit,) = re.findall(r"```ini\n(.*?)```", README.read_text(), re.S)
    expected = unit_settings(readme_unit)
    unit = unit_settings((made(tmp_path) / f"{NAME}.service").read_text())
    assert {s: set(keys) for s, keys in unit.items()} == {
        s: set(keys) for s, keys in expected.items()
    }
    for section, settings in expected.items():
        for key, value in settings.items():
            if key not in NAMED_SETTINGS:
                assert unit[section][key] == value, f"[{section}] {key}"
    service = unit["Service"]
    assert service["ExecStart"].startswith(f"/opt/{NAME}/bin/twistd --nodaemon --pidfile= empc ")
    assert service["LoadCredential"] == f"secret:/etc/{NAME}/{NAME}.secret"
    assert service["StateDirectory"] == NAME
    assert service["WorkingDirectory"] == f"/var/lib/{NAME}"


def test_the_readme_tells_how_to_pass_the_secret_as_a_credential(tmp_path: Path) -> None:
    readme = (made(tmp_path) / "README.md").read_text()
    assert f"/run/credentials/{NAME}.service/secret" in readme


# -- what it refuses --------------------------------------------------------------


def test_an_existing_folder_is_refused_and_left_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / NAME).mkdir()
    (tmp_path / NAME / "config.yaml").write_text("mine")
    assert main(["new", NAME, "--directory", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / NAME} exists already; choose another name or folder\n"
    assert [p.name for p in (tmp_path / NAME).iterdir()] == ["config.yaml"]
    assert (tmp_path / NAME / "config.yaml").read_text() == "mine"


def test_an_existing_file_or_dangling_link_of_that_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("mine")
    (tmp_path / "b").symlink_to(tmp_path / "nowhere")
    for name in ("a", "b"):
        with pytest.raises(NewProjectError, match="exists already"):
            new_project(name, tmp_path)
    assert (tmp_path / "a").read_text() == "mine"
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "the project name is empty"),
        ("Hello", "use only lowercase ASCII letters, digits and underscores"),
        ("hello-bot", "use only lowercase ASCII letters, digits and underscores"),
        ("héllo", "use only lowercase ASCII letters, digits and underscores"),
        ("1bot", "it must start with a letter"),
        ("_bot", "it must start with a letter"),
        ("class", "it is a Python keyword"),
        ("json", "a module of that name exists already"),
        ("empc", "a module of that name exists already"),
    ],
)
def test_a_bad_name_is_refused_saying_which_rule_it_breaks(
    name: str, rule: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["new", name, "--directory", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert rule in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "domain",
    ["alice@example.org", "example.org/r", "[::1]", "%h.example.org", "-a.example", "a..b"],
)
def test_a_domain_that_is_not_a_host_name_is_refused(tmp_path: Path, domain: str) -> None:
    with pytest.raises(NewProjectError, match="give a host name alone"):
        new_project(NAME, tmp_path, domain=domain)
    assert list(tmp_path.iterdir()) == []


def test_a_name_an_installed_package_has_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NewProjectError, match="a module of that name exists already"):
        new_project("attr", tmp_path)
    assert list(tmp_path.iterdir()) == []
