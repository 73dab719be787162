"""Built-in handlers: what every component answers out of the box."""

from ._disco import Disco
from ._ping import NS_PING, Ping
from ._version import Version

BUILTINS = {"ping": Ping, "disco": Disco, "version": Version}
"""The built-in handlers by their name in the config's ``builtins``."""

__all__ = ["BUILTINS", "NS_PING", "Disco", "Ping", "Version"]
