"""Fixtures for every test directory: a real PostgreSQL server.

``postgresql_server`` starts one per test session, the first time a test
asks for it (tests that use it are marked ``integration``);
``postgresql_url`` is its database's url, running (a test may have stopped
the server: it is started again).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from postgres import PostgresServer


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def postgresql_url(postgresql_server: PostgresServer) -> str:
    postgresql_server.start()
    return postgresql_server.url
