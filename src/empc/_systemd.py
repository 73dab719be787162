"""systemd's notify protocol: readiness, status and the watchdog.

Under ``Type=notify``, systemd hands the process the address of a datagram
socket in ``$NOTIFY_SOCKET`` (a path, or an abstract address written with a
leading ``@``); each datagram is newline-separated ``KEY=value`` lines.
:class:`SystemdNotifier` sends ``READY=1`` once every component has linked
(or once ``ready_timeout`` has passed, so that one unreachable server does
not hold the whole unit in "activating"), a ``STATUS=`` line whenever a
link goes up or down, and ``WATCHDOG=1`` every half ``$WATCHDOG_USEC``:
the beat is a timed call on the reactor, so a reactor that is stuck stops
it and systemd restarts the process. Without ``$NOTIFY_SOCKET`` there is no
notifier at all.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger


def notify_address(value: str) -> str | bytes:
    """The socket address ``$NOTIFY_SOCKET`` names: a file system path, or
    an abstract address (Linux) when it starts with ``@``."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between two watchdog beats: half ``$WATCHDOG_USEC``, as
    systemd advises. None when the watchdog is off, is meant for another
    process (``$WATCHDOG_PID``), or is not a positive whole number."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID")
    if owner is not None and owner != str(pid):
        return None
    if not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 1_000_000 / 2


class SystemdNotifier(Service):
    """Tells systemd how the components' links stand.

    ``link_changed`` records a link going up or down at any time; once the
    service has started, it sends the new ``STATUS=``, and ``READY=1`` the
    first time every component is linked. If ``ready_timeout`` seconds pass
    first, ``READY=1`` goes anyway, with a warning naming the components
    still waiting. Stopping the service sends ``STOPPING=1`` and ends the
    watchdog. A datagram that cannot be sent is logged and dropped: systemd
    gone is no reason to stop serving.
    """

    log = Logger()

    def __init__(
        self,
        address: str | bytes,
        domains: Iterable[str],
        clock: IReactorTime,
        *,
        ready_timeout: float,
        watchdog_interval: float | None = None,
    ) -> None:
        self._address = address
        self._clock = clock
        self._ready_timeout = ready_timeout
        self._linked = dict.fromkeys(domains, False)
        self._ready = False
        self._timeout: IDelayedCall | None = None
        self._watchdog: LoopingCall | None = None
        if watchdog_interval is not None:
            self._watchdog = LoopingCall(self.send, "WATCHDOG=1")
            self._watchdog.clock = clock
            self._watchdog_interval = watchdog_interval

    def startService(self) -> None:
        super().startService()
        if self._watchdog is not None:
            self._watchdog.start(self._watchdog_interval, now=True)
        self._timeout = self._clock.callLater(self._ready_timeout, self._ready_anyway)
        self._report()

    def stopService(self) -> None:
        super().stopService()
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        self.send("STOPPING=1")

    def link_changed(self, domain: str, linked: bool) -> None:
        """Record that ``domain``'s link went up (``linked``) or down."""
        self._linked[domain] = linked
        if self.running:
            self._report()

    def _report(self) -> None:
        waiting = self._waiting()
        if not waiting and not self._ready:
            self._ready = True
            if self._timeout is not None and self._timeout.active():
                self._timeout.cancel()
            self.send(f"READY=1\nSTATUS={self.status()}")
        else:
            self.send(f"STATUS={self.status()}")

    def _ready_anyway(self) -> None:
        self._ready = True
        waiting = self._waiting()
        self.log.warn(
            "Telling systemd the service is ready after {seconds} s, although {waiting} "
            "{verb} not linked yet",
            seconds=self._ready_timeout,
            waiting=", ".join(waiting),
            verb="is" if len(waiting) == 1 else "are",
        )
        self.send(f"READY=1\nSTATUS={self.status()}")

    def status(self) -> str:
        """One line for ``systemctl status``: how many links are up, and
        which components are waiting."""
        waiting = self._waiting()
        text = f"{len(self._linked) - len(waiting)} of {len(self._linked)} components linked"
        if waiting:
            text += f"; waiting: {', '.join(waiting)}"
        return text

    def _waiting(self) -> list[str]:
        return [domain for domain, linked in self._linked.items() if not linked]

    def send(self, message: str) -> None:
        """Send ``message`` (``KEY=value`` lines) to systemd in one datagram."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # the reactor thread never waits for systemd
                sock.sendto(message.encode(), self._address)
        except OSError as e:
            self.log.warn(
                "Cannot notify systemd at {address!r}: {why}", address=self._address, why=e
            )


def notifier_from_environ(
    environ: Mapping[str, str],
    domains: Iterable[str],
    clock: IReactorTime,
    ready_timeout: float,
    pid: int | None = None,
) -> SystemdNotifier | None:
    """The notifier ``environ`` asks for: None without ``$NOTIFY_SOCKET``."""
    value = environ.get("NOTIFY_SOCKET")
    if not value:
        return None
    return SystemdNotifier(
        notify_address(value),
        domains,
        clock,
        ready_timeout=ready_timeout,
        watchdog_interval=watchdog_interval(environ, os.getpid() if pid is None else pid),
    )
