"""Fixtures: real Prosody and ejabberd servers, and the empc component process.

The servers are session scoped (ejabberd takes seconds to boot); tests that
stop or restart one get it back running through ``xmpp_server``.

Beside the plaintext servers, TLS ones for client accounts: ``tls_*_server``
present a certificate for ``localhost``, ``wrong_name_*_server`` one for
``wrong.example``, both signed by the private CA of ``tls_certificates``
(see :class:`servers.XmppServer` for what TLS turns on).

``ejabberd_cluster`` and ``balanced_ejabberd_cluster`` are two-node ejabberd
clusters, for several empc processes serving one component domain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
from component import ComponentStarter, StartComponent
from servers import (
    SERVER_CLASSES,
    DomainBalancing,
    EjabberdCluster,
    EjabberdServer,
    ProsodyServer,
    XmppServer,
)
from tls import TlsCertificates, TlsFiles, make_tls_certificates


class _Runnable(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


RunnableT = TypeVar("RunnableT", bound=_Runnable)


def _run_server(server: RunnableT) -> Iterator[RunnableT]:
    """Yield ``server`` started, and stop it however the session ends."""
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


def _each_server(request: pytest.FixtureRequest, kind: str = "") -> XmppServer:
    """The session's server ``<kind><name>_server`` for the name the fixture
    is parametrised with, running (a previous test may have stopped it)."""
    server: XmppServer = request.getfixturevalue(f"{kind}{request.param}_server")
    server.start()
    return server


@pytest.fixture(scope="session")
def ejabberd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EjabberdCluster]:
    """Two ejabberd nodes in one cluster (see :class:`servers.EjabberdCluster`),
    stanzas for a component domain spread the default way.  A test that
    stops a node calls ``start()`` (or ``start_node``) to get it back."""
    yield from _run_server(EjabberdCluster(tmp_path_factory.mktemp("ejabberd-cluster")))


# Two slots for echo.localhost, one per node in the tests, chosen by the
# bare JID of the sender.
ECHO_BY_BARE_SOURCE = {"echo.localhost": DomainBalancing("bare_source", 2)}


@pytest.fixture(scope="session")
def balanced_ejabberd_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EjabberdCluster]:
    """As ejabberd_cluster, with ``ECHO_BY_BARE_SOURCE`` as domain_balancing."""
    workdir = tmp_path_factory.mktemp("ejabberd-balanced-cluster")
    yield from _run_server(EjabberdCluster(workdir, domain_balancing=ECHO_BY_BARE_SOURCE))


@pytest.fixture(params=sorted(SERVER_CLASSES))
def xmpp_server(request: pytest.FixtureRequest) -> XmppServer:
    """Each server in turn, running (a previous test may have stopped it)."""
    return _each_server(request)


@pytest.fixture(scope="session")
def tls_certificates(tmp_path_factory: pytest.TempPathFactory) -> TlsCertificates:
    """The private CA (``ca_file``) and the certificates it signed."""
    return make_tls_certificates(tmp_path_factory.mktemp("certificates"))


def _tls_server_fixture(
    name: str, server_class: type[XmppServer], certificate: str, doc: str
) -> Callable[..., Iterator[XmppServer]]:
    """The session fixture ``name``: ``server_class`` with TLS, presenting
    the ``certificate`` (an attribute of TlsCertificates) of the session's CA."""

    def run(
        tmp_path_factory: pytest.TempPathFactory, tls_certificates: TlsCertificates
    ) -> Iterator[XmppServer]:
        tls: TlsFiles = getattr(tls_certificates, certificate)
        workdir = tmp_path_factory.mktemp(f"{server_class.name}-tls-{tls.names[0]}")
        yield from _run_server(server_class(workdir, tls=tls))

    run.__doc__ = doc
    return pytest.fixture(scope="session", name=name)(run)


tls_prosody_server = _tls_server_fixture(
    "tls_prosody_server",
    ProsodyServer,
    "server",
    "Prosody requiring STARTTLS, its certificate for localhost.",
)
tls_ejabberd_server = _tls_server_fixture(
    "tls_ejabberd_server",
    EjabberdServer,
    "server",
    "ejabberd requiring STARTTLS, its certificate for localhost.",
)
wrong_name_prosody_server = _tls_server_fixture(
    "wrong_name_prosody_server",
    ProsodyServer,
    "wrong_name",
    "As tls_prosody_server, but its certificate is for wrong.example.",
)
wrong_name_ejabberd_server = _tls_server_fixture(
    "wrong_name_ejabberd_server",
    EjabberdServer,
    "wrong_name",
    "As tls_ejabberd_server, but its certificate is for wrong.example.",
)


@pytest.fixture(params=sorted(SERVER_CLASSES))
def tls_xmpp_server(request: pytest.FixtureRequest) -> XmppServer:
    """Each TLS server in turn, running."""
    return _each_server(request, "tls_")


@pytest.fixture(params=sorted(SERVER_CLASSES))
def wrong_name_xmpp_server(request: pytest.FixtureRequest) -> XmppServer:
    """Each wrong-name server in turn, running."""
    return _each_server(request, "wrong_name_")


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
