"""The thread pool that blocking actions run in, and how it lets go at exit.

A worker gets a stanza of its own, parsed in its own thread: lxml keeps the
names of a document in a dictionary per thread, and a worker that changed a
stanza built with the reactor thread's dictionary would write into it while
the reactor thread's parser does too. So the stanza crosses as bytes
(:func:`call_with_copy`).

A blocking action may hang for ever (a database that never answers). The
router keeps such actions within their own budget, so the rest of the
component goes on. At shutdown the pool outlives the components it serves
(they are its children, stopped first, so their last replies can still be
computed); it then waits for the running actions at most ``stop_timeout``
seconds, names the stuck ones in the log and lets the process exit without
them: its threads are daemon threads, which a hung call cannot keep alive.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from lxml import etree
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool


class _DaemonThread(threading.Thread):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, daemon=True, **kwargs)


class _ActionPool(ThreadPool):
    threadFactory = _DaemonThread


def call_with_copy(action: Callable[[etree._Element], object], stanza: bytes) -> object:
    """Call ``action`` with ``stanza`` (serialized) parsed in this thread."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return action(etree.fromstring(stanza, parser))


_local = threading.local()


class ActionThreads(MultiService):
    """Runs blocking actions in at most ``size`` threads, for the services
    that are its children (the components): they stop before it does.

    :param reactor: delivers outcomes to the reactor thread
        (``callFromThread``) and times the wait at shutdown (``callLater``).
    :param size: the most threads running at once.
    :param stop_timeout: how long stopping waits for running actions.
    :param pool: the thread pool (a daemon-thread :class:`ThreadPool` of
        ``size`` threads if None).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        size: int,
        stop_timeout: float,
        pool: ThreadPool | None = None,
    ) -> None:
        super().__init__()
        self._reactor = reactor
        self._stop_timeout = stop_timeout
        self._pool = pool or _ActionPool(minthreads=0, maxthreads=size, name="empc-actions")
        self._running: Counter[str] = Counter()
        self._idle: Deferred[None] | None = None

    @property
    def size(self) -> int:
        """The most threads running at once."""
        return self._pool.max

    def run(
        self, action: Callable[[etree._Element], object], stanza: etree._Element
    ) -> Deferred[object]:
        """Call ``action`` in a thread with a copy of ``stanza`` of its own;
        the Deferred fires in the reactor thread with its outcome. The
        worker only calls the action.

        :raises RuntimeError: once the pool has stopped.
        """
        name = getattr(action, "__qualname__", repr(action))
        if self._pool.joined:
            raise RuntimeError(f"the thread pool has stopped: {name} cannot run")
        self._running[name] += 1
        outcome: Deferred[object] = deferToThreadPool(
            self._reactor, self._pool, call_with_copy, action, etree.tostring(stanza)
        )
        outcome.addBoth(self._ended, name)
        return outcome

    def _ended(self, outcome: object, name: str) -> object:
        self._running[name] -= 1
        if not self._running[name]:
            del self._running[name]
        if not self._running and self._idle is not None and not self._idle.called:
            self._idle.callback(None)
        return outcome

    def startService(self) -> None:
        self._pool.start()  # before the components, which may use it at once
        super().startService()

    def stopService(self) -> Deferred[None]:
        """Stops the children, then fires once no action runs, or after
        ``stop_timeout`` seconds with the stuck actions named in the log;
        the pool's threads are joined only when none is stuck."""
        children: Deferred[None] = super().stopService()
        return children.addCallback(lambda _: self._stop_pool())

    def _stop_pool(self) -> Deferred[None]:
        if not self._running:
            self._pool.stop()
            return succeed(None)
        self._idle = Deferred()
        self._idle.addTimeout(self._stop_timeout, self._reactor)
        return self._idle.addCallbacks(lambda _: self._pool.stop(), self._give_up)

    def _give_up(self, _: object) -> None:
        self.log.error(
            "Exiting with blocking actions still running after {timeout} seconds: {routes}",
            timeout=self._stop_timeout,
            routes=", ".join(f"{name} ({count})" for name, count in sorted(self._running.items())),
        )
