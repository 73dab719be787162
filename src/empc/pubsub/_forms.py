"""The data forms of XEP-0060: node configuration, publish-options, node
meta-data (XEP-0128) and subscription authorization, on empc.forms."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lxml import etree

from empc.forms import (
    NS_DATA,
    Boolean,
    Form,
    Integer,
    JidMulti,
    JidSingle,
    ListSingle,
    TextSingle,
)
from empc.protocol import JID
from empc.pubsub._errors import PubSubError
from empc.pubsub._model import (
    ACCESS_MODELS,
    CONFIG_OPTIONS,
    NOTIFICATION_TYPES,
    PUBLISH_MODELS,
    SEND_LAST_PUBLISHED_ITEM,
    NodeConfig,
    NodeMetadata,
)
from empc.routing import StanzaError

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
FORM_NODE_CONFIG = f"{NS_PUBSUB}#node_config"
FORM_PUBLISH_OPTIONS = f"{NS_PUBSUB}#publish-options"
FORM_METADATA = f"{NS_PUBSUB}#metadata"
FORM_SUBSCRIBE_AUTHORIZATION = f"{NS_PUBSUB}#subscribe_authorization"


class NodeConfigForm(Form):
    """``pubsub#node_config``: the options :class:`NodeConfig` holds."""

    FORM_TYPE = FORM_NODE_CONFIG
    # Not "title": that is the form's own title.
    node_title = TextSingle("A short name for the node", var="pubsub#title")
    access_model = ListSingle(
        "Who may subscribe and retrieve items", options=ACCESS_MODELS, var="pubsub#access_model"
    )
    publish_model = ListSingle(
        "Who may publish items", options=PUBLISH_MODELS, var="pubsub#publish_model"
    )
    max_items = TextSingle(
        "Max # of items to persist (max: the service's limit)",
        regex="[0-9]{1,9}|max",
        var="pubsub#max_items",
    )
    persist_items = Boolean("Persist items to storage", var="pubsub#persist_items")
    deliver_payloads = Boolean(
        "Deliver payloads with event notifications", var="pubsub#deliver_payloads"
    )
    notification_type = ListSingle(
        "The type of notification messages",
        options=NOTIFICATION_TYPES,
        var="pubsub#notification_type",
    )
    send_last_published_item = ListSingle(
        "When to send the last published item",
        options=SEND_LAST_PUBLISHED_ITEM,
        var="pubsub#send_last_published_item",
    )
    notify_config = Boolean(
        "Notify subscribers when the configuration changes", var="pubsub#notify_config"
    )
    notify_delete = Boolean(
        "Notify subscribers when the node is deleted", var="pubsub#notify_delete"
    )
    notify_retract = Boolean(
        "Notify subscribers when items are removed", var="pubsub#notify_retract"
    )


class PublishOptions(NodeConfigForm):
    """``pubsub#publish-options``: the same options, as preconditions."""

    FORM_TYPE = FORM_PUBLISH_OPTIONS


class MetadataForm(Form):
    """``pubsub#metadata``: what disco#info tells of a node (XEP-0128)."""

    FORM_TYPE = FORM_METADATA
    node_title = TextSingle("A short name for the node", var="pubsub#title")
    creator = JidSingle("Node creator", var="pubsub#creator")
    creation_date = TextSingle("Creation date", var="pubsub#creation_date")
    access_model = ListSingle("Access model", options=ACCESS_MODELS, var="pubsub#access_model")
    publish_model = ListSingle("Publish model", options=PUBLISH_MODELS, var="pubsub#publish_model")
    max_items = Integer("Max # of items to persist", var="pubsub#max_items")
    owner = JidMulti("Node owners", var="pubsub#owner")
    publisher = JidMulti("Publishers to this node", var="pubsub#publisher")
    num_subscribers = Integer("Number of subscribers to this node", var="pubsub#num_subscribers")


