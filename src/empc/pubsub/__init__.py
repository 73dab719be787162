"""A PubSub service (XEP-0060) as a handler, with a Python API.

Mount :class:`PubSub` as one of the component's handlers: it serves
XEP-0060's subscriber, publisher and owner use cases at the component's
domain, keeps its nodes in the component's database (``empc.storage``),
and notifies subscribers in bounded batches. Applications call the same
service directly (:meth:`PubSub.create_node`, :meth:`PubSub.publish`...).
The rules live in :class:`PubSubModel`, which knows no XML.
"""

from empc.pubsub._errors import NS_PUBSUB_ERRORS, PubSubError
from empc.pubsub._forms import (
    FORM_METADATA,
    FORM_NODE_CONFIG,
    FORM_PUBLISH_OPTIONS,
    FORM_SUBSCRIBE_AUTHORIZATION,
    NS_PUBSUB,
    NodeConfigForm,
)
from empc.pubsub._model import (
    Item,
    Limits,
    Message,
    Node,
    NodeConfig,
    Outcome,
    Page,
    PubSubModel,
    Subscription,
)
from empc.pubsub._service import FEATURES, NS_PUBSUB_EVENT, NS_PUBSUB_OWNER, PubSub, parse_payload
from empc.pubsub._store import SCHEMA, SqlStore

__all__ = [
    "FEATURES",
    "FORM_METADATA",
    "FORM_NODE_CONFIG",
    "FORM_PUBLISH_OPTIONS",
    "FORM_SUBSCRIBE_AUTHORIZATION",
    "NS_PUBSUB",
    "NS_PUBSUB_ERRORS",
    "NS_PUBSUB_EVENT",
    "NS_PUBSUB_OWNER",
    "SCHEMA",
    "Item",
    "Limits",
    "Message",
    "Node",
    "NodeConfig",
    "NodeConfigForm",
    "Outcome",
    "Page",
    "PubSub",
    "PubSubError",
    "PubSubModel",
    "SqlStore",
    "Subscription",
    "parse_payload",
]
