"""A synchronous XMPP client for tests, built on slixmpp.

slixmpp is asyncio based; the tests are plain synchronous pytest functions.
Each ``XmppClient`` runs its own event loop in a daemon thread and every public
method submits a coroutine to it and waits for the answer with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar

from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout

T = TypeVar("T")
IqType = Literal["get", "set"]

STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
PING_NS = "urn:xmpp:ping"
DEFAULT_TIMEOUT = 10.0
# Extra time for the loop thread to hand an answer back after its own timeout.
_MARGIN = 5.0


class LoginError(Exception):
    """The client could not connect, authenticate or bind a resource."""


@dataclass(frozen=True)
class IqReply:
    """The answer to an IQ: ``type`` is "result" or "error"."""

    type: str
    xml: str
    error_condition: str | None = None
    error_type: str | None = None

    @property
    def element(self) -> ET.Element:
        return ET.fromstring(self.xml)


@dataclass(frozen=True)
class DiscoInfo:
    reply: IqReply
    identities: list[dict[str, str]] = field(default_factory=list)
    features: set[str] = field(default_factory=set)


class XmppClient:
    """One logged-in user: ``with XmppClient(jid, pw, port) as client: ...``.

    Plaintext only (loopback): no direct TLS, no STARTTLS, and PLAIN/SCRAM
    allowed over the unencrypted stream.
    """

    def __init__(
        self,
        jid: str,
        password: str,
        port: int,
        host: str = "127.0.0.1",
        timeout: float = 15.0,
    ) -> None:
        self.jid = jid
        self.password = password
        self.address = (host, port)
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"xmpp-{jid}", daemon=True
        )
        self._xmpp: ClientXMPP | None = None

    # -- lifecycle ------------------------------------------------------------

    def connect(self) -> XmppClient:
        """Log in; raise LoginError (or TimeoutError) if it does not work."""
        if not self._thread.is_alive():
            self._thread.start()
        try:
            self._run(self._connect(), self.timeout + _MARGIN)
        except BaseException:
            self.close()
            raise
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect and stop the loop thread; idempotent and bounded."""
        if self._thread.is_alive():
            # The server may already be gone: close the loop anyway.
            with contextlib.suppress(Exception):
                self._run(self._disconnect(timeout), timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()

    def __enter__(self) -> XmppClient:
        # login() hands out clients that are already connected.
        return self if self._xmpp is not None else self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- requests -------------------------------------------------------------

    def iq(
        self,
        to: str,
        payload: str | None,
        iq_type: IqType = "get",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> IqReply:
        """Send an IQ with an XML payload; return the result or the error.

        Raise TimeoutError if nothing comes back within ``timeout`` seconds.
        """
        return self._run(self._iq(to, payload, iq_type, timeout), timeout + _MARGIN)

    def ping(self, to: str, timeout: float = DEFAULT_TIMEOUT) -> IqReply:
        """XEP-0199 ping."""
        return self.iq(to, f"<ping xmlns='{PING_NS}'/>", timeout=timeout)

    def disco_info(self, to: str, timeout: float = DEFAULT_TIMEOUT) -> DiscoInfo:
        """XEP-0030 disco#info; identities and features stay empty on error."""
        reply = self.iq(to, f"<query xmlns='{DISCO_INFO_NS}'/>", timeout=timeout)
        if reply.type != "result":
            return DiscoInfo(reply)
        query = reply.element.find(f"{{{DISCO_INFO_NS}}}query")
        if query is None:
            return DiscoInfo(reply)
        identities = [dict(item.attrib) for item in query.iter(f"{{{DISCO_INFO_NS}}}identity")]
        features = {item.get("var", "") for item in query.iter(f"{{{DISCO_INFO_NS}}}feature")}
        return DiscoInfo(reply, identities, features)

    # -- loop side --------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeoutError:
            future.cancel()
            raise TimeoutError(f"{self.jid}: no answer within {timeout}s") from None

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        xmpp = ClientXMPP(self.jid, self.password, loop=loop)
        self._xmpp = xmpp
        # Loopback test servers have no certificates: plaintext stream only.
        xmpp.enable_direct_tls = False
        xmpp.enable_starttls = False
        xmpp.enable_plaintext = True
        xmpp.plugin["feature_mechanisms"].unencrypted_plain = True
        xmpp.plugin["feature_mechanisms"].unencrypted_scram = True

        ready: asyncio.Future[None] = loop.create_future()

        def succeed(_event: object) -> None:
            if not ready.done():
                ready.set_result(None)

        def failer(reason: str) -> Callable[[object], None]:
            def fail(event: object) -> None:
                if not ready.done():
                    ready.set_exception(LoginError(f"{self.jid}: {reason}: {event}"))

            return fail

        xmpp.add_event_handler("session_start", succeed)
        xmpp.add_event_handler("failed_all_auth", failer("authentication failed"))
        xmpp.add_event_handler("connection_failed", failer("connection failed"))
        xmpp.add_event_handler("disconnected", failer("disconnected"))
        xmpp.add_event_handler("stream_error", failer("stream error"))
        xmpp.connect(*self.address)
        try:
            await asyncio.wait_for(ready, self.timeout)
        except TimeoutError:
            xmpp.cancel_connection_attempt()
            raise TimeoutError(f"{self.jid}: no session within {self.timeout}s") from None
        except BaseException:
            # Stop slixmpp from retrying the connection behind our back.
            xmpp.cancel_connection_attempt()
            raise

    async def _disconnect(self, timeout: float) -> None:
        xmpp = self._xmpp
        if xmpp is None:
            return
        self._xmpp = None
        xmpp.cancel_connection_attempt()
        if xmpp.transport is not None:
            try:
                await asyncio.wait_for(xmpp.disconnect(wait=1.0), timeout)
            except (TimeoutError, asyncio.CancelledError):
                xmpp.abort()
        # Leave nothing pending when the loop stops (avoids noisy warnings).
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not current:
                task.cancel()

    async def _iq(self, to: str, payload: str | None, iq_type: IqType, timeout: float) -> IqReply:
        if self._xmpp is None:
            raise LoginError(f"{self.jid}: not connected")
        iq = self._xmpp.make_iq(ito=to, itype=iq_type)
        if payload is not None:
            iq.append(ET.fromstring(payload))
        try:
            reply = await iq.send(timeout=timeout)
        except IqError as exc:
            reply = exc.iq
        except IqTimeout:
            raise TimeoutError(f"{self.jid}: no reply from {to} within {timeout}s") from None
        if reply["type"] == "error":
            return IqReply(
                "error",
                str(reply),
                error_condition=reply["error"]["condition"] or None,
                error_type=reply["error"]["type"] or None,
            )
        return IqReply(reply["type"], str(reply))


def login(jid: str, password: str, port: int, timeout: float = 15.0) -> XmppClient:
    """A connected client; use it as a context manager to close it."""
    return XmppClient(jid, password, port, timeout=timeout).connect()
