"""The thread pool that blocking actions run in, and how it lets go at exit.

Nothing built with one thread's lxml name dictionary is touched by the
other: lxml keeps the names of a document in a dictionary per thread, and
a thread that changed an element of the other's would write into that
dictionary while the other's parser does too (a crash, seen). So what
crosses, crosses as bytes: the stanza goes to the worker serialized and is
parsed there (:func:`call_with_copy`); the elements the action returns,
or names in a :class:`~empc.StanzaError`, come back serialized and are
parsed in the reactor thread (:func:`unpacked`). A generator an action
returns runs in the worker too. An action in a worker must not send: it
returns what to send (:func:`in_blocking_action` lets the component say
so).

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
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from lxml import etree
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from empc.routing import StanzaError


class _DaemonThread(threading.Thread):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, daemon=True, **kwargs)


class _ActionPool(ThreadPool):
    threadFactory = _DaemonThread


def call_with_copy(action: Callable[[etree._Element], object], stanza: bytes) -> object:
    """In a worker: ``action`` called with ``stanza`` (serialized) parsed in
    this thread; its outcome with every element serialized (see
    :func:`unpacked`)."""
    _local.in_action = True
    try:
        return _pack(action(etree.fromstring(stanza, _parser())))
    except BaseException as error:
        # The traceback goes to the reactor thread: its frames must not
        # keep this thread's elements alive there (the lines stay).
        traceback.clear_frames(error.__traceback__)
        if isinstance(error, StanzaError) and error.application_condition is not None:
            packed = _PackedStanzaError(error)
            packed.__context__ = None
            raise packed from None
        raise
    finally:
        _local.in_action = False


def unpacked(outcome: Deferred[object]) -> Deferred[object]:
    """In the reactor thread: ``outcome`` (of :func:`call_with_copy`) with
    its elements parsed in this thread."""
    return outcome.addCallbacks(_unpack, _unpack_error)


def in_blocking_action() -> bool:
    """Whether this thread is running a blocking action now."""
    return getattr(_local, "in_action", False)


_local = threading.local()


def _parser() -> etree.XMLParser:
    """This thread's parser for what crosses: empc's own serialization."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        # huge_tree: what crosses was built by empc's own code, whatever its size.
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, huge_tree=True
        )
    return parser


class _Packed:
    """An element on its way to the other thread."""

    __slots__ = ("data",)

    def __init__(self, element: etree._Element) -> None:
        self.data = etree.tostring(element, with_tail=False)


class _PackedStanzaError(Exception):
    """A StanzaError whose application condition is on its way."""

    def __init__(self, error: StanzaError) -> None:
        assert error.application_condition is not None
        super().__init__(str(error))
        self.condition = error.condition
        self.text = error.text
        self.type = error.type
        self.application_condition = _Packed(error.application_condition)


def _pack(outcome: object) -> object:
    if isinstance(outcome, etree._Element):
        return _Packed(outcome)
    if isinstance(outcome, Awaitable):  # a Deferred is one too
        raise TypeError(
            "a blocking action returns its outcome: a Deferred or a coroutine belongs "
            "to a non-blocking route"
        )
    if isinstance(outcome, Iterable) and not isinstance(outcome, str | bytes):
        return [_pack(item) for item in outcome]  # a generator runs here
    return outcome


def _unpack(outcome: object) -> object:
    if isinstance(outcome, _Packed):
        return etree.fromstring(outcome.data, _parser())
    if isinstance(outcome, list):
        return [_unpack(item) for item in outcome]
    return outcome


def _unpack_error(failure: Failure) -> Failure:
    packed = failure.value
    if not isinstance(packed, _PackedStanzaError):
        return failure
    return Failure(
        StanzaError(
            packed.condition,
            packed.text,
            type=packed.type,
            application_condition=etree.fromstring(packed.application_condition.data, _parser()),
        )
    )


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
        outcome: Deferred[object] = unpacked(
            deferToThreadPool(
                self._reactor, self._pool, call_with_copy, action, etree.tostring(stanza)
            )
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
