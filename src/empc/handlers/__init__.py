"""Built-in handlers: what every component answers out of the box."""

from ._disco import Disco
from ._ping import Ping

__all__ = ["Disco", "Ping"]
