"""The XML the microblog speaks: Atom entries (XEP-0277), pubsub payloads
(XEP-0060) and stanzas."""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

from empc import NS_COMPONENT, DiscoInfo, DiscoItem, StanzaError, make_message, new_element
from tweeter.addresses import node_of
from tweeter.store import Post

NS_ATOM = "http://www.w3.org/2005/Atom"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_MICROBLOG = "urn:xmpp:microblog:0"


def _atom(
    parent: etree._Element, name: str, text: str, attributes: dict[str, str] | None = None
) -> None:
    """Give ``parent`` an Atom child holding ``text``."""
    new_element(NS_ATOM, name, attributes, parent).text = text


def iso_time(seconds: float) -> str:
    """XEP-0082 date-time in UTC: ``2024-05-01T12:00:00Z``."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# -- Atom (XEP-0277) ----------------------------------------------------------


def atom_entry(post: Post, service: str) -> etree._Element:
    """The post as an Atom entry in the manner of XEP-0277."""
    entry = new_element(NS_ATOM, "entry")
    author = new_element(NS_ATOM, "author", parent=entry)
    _atom(author, "name", post.author)
    _atom(author, "uri", f"xmpp:{post.author}")
    _atom(entry, "title", post.text, {"type": "text"})
    date = iso_time(post.published)[:10]
    _atom(entry, "id", f"tag:{service},{date}:posts-{post.id}")
    _atom(entry, "published", iso_time(post.published))
    _atom(entry, "updated", iso_time(post.published))
    new_element(
        NS_ATOM,
        "link",
        {"rel": "alternate", "href": f"xmpp:{service}?;node={node_of(post.author)};item={post.id}"},
        entry,
    )
    return entry


def entry_text(entry: etree._Element) -> str:
    """The status text of a published Atom entry: its title, else its
    content (text only), stripped.

    :raises StanzaError: bad-request with ``<invalid-payload/>`` if it is
        not an Atom entry or has no text.
    """
    if entry.tag != f"{{{NS_ATOM}}}entry":
        raise pubsub_error("bad-request", "invalid-payload", "the item must be an Atom entry")
    for name in ("title", "content"):
        found = entry.find(f"{{{NS_ATOM}}}{name}")
        if found is not None and found.get("type", "text") == "text":
            text = "".join(str(part) for part in found.itertext()).strip()
            if text:
                return text
    raise pubsub_error("bad-request", "invalid-payload", "the entry has no text title")


# -- pubsub (XEP-0060) --------------------------------------------------------


def pubsub_error(
    condition: str, pubsub_condition: str | None, text: str | None = None, **attributes: str
) -> StanzaError:
    """A stanza error with a pubsub#errors condition (``invalid-jid``...)."""
    application = None
    if pubsub_condition is not None:
        application = new_element(NS_PUBSUB_ERRORS, pubsub_condition, attributes or None)
    return StanzaError(condition, text, application_condition=application)


def item_element(post: Post, service: str, namespace: str) -> etree._Element:
    """``<item id='N'>ATOM</item>`` in ``namespace`` (pubsub or pubsub#event)."""
    item = new_element(namespace, "item", {"id": str(post.id)})
    item.append(atom_entry(post, service))
    return item


def items_payload(owner: str, posts: list[Post], service: str) -> etree._Element:
    """The answer to an items request."""
    pubsub = new_element(NS_PUBSUB, "pubsub")
    items = new_element(NS_PUBSUB, "items", {"node": node_of(owner)}, pubsub)
    for post in posts:
        items.append(item_element(post, service, NS_PUBSUB))
    return pubsub


def event_message(post: Post, service: str, to: str) -> etree._Element:
    """The pubsub event that tells a subscriber of a new post."""
    message = make_message(to, type="normal", from_=service, id=f"tweeter-event-{post.id}")
    event = new_element(NS_PUBSUB_EVENT, "event")
    items = new_element(NS_PUBSUB_EVENT, "items", {"node": node_of(post.author)}, event)
    items.append(item_element(post, service, NS_PUBSUB_EVENT))
    message.append(event)
    return message


def subscription_payload(node: str, jid: str, state: str) -> etree._Element:
    pubsub = new_element(NS_PUBSUB, "pubsub")
    new_element(
        NS_PUBSUB, "subscription", {"node": node, "jid": jid, "subscription": state}, pubsub
    )
    return pubsub


def publish_payload(node: str, item_id: str) -> etree._Element:
    pubsub = new_element(NS_PUBSUB, "pubsub")
    publish = new_element(NS_PUBSUB, "publish", {"node": node}, pubsub)
    new_element(NS_PUBSUB, "item", {"id": item_id}, publish)
    return pubsub


def node_info(owner: str) -> DiscoInfo:
    """disco#info of a feed node: a pubsub leaf holding a microblog."""
    return [("pubsub", "leaf", f"{owner}'s microblog")], [NS_PUBSUB, NS_MICROBLOG]


def node_items(posts: list[Post], service: str) -> list[DiscoItem]:
    """disco#items of a feed node: its items, by id (XEP-0060 §5.5)."""
    return [(service, None, str(post.id)) for post in posts]


# -- messages -----------------------------------------------------------------


def body_of(stanza: etree._Element) -> str | None:
    """The text of a message's body (the first one), or None."""
    body = stanza.find(f"{{{NS_COMPONENT}}}body")
    return None if body is None else (body.text or "")
