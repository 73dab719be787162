"""Built-in handlers: what every component answers out of the box."""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from empc.commands import Commands, declared_commands
from empc.delegation import Delegation
from empc.privilege import Privilege
from empc.routing import Handler

from ._disco import Disco
from ._ping import NS_PING, Ping
from ._version import Version

BUILTINS: Mapping[str, type[Handler]] = {
    "ping": Ping,
    "disco": Disco,
    "version": Version,
    "commands": Commands,
    "privilege": Privilege,
    "delegation": Delegation,
}
"""The built-in handlers by their name in the config's ``builtins``."""

COMPONENT_ONLY = ("privilege", "delegation")
"""The built-ins an account does without: servers grant privileges and
delegate namespaces to components only."""


def builtin_handlers(
    handlers: Sequence[Handler],
    enabled: Callable[[str], bool] = lambda name: True,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    account: bool = False,
) -> list[Handler]:
    """The built-in handlers a component (or an ``account``) with
    ``handlers`` gets: those ``enabled`` by name and not among ``handlers``
    already, each with its ``config`` by name (the defaults if none);
    ``commands`` only when a handler declares a command; none of
    :data:`COMPONENT_ONLY` for an account."""
    given = {type(handler) for handler in handlers}
    wanted = []
    for name, cls in BUILTINS.items():
        if not enabled(name) or cls in given or (account and name in COMPONENT_ONLY):
            continue
        if cls is Commands and not any(declared_commands(handler) for handler in handlers):
            continue
        wanted.append(cls((config or {}).get(name)))
    return wanted


__all__ = [
    "BUILTINS",
    "COMPONENT_ONLY",
    "NS_PING",
    "Commands",
    "Disco",
    "Ping",
    "Version",
    "builtin_handlers",
]
