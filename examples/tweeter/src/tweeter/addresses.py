"""Addresses: users, their addresses at the component, their pubsub nodes.

Every user ``alice@localhost`` has

- an address at the component, ``alice\\40localhost@tweeter.localhost``:
  the user's bare JID, escaped with XEP-0106 (JID Escaping), as local part.
  Followers get her posts from it, and subscribing to its presence follows
  her;
- a pubsub node at the component, ``urn:xmpp:microblog:0:alice@localhost``,
  holding her posts as Atom entries.

User JIDs are kept as bare JID strings with the local part in lower case
(the server folds the case of local parts; ``Alice@LocalHost`` and
``alice@localhost`` are one user).
"""

from __future__ import annotations

import re

from empc import JID, InvalidJID

NODE_PREFIX = "urn:xmpp:microblog:0:"

MAX_USER_BYTES = 1000
"""The longest user (bare JID, in UTF-8) the tweeter serves: two of them
make a key of its tables, which PostgreSQL's indexes bound (about 2,700
bytes an entry), and a node name is one with the prefix (PubSub's
``max_node_length``, 1,024 bytes by default)."""
"""A user's feed is the pubsub node ``NODE_PREFIX + <bare JID>``."""

# XEP-0106 §3.1: the characters a local part cannot hold, and their escapes.
_ESCAPES = {
    " ": "\\20",
    '"': "\\22",
    "&": "\\26",
    "'": "\\27",
    "/": "\\2f",
    ":": "\\3a",
    "<": "\\3c",
    ">": "\\3e",
    "@": "\\40",
    "\\": "\\5c",
}
_UNESCAPES = {code[1:]: char for char, code in _ESCAPES.items()}
_ESCAPE_SEQUENCE = re.compile(r"\\(20|22|26|27|2f|3a|3c|3e|40|5c)", re.IGNORECASE)


class InvalidUser(ValueError):
    """The text does not name a user (a bare JID with a local part)."""


class UserTooLong(InvalidUser):
    """The user's bare JID is over :data:`MAX_USER_BYTES`."""


def escape(text: str) -> str:
    """XEP-0106 escaping: ``alice@localhost`` becomes ``alice\\40localhost``.

    Each of ``space " & ' / : < > @`` becomes ``\\`` and its two hex digits;
    a backslash becomes ``\\5c`` only where it starts something that would
    otherwise read as an escape sequence, so that :func:`unescape` gives the
    text back.
    """
    out = []
    for index, char in enumerate(text):
        if char == "\\":
            escaped = _ESCAPE_SEQUENCE.match(text, index) is not None
            out.append("\\5c" if escaped else char)
        else:
            out.append(_ESCAPES.get(char, char))
    return "".join(out)


def unescape(text: str) -> str:
    """Undo :func:`escape`: ``alice\\40localhost`` becomes ``alice@localhost``."""
    return _ESCAPE_SEQUENCE.sub(lambda match: _UNESCAPES[match.group(1).lower()], text)


def parse_user(text: str, component_domain: str | None = None) -> str:
    """The user ``text`` names, as a bare JID string, local part in lower case.

    A resource is dropped. An address at the component (the escaped form,
    ``alice\\40localhost@tweeter.localhost``) names the user it stands for.
    A local part with a character RFC 7622 forbids there (space ``" & ' : <
    > @``) is refused, by :meth:`empc.JID.parse`.

    :raises InvalidUser: with a message fit to show the user
        (:class:`UserTooLong` for a JID over :data:`MAX_USER_BYTES`).
    """
    text = text.strip()
    shown = shorten(text)
    try:
        jid = JID.parse(text)
    except InvalidJID:
        raise InvalidUser(f"{shown!r} is not a valid JID") from None
    if jid.local is None:
        raise InvalidUser(f"{shown!r} is a server, not a user: give a JID like alice@localhost")
    if component_domain is not None and jid.domain == component_domain:
        return user_of_address(str(jid.bare), component_domain)
    return user_key(jid)


def user_key(jid: JID) -> str:
    """How the tweeter names the user of ``jid`` (which has a local part):
    the bare JID, local part in lower case.

    :raises UserTooLong: if that is over :data:`MAX_USER_BYTES`.
    """
    user = f"{(jid.local or '').lower()}@{jid.domain}"
    if len(user.encode()) > MAX_USER_BYTES:
        raise UserTooLong(
            f"{shorten(user)!r} is too long: the tweeter serves JIDs of at most "
            f"{MAX_USER_BYTES} bytes"
        )
    return user


def shorten(text: str, limit: int = 30) -> str:
    """``text`` cut to ``limit`` characters for an answer, marked if cut."""
    return text if len(text) <= limit else text[:limit] + "..."


def address_of(user: str, component_domain: str) -> str:
    """The user's address at the component: ``alice\\40localhost@tweeter.localhost``."""
    return f"{escape(user)}@{component_domain}"


def user_of_address(address: str, component_domain: str) -> str:
    """The user an address at the component stands for.

    :raises InvalidUser: if it is not the escaped JID of a user at another
        domain.
    """
    try:
        jid = JID.parse(address)
    except InvalidJID:
        raise InvalidUser(f"{address!r} is not a valid JID") from None
    refusal = InvalidUser(f"{address!r} is not a user's address at {component_domain}")
    if jid.domain != component_domain or jid.local is None:
        raise refusal
    try:
        user = parse_user(unescape(jid.local))
    except InvalidUser:
        raise refusal from None
    if user.partition("@")[2] == component_domain:
        raise refusal
    # One address per user: another spelling (a resource in it, say) would
    # get answers from an address its server does not know it asked.
    if address_of(user, component_domain).lower() != str(jid.bare).lower():
        raise refusal
    return user


def node_of(user: str) -> str:
    """The pubsub node of a user's feed: ``urn:xmpp:microblog:0:alice@localhost``."""
    return NODE_PREFIX + user


def user_of_node(node: str) -> str | None:
    """The owner of a feed node, or None if ``node`` is not one."""
    if not node.startswith(NODE_PREFIX):
        return None
    try:
        user = parse_user(node[len(NODE_PREFIX) :])
    except InvalidUser:
        return None
    return user if node_of(user) == node else None