class SubscribeAuthorization(Form):
    """``pubsub#subscribe_authorization``: an owner's approval (§8.6)."""

    FORM_TYPE = FORM_SUBSCRIBE_AUTHORIZATION
    title = "PubSub subscriber request"
    instructions = "To approve this entity's subscription request, set allow and submit."
    node = TextSingle("Node ID", var="pubsub#node", required=True)
    subscriber_jid = JidSingle("Subscriber Address", var="pubsub#subscriber_jid", required=True)
    allow = Boolean("Allow this JID to subscribe to this pubsub node?", var="pubsub#allow")


def config_form(config: NodeConfig, form_type: str = "form") -> etree._Element:
    """``config`` as a ``pubsub#node_config`` form (``type`` form or result)."""
    values = {_field_name(option): getattr(config, option) for option in CONFIG_OPTIONS}
    values["max_items"] = str(config.max_items)
    if form_type == "form":
        return NodeConfigForm.form(values)
    return NodeConfigForm.result(values)


def parse_config(x: etree._Element, max_items: int) -> dict[str, Any]:
    """The options the submitted ``pubsub#node_config`` form ``x`` sets, by
    name (``replace`` a :class:`NodeConfig` with them: the others stay).

    :raises PubSubError: ``not-acceptable`` for a form that does not parse
        (its text naming the field).
    """
    return _submitted(NodeConfigForm, x, max_items)


def parse_preconditions(x: etree._Element, max_items: int) -> dict[str, Any]:
    """The preconditions of a ``pubsub#publish-options`` form, by option.

    :raises PubSubError: ``bad-request`` with ``invalid-options`` for a form
        that is not a publish-options submission; ``conflict`` with
        ``precondition-not-met`` for an option this service does not know,
        or a value no node can have.
    """
    form_type = x.find(f"{{{NS_DATA}}}field[@var='FORM_TYPE']/{{{NS_DATA}}}value")
    if x.get("type") != "submit" or form_type is None or form_type.text != FORM_PUBLISH_OPTIONS:
        raise PubSubError("bad-request", "invalid-options", "not a publish-options submission")
    known = {field.var for field in PublishOptions.fields.values()} | {"FORM_TYPE"}
    for field in x.iterchildren(f"{{{NS_DATA}}}field"):
        if field.get("var") not in known:
            raise PubSubError(
                "conflict", "precondition-not-met", f"unknown option {field.get('var')!r}"
            )
    try:
        return _submitted(PublishOptions, x, max_items)
    except PubSubError as error:
        raise PubSubError("conflict", "precondition-not-met", error.text) from None


def _submitted(form: type[Form], x: etree._Element, max_items: int) -> dict[str, Any]:
    """The options a submitted form gives, by name, checked by the form."""
    try:
        parsed = form.parse(x)
    except StanzaError as error:
        raise PubSubError("not-acceptable", text=error.text) from None
    given = {
        field.get("var")
        for field in x.iterchildren(f"{{{NS_DATA}}}field")
        if any(value.text for value in field.iterchildren(f"{{{NS_DATA}}}value"))
    }
    options: dict[str, Any] = {}
    for field in form.fields.values():
        if field.var in given:
            options[field.name.removeprefix("node_")] = getattr(parsed, field.name)
    if "max_items" in options:
        text = options["max_items"]
        options["max_items"] = max_items if text == "max" else int(text)
    if "title" in options and options["title"] is None:
        options["title"] = ""
    return options


def _field_name(option: str) -> str:
    """The form attribute of a :class:`NodeConfig` option."""
    return "node_title" if option == "title" else option


def metadata_form(metadata: NodeMetadata) -> etree._Element:
    """The node's ``pubsub#metadata`` result form."""
    node = metadata.node
    created = datetime.fromtimestamp(node.created, UTC).isoformat(timespec="seconds")
    return MetadataForm.result(
        {
            "node_title": node.config.title or None,
            "creator": JID.parse(node.creator) if node.creator else None,
            "creation_date": created.replace("+00:00", "Z"),
            "access_model": node.config.access_model,
            "publish_model": node.config.publish_model,
            "max_items": node.config.max_items,
            "owner": [JID.parse(jid) for jid in metadata.owners],
            "publisher": [JID.parse(jid) for jid in metadata.publishers],
            "num_subscribers": metadata.subscribers,
        }
    )
