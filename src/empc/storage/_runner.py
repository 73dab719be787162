"""Where storage work runs: a bounded pool of threads of its own, or inline."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")


class Runner(Protocol):
    """Runs blocking database work away from the reactor thread (the
    :class:`Database` runs at most ``pool_size`` calls at once)."""

    def start(self) -> None:
        """Make ready to run (once, before the first :meth:`run`)."""

    def stop(self) -> None:
        """Let go of what :meth:`start` took, once no call runs."""

    def run(self, work: Callable[[], T]) -> Deferred[T]:
        """Call ``work``; the Deferred fires in the reactor thread with its
        value or its exception."""


class ThreadPoolRunner:
    """Runs work in a pool of at most ``size`` daemon threads, apart from
    the pool of blocking actions, so that one cannot starve the other.

    :param reactor: delivers outcomes to the reactor thread.
    """

    def __init__(self, reactor: Any, size: int, name: str = "empc-storage") -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=0, maxthreads=size, name=name)
        # A call stuck in the driver must not keep the process alive at exit.
        self._pool.threadFactory = functools.partial(threading.Thread, daemon=True)  # type: ignore[assignment]

    def start(self) -> None:
        self._pool.start()

    def stop(self) -> None:
        self._pool.stop()

    def run(self, work: Callable[[], T]) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._pool, work)


class InlineRunner:
    """Runs work at once in the calling thread: the Deferred has fired when
    :meth:`run` returns. For tests, and for commands that run no reactor."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def run(self, work: Callable[[], T]) -> Deferred[T]:
        return maybeDeferred(work)
