"""Jabber IDs (RFC 7622), parsed just enough to route and to check addresses."""

from __future__ import annotations

from dataclasses import dataclass

_MAX_PART = 1023


class InvalidJID(ValueError):
    """The text is not a valid JID."""


@dataclass(frozen=True, slots=True)
class JID:
    """A JID: ``local@domain/resource``, local and resource optional.

    The domain is kept in lower case, so two JIDs compare equal when XMPP
    would consider them the same address. (Full PRECIS preparation of the
    local part and resource is left to the server, which has done it for
    every address that reaches a component.)
    """

    local: str | None
    domain: str
    resource: str | None = None

    @classmethod
    def parse(cls, text: str) -> JID:
        """Parse ``text``; raise :class:`InvalidJID` naming what is wrong."""
        bare, slash, resource = text.partition("/")
        local, at, domain = bare.rpartition("@")
        if not at:
            local, domain = "", bare
        domain = domain.rstrip(".").lower()
        if not domain or len(domain.encode()) > _MAX_PART:
            raise InvalidJID(f"invalid domain in JID {text!r}")
        if at and not 0 < len(local.encode()) <= _MAX_PART:
            raise InvalidJID(f"invalid local part in JID {text!r}")
        if slash and not 0 < len(resource.encode()) <= _MAX_PART:
            raise InvalidJID(f"invalid resource in JID {text!r}")
        # RFC 7622 §3.3.1 forbids these in a local part.
        if any(c in local for c in " \"&':<>@") or any(c in domain for c in " @\"'<>&/"):
            raise InvalidJID(f"invalid character in JID {text!r}")
        return cls(local or None, domain, resource if slash else None)

    def casefold(self) -> JID:
        """This JID with its local part case-folded, as servers compare it
        (PRECIS UsernameCaseMapped): ``Bob@example.org`` is bob."""
        return JID(self.local.lower(), self.domain, self.resource) if self.local else self

    @property
    def bare(self) -> JID:
        """This JID without its resource."""
        return JID(self.local, self.domain) if self.resource else self

    def __str__(self) -> str:
        text = f"{self.local}@{self.domain}" if self.local else self.domain
        return f"{text}/{self.resource}" if self.resource else text


def in_domain(address: str, domain: str) -> bool:
    """Whether ``address`` is ``domain`` or an address in it (``domain`` as
    :class:`JID` keeps it: lower case)."""
    if address == domain:  # the common case: no parsing
        return True
    try:
        return JID.parse(address).domain == domain
    except InvalidJID:
        return False
