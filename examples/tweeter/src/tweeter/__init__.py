"""tweeter: a microblog for the users of an XMPP server, as an empc component.

Run it with ``twistd -n empc -c config.yaml`` and a config naming the handler
``tweeter.handlers:Tweeter``; see the README for the commands, the addresses
and the pubsub nodes.
"""

from tweeter.handlers import Tweeter
from tweeter.store import MemoryStore, Post, Store

__all__ = ["MemoryStore", "Post", "Store", "Tweeter"]
