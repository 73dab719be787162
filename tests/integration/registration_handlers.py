"""A gateway-style registration handler for the integration tests: the
registrations in memory, a user name taken refused with ``conflict``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from empc import JID, StanzaError
from empc.forms import TextPrivate, TextSingle
from empc.registration import Registration, RegistrationForm


class Account(RegistrationForm):
    title = "Legacy network"
    instructions = "Give your legacy user name and password"
    username = TextSingle("User name", required=True)
    password = TextPrivate("Password", required=True)
    nick = TextSingle("Nickname shown to legacy contacts")


class Gateway(Registration[Account]):
    """Offers the legacy ``<username/>`` and ``<password/>``; the nickname
    only in the data form."""

    form = Account
    legacy: ClassVar[Mapping[str, str]] = {"username": "username", "password": "password"}
    subscribe = True

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.accounts: dict[JID, Account] = {}

    def registered(self, user: JID) -> Account | None:
        return self.accounts.get(user)

    async def register(self, user: JID, form: Account) -> None:
        if any(a.username == form.username for j, a in self.accounts.items() if j != user):
            raise StanzaError("conflict", "that user name is taken")
        self.accounts[user] = form

    def unregister(self, user: JID) -> None:
        del self.accounts[user]
