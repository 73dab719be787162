"""Fixtures: the database each test of the storage subset runs on, SQLite
(a file) or PostgreSQL (the repository's test server, tests/postgres.py,
a fresh database per test)."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import psycopg
import pytest

_TESTS = Path(__file__).resolve().parents[3] / "tests"
sys.path.insert(0, str(_TESTS))  # for postgres, which the fixtures import
from postgres import PostgresServer  # noqa: E402

# The repository's PostgreSQL server fixture, shared rather than copied.
_spec = importlib.util.spec_from_file_location("empc_tests_conftest", _TESTS / "conftest.py")
assert _spec is not None and _spec.loader is not None
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
postgresql_server = _shared.postgresql_server

_NUMBERS = itertools.count(1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database's url; its data outlives a restart of the component."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tweeter.sqlite3'}"
    return _new_database(request.getfixturevalue("postgresql_server"))


@pytest.fixture
def postgresql_url(postgresql_server: PostgresServer) -> str:
    """An empty PostgreSQL database's url, for what only PostgreSQL does
    (a test using it is marked ``integration``)."""
    return _new_database(postgresql_server)


def _new_database(server: PostgresServer) -> str:
    name = f"tweeter_{next(_NUMBERS)}"
    dsn = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@127.0.0.1:{server.port}/{name}"
