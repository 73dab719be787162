"""Followed users in their followers' rosters, when the server allows it.

With the roster permission of a privileged entity (XEP-0356), following a
user puts the user's address at the tweeter into the follower's roster, in
the group "Tweeter", and unfollowing takes it out: followed users look like
contacts. Without the permission, the tweeter works as before and says so
once in its log. The roster is the server's: only followers on the
component's own server can have theirs changed.
"""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from empc import LocalProtocolError, StanzaError
from empc.privilege import NotGranted, Privilege, RosterItem
from tweeter.addresses import address_of

GROUP = "Tweeter"


class Contacts:
    """Changes followers' rosters through ``privilege``, for the component
    at ``domain``; fire and forget: a follow never waits for, nor fails
    with, a roster."""

    log = Logger()

    def __init__(self, privilege: Privilege, domain: str) -> None:
        self._privilege = privilege
        self._domain = domain
        self._told: set[str] = set()  # what was said once in the log

    def followed(self, follower: str, followee: str) -> None:
        item = RosterItem(address_of(followee, self._domain), followee, groups=(GROUP,))
        self._change(follower, lambda: self._privilege.set_roster_item(follower, item))

    def unfollowed(self, follower: str, followee: str) -> None:
        address = address_of(followee, self._domain)
        self._change(follower, lambda: self._privilege.remove_roster_item(follower, address))

    def _change(self, follower: str, change: Callable[[], Deferred[etree._Element]]) -> None:
        change().addErrback(self._failed, follower)

    def _failed(self, failure: Failure, follower: str) -> None:
        """Say why a roster was not changed, once per reason: a server that
        refuses one roster (ejabberd 23.01 refuses every privileged roster
        set) refuses the next ones alike."""
        error = failure.value
        if isinstance(error, NotGranted):  # the operator's choice: no warning
            if self._once("not granted"):
                self.log.info("Followed users are not put in rosters: {why}", why=str(error))
        elif isinstance(error, StanzaError):
            if self._once(error.condition):
                self.log.warn(
                    "The server refused to change a roster (said once): {why}", why=str(error)
                )
        elif not isinstance(error, LocalProtocolError):  # else another server's user
            self.log.failure("Could not change the roster of {user}", failure, user=follower)

    def _once(self, reason: str) -> bool:
        """True the first time ``reason`` is given."""
        first = reason not in self._told
        self._told.add(reason)
        return first
