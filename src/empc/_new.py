"""``empc new NAME``: a new component project, ready to test and to run.

The project is a folder of its own: a package in a src layout with one
handler (an IQ of its own namespace, and a command served as an ad-hoc
command and by chat), its tests on :mod:`empc.testing`, a ``pyproject.toml``
offering the handler under the ``empc.handlers`` entry point, a
``config.yaml`` naming it, a random component secret, a README with the
Prosody and ejabberd snippets, and a hardened systemd unit.

The files are rendered from the templates in ``_new_templates`` with
:class:`string.Template` and a handful of names; all of them are rendered
before the folder is made, and the folder must not exist: nothing is ever
overwritten.
"""

from __future__ import annotations

import keyword
import os
import re
import secrets
import string
import sys
from dataclasses import dataclass
from importlib.metadata import version
from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path

STORAGES = ("sqlite", "postgresql")

_TEMPLATES = files("empc") / "_new_templates"
_ALLOWED = re.compile(r"[a-z0-9_]+")
# Host name labels (RFC 1123): what a config, a unit file and a README can
# all carry as they are.
_DOMAIN = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")
# Names the project's package would hide from itself or from empc.
_TAKEN = frozenset(sys.stdlib_module_names) | {
    *("empc", "twisted", "zope", "lxml", "yaml", "sqlalchemy", "alembic", "psycopg"),
    *("prometheus_client", "pytest", "tests"),
}

_STORAGE_NOTES = {
    "sqlite": "The SQLite database then lives in `/var/lib/$name`, the unit's working directory.",
    "postgresql": (
        "PostgreSQL's password comes from the variable `${env}_DB_PASSWORD`: give it with\n"
        "`systemctl edit $name` (`[Service]`, then `Environment=${env}_DB_PASSWORD=...`)."
    ),
}


class NewProjectError(ValueError):
    """The project cannot be made; the message says why, in one line."""


@dataclass(frozen=True)
class Project:
    """What :func:`new_project` made: the folder and the files in it."""

    path: Path
    files: tuple[Path, ...]


def check_name(name: str) -> None:
    """Check that ``name`` can be the project's Python package.

    :raises NewProjectError: naming the rule ``name`` breaks: empty, a
        character other than a lowercase ASCII letter, a digit or an
        underscore, a first character other than a letter, a Python
        keyword, or the name of a module the project needs (the standard
        library's, empc's and its own ``tests``) or that is importable
        here already (any installed package's: the project would hide it).
    """
    if not name:
        raise NewProjectError("the project name is empty")
    if not _ALLOWED.fullmatch(name):
        raise NewProjectError(
            f"invalid project name {name!r}: use only lowercase ASCII letters, digits and "
            "underscores (it is the Python package's name)"
        )
    if not name[0].isalpha():
        raise NewProjectError(f"invalid project name {name!r}: it must start with a letter")
    if keyword.iskeyword(name):
        raise NewProjectError(f"invalid project name {name!r}: it is a Python keyword")
    if name in _TAKEN or find_spec(name) is not None:
        raise NewProjectError(
            f"invalid project name {name!r}: a module of that name exists already "
            "(the standard library's, an installed package's, or one empc needs)"
        )


def default_domain(name: str) -> str:
    """``NAME.localhost``, with underscores as hyphens (a host name has none)."""
    return f"{name.replace('_', '-')}.localhost"


def render(name: str, domain: str, storage: str) -> dict[str, str]:
    """Every file of the project, by its path relative to the project's folder.

    :raises NewProjectError: for a bad ``name`` (see :func:`check_name`), a
        ``domain`` that is not a host name, or an unknown ``storage``.
    """
    check_name(name)
    domain = domain.lower()  # as the server compares it
    if not _DOMAIN.fullmatch(domain):
        raise NewProjectError(
            f"invalid domain {domain!r}: give a host name alone (letters, digits and "
            "hyphens, in labels joined by dots), such as chat.example.org"
        )
    if storage not in STORAGES:
        raise NewProjectError(f"unknown storage {storage!r}: use one of {', '.join(STORAGES)}")
    names = {
        "name": name,
        # The suffix keeps the class apart from every other name of its modules.
        "handler": "".join(part.capitalize() for part in name.split("_")) + "Handler",
        "domain": domain,
        "env": name.upper(),
        "empc_version": version("empc"),
    }
    names["storage"] = _fill(f"config-{storage}.yaml", names).rstrip("\n")
    names["storage_note"] = string.Template(_STORAGE_NOTES[storage]).substitute(names)
    return {
        "pyproject.toml": _fill("pyproject.toml", names),
        "README.md": _fill("README.md", names),
        "config.yaml": _fill("config.yaml", names),
        ".gitignore": _fill("gitignore", names),
        f"{name}.service": _fill("service", names),
        f"src/{name}/__init__.py": _fill("__init__.py", names),
        f"src/{name}/handlers.py": _fill("handlers.py", names),
        "tests/test_handlers.py": _fill("test_handlers.py", names),
    }


def _fill(template: str, names: dict[str, str]) -> str:
    text = (_TEMPLATES / f"{template}.tmpl").read_text(encoding="utf-8")
    return string.Template(text).substitute(names)


def new_project(
    name: str, parent: Path, domain: str | None = None, storage: str = "sqlite"
) -> Project:
    """Make the project ``name`` in the new folder ``parent/name``, with a
    random secret in ``name.secret`` (readable by its owner only).

    :raises NewProjectError: for what :func:`render` refuses, when
        ``parent/name`` exists (whatever it is: nothing is overwritten), or
        when the folder or a file cannot be made (what was written stays).
    """
    rendered = render(name, domain or default_domain(name), storage)
    target = parent / name
    try:
        # mkdir refuses an existing path (even a dangling link) atomically.
        target.mkdir()
    except FileExistsError:
        raise NewProjectError(f"{target} exists already; choose another name or folder") from None
    except OSError as e:
        raise NewProjectError(f"cannot make {target}: {e.strerror}") from None
    rendered[f"{name}.secret"] = secrets.token_urlsafe(24) + "\n"
    written = []
    for relative, text in rendered.items():
        path = target / relative
        mode = 0o600 if relative.endswith(".secret") else 0o666
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: a file that appeared meanwhile is not overwritten either.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with open(descriptor, "w", encoding="utf-8") as stream:
                stream.write(text)
        except OSError as e:
            raise NewProjectError(f"cannot write {path}: {e.strerror}") from None
        written.append(path)
    return Project(target, tuple(written))
