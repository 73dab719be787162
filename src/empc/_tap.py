"""``twistd empc``: options and the service tree built from the config."""

from __future__ import annotations

import signal
from typing import Any, ClassVar

from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.logger import Logger
from twisted.python import usage

from empc._component import Component
from empc._config import ComponentConfig, Config, ConfigError, load_config
from empc._service import ComponentService
from empc.handlers import Disco, Ping
from empc.routing import Handler

log = Logger()


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = "Run the XMPP components described by a YAML config file."
    optParameters: ClassVar = [["config", "c", "config.yaml", "The config file."]]

    def postOptions(self) -> None:
        try:
            self["parsed"] = load_config(self["config"])
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    services = build_services(options["parsed"], reactor)
    reactor.addSystemEventTrigger("after", "startup", _exit_zero_on_sigterm, reactor)
    return services


def _exit_zero_on_sigterm(reactor: Any) -> None:
    """Make SIGTERM a normal stop that exits 0.

    twistd re-raises SIGTERM on itself once it has shut down, so a service
    manager would record a clean stop as "killed by a signal". The services
    still stop the same way: the streams are closed cleanly first.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: reactor.callFromThread(reactor.stop))


def build_services(config: Config, reactor: Any) -> MultiService:
    """One :class:`ComponentService` per component of ``config``."""
    services = MultiService()
    for component_config in config.components:
        component = build_component(component_config, config, reactor)
        try:
            endpoint = clientFromString(reactor, component_config.server)
        except Exception as e:
            raise usage.UsageError(
                f"{config.path}: server of {component.domain}: {component_config.server!r}: {e}"
            ) from None
        service = ComponentService(
            component,
            endpoint,
            component_config.secret.reveal(),
            reactor,
            link=config.link,
            backoff=config.backoff,
        )
        service.setServiceParent(services)
    return services


def build_component(
    component_config: ComponentConfig, config: Config, clock: IReactorTime | IReactorCore
) -> Component:
    """The component a config entry describes, built-in handlers last so
    that the component's own routes win at equal priority."""
    handlers: list[Handler] = list(component_config.handlers)
    if component_config.builtins.get("ping", True):
        handlers.append(Ping())
    if component_config.builtins.get("disco", True):
        handlers.append(Disco())
    component = Component(
        component_config.domain,
        handlers,
        clock,  # type: ignore[arg-type]
        action_timeout=config.action_timeout,
        identity=component_config.identity,
    )
    for line in component.router.routes:
        log.info("Route of {domain}: {route}", domain=component.domain, route=line.describe())
    return component
