"""tweeter: a microblog for the users of an XMPP server, as an empc component.

Run it with ``twistd -n empc -c config.yaml`` and a config naming the
handlers ``tweeter.handlers:Tweeter`` and ``empc.pubsub:PubSub``; see the
README for the commands, the addresses and the pubsub nodes.
"""

from tweeter.handlers import Tweeter
from tweeter.payloads import Post
from tweeter.store import SCHEMA, Profile, Store

__all__ = ["SCHEMA", "Post", "Profile", "Store", "Tweeter"]
