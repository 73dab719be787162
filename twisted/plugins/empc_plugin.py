"""The ``twistd empc`` subcommand.

Kept tiny on purpose: the real code is imported only when the subcommand is
used, so that an import error shows its traceback instead of hiding the
subcommand from ``twistd --help``.
"""

from twisted.application.service import ServiceMaker

empc = ServiceMaker(
    "empc",
    "empc._tap",
    "Run XMPP external components (XEP-0114) from a config file.",
    "empc",
)
