"""Fixtures: real Prosody and ejabberd servers, and the empc component process.

The servers are session scoped (ejabberd takes seconds to boot); tests that
stop or restart one get it back running through ``xmpp_server``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from component import ComponentStarter, StartComponent
from servers import SERVER_CLASSES, EjabberdServer, ProsodyServer, XmppServer


def _run_server(server: XmppServer) -> Iterator[XmppServer]:
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prosody_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppServer]:
    yield from _run_server(ProsodyServer(tmp_path_factory.mktemp("prosody")))


@pytest.fixture(scope="session")
def ejabberd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppServer]:
    yield from _run_server(EjabberdServer(tmp_path_factory.mktemp("ejabberd")))


@pytest.fixture(params=sorted(SERVER_CLASSES))
def xmpp_server(request: pytest.FixtureRequest) -> XmppServer:
    """Each server in turn, running (a previous test may have stopped it)."""
    server: XmppServer = request.getfixturevalue(f"{request.param}_server")
    server.start()
    return server


@pytest.fixture
def start_component(tmp_path: Path) -> Iterator[StartComponent]:
    """Start ``twistd empc`` for a server: ``start_component(server, ...)``.

    Keyword arguments: ``domain`` (default echo.localhost), ``secret`` (default:
    the one the server knows), ``port`` (default: the server's component
    port, e.g. a proxy's instead), ``handlers`` (the component's handler
    entries, e.g. ``["sample_handlers:Weather"]``), ``components`` (several
    component entries for one process instead: each a mapping with at least
    ``domain``; ``server`` and ``secret`` default as above) and the other
    settings of :func:`component.component_config` (reconnect, keepalive,
    ``access_lists``, ``limits``).  Every component started is stopped at
    teardown.
    """
    starter = ComponentStarter(tmp_path)
    yield starter
    starter.stop_all()
