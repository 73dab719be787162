"""The XML of a post: an Atom entry in the manner of XEP-0277, the payload
of an item of the author's microblog node."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from empc import new_element
from empc.pubsub import NS_PUBSUB, Item, PubSubError, parse_payload
from tweeter.addresses import node_of

NS_ATOM = "http://www.w3.org/2005/Atom"
NS_MICROBLOG = "urn:xmpp:microblog:0"


@dataclass(frozen=True)
class Post:
    """A status: its number (its item's id), its author's bare JID, its
    text and when it was published (seconds since the epoch, UTC)."""

    id: int
    author: str
    text: str
    published: float


def iso_time(seconds: float) -> str:
    """XEP-0082 date-time in UTC: ``2024-05-01T12:00:00Z``."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _atom(
    parent: etree._Element, name: str, text: str, attributes: dict[str, str] | None = None
) -> None:
    """Give ``parent`` an Atom child holding ``text``."""
    new_element(NS_ATOM, name, attributes, parent).text = text


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

    :raises PubSubError: bad-request with ``<invalid-payload/>`` if it is
        not an Atom entry or has no text.
    """
    if entry.tag != f"{{{NS_ATOM}}}entry":
        raise PubSubError("bad-request", "invalid-payload", "the item must be an Atom entry")
    for name in ("title", "content"):
        found = entry.find(f"{{{NS_ATOM}}}{name}")
        if found is not None and found.get("type", "text") == "text":
            text = "".join(str(part) for part in found.itertext()).strip()
            if text:
                return text
    raise PubSubError("bad-request", "invalid-payload", "the entry has no text title")


def post_of(item: Item, author: str) -> Post | None:
    """The post an item of ``author``'s node holds; None for an item the
    tweeter did not publish (not numbered, or no Atom text)."""
    if not (item.id.isascii() and item.id.isdigit()) or item.payload is None:
        return None
    try:
        text = entry_text(parse_payload(item.payload))
    except (PubSubError, etree.XMLSyntaxError):
        return None
    return Post(int(item.id), author, text, item.published)


def publish_payload(node: str, item_id: str) -> etree._Element:
    """The answer to a publish: the item's id (XEP-0060 §7.1.2)."""
    pubsub = new_element(NS_PUBSUB, "pubsub")
    publish = new_element(NS_PUBSUB, "publish", {"node": node}, pubsub)
    new_element(NS_PUBSUB, "item", {"id": item_id}, publish)
    return pubsub
