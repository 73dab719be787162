"""A test kit for handler authors: a fake server, no network, no real clock.

:class:`FakeServer` plays the server's side of a component connection::

    from empc.testing import FakeServer

    def test_echo():
        server = FakeServer([Echo()], domain="echo.example.org")
        (reply,) = server.deliver("<iq type='get'><echo xmlns='urn:example:echo' text='hi'/></iq>")
        assert reply.get("type") == "result"
        assert server.only("self::c:iq/e:echo[@text='hi']", e="urn:example:echo") is reply

It replaces only the edge, the network and the clock: the connection is an
in-memory transport and time is a :class:`~twisted.internet.task.Clock`.
Everything above runs as in production. The component's Twisted protocol
opens its stream and performs the XEP-0114 handshake with the fake server;
a delivered stanza is serialized and fed to the component as bytes, so it
goes through the real stream parser (restricted XML, limits) and the stream
state machine before it reaches the router; and what the component writes
is parsed back as a server would read it.

Blocking actions (``blocking=True`` routes) get production's hand-off
without threads. In production the action runs in a pool thread and its
outcome reaches the reactor thread in a later reactor turn. Here the action
runs in a later turn of the fake clock (``callLater(0)``), and its outcome
is handed back in that same call. :meth:`FakeServer.deliver` (and
:meth:`~FakeServer.feed`, :meth:`~FakeServer.close_stream`) then run
``clock.advance(0)``, so the reply to a blocking action is among what they
return. Time itself only moves with :meth:`FakeServer.advance`.

Storage: when a handler declares ``schemas`` (or the test passes
``storage=``), the component gets a :class:`~empc.storage.Database` of its
own on SQLite in memory, migrated to every schema's head before the
handlers start, and closed by :meth:`FakeServer.stop`. Its runner is
inline: a transaction runs, and commits, within the call that asks for it
(no threads, no waiting); ``server.storage`` is that database, for a test
to look into::

    server = FakeServer([Notes()])
    server.deliver("<iq type='set'><note xmlns='urn:example:notes'>hi</note></iq>")
    counts = []
    server.storage.transaction(
        lambda connection: connection.execute(select(func.count()).select_from(notes)).scalar(),
        name="count",
    ).addCallback(counts.append)
    assert counts == [1]
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from xml.sax.saxutils import quoteattr

from lxml import etree
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from empc._account import NS_ROSTER, Account
from empc._component import Component
from empc._config import load_config
from empc._connection import (
    AccountProtocol,
    AccountTls,
    ComponentProtocol,
    LinkProtocol,
    LinkSettings,
)
from empc._forwarding import as_component, forwarded, forwarded_stanza
from empc._tap import build_account, build_component
from empc._threads import call_with_copy, unpacked
from empc.handlers import NS_PING, builtin_handlers
from empc.protocol import (
    JID,
    NS_BIND,
    NS_CLIENT,
    NS_COMPONENT,
    NS_SASL,
    NS_SM,
    NS_STREAMS,
    ParserEvent,
    StreamError,
    StreamFooter,
    StreamHeader,
    StreamManagement,
    StreamParser,
    new_element,
    parse_stream_error,
    renamespaced,
)
from empc.routing import NS_STANZAS, Handler, ThreadRunner, make_stanza
from empc.storage import Database, InlineRunner, schemas_of

__all__ = ["DEFAULT_SENDER", "NAMESPACES", "FakeServer", "LinkSettings", "delegated_answer"]

DEFAULT_SENDER = "user@example.org/tests"
"""The ``from`` given to delivered stanzas that have none."""

NAMESPACES: Mapping[str, str] = {"c": NS_COMPONENT, "stanzas": NS_STANZAS}
"""Prefixes the XPath helpers know: ``c`` for stanzas, ``stanzas`` for
stanza error conditions."""

# Unless a test asks for them, no whitespace keepalives and no pings: only
# what the test causes shows in what the component sends.
_QUIET_LINK = LinkSettings(keepalive_interval=0, ping_interval=0)
_STREAM_ID = "fake-stream-1"
_TEST_SECRET = "fake-secret"
_CLOSE = b"</stream:stream>"
_HANDSHAKE_TAG = f"{{{NS_COMPONENT}}}handshake"
_STREAM_ERROR_TAG = f"{{{NS_STREAMS}}}error"
_TEST_INPUT = etree.XMLParser(resolve_entities=False, no_network=True)


class FakeServer:
    """A component under test, connected to a fake server, and what it has sent.

    The handlers' ``start`` hooks run first, as in production; once they
    have all succeeded the component connects and performs the handshake.
    :attr:`started` fires then. It fails if a hook failed (the component
    then never connects), or with :class:`AssertionError` if the component's
    handshake was not the XEP-0114 one.

    Blocking actions run in a later turn of the fake clock, their outcome
    handed back in that same turn (see the module's documentation); the
    methods that feed the component run that turn before they return.

    :param handlers: the handlers to test; the built-in ones (ping, disco,
        version) are added after them unless ``builtins`` is False.
    :param domain: the component's domain.
    :param account: a JID to run the handlers as an account instead (an
        :class:`~empc.Account`, see below); ``domain`` is then unused.
    :param clock: the clock the component runs on; a new
        :class:`~twisted.internet.task.Clock` if None.
    :param link: the connection's settings (:class:`LinkSettings`); if
        None, the defaults without keepalives and pings.
    :param storage: the database the handlers get as
        ``self.component.storage``: a url (``sqlite://`` is in memory), or a
        :class:`~empc.storage.Database` not yet opened. By default, SQLite
        in memory when a handler declares ``schemas``, else none. The
        fake server adds the handlers' schemas, opens it (with an inline
        runner unless the Database has one) before the handlers start, and
        closes it when it stops.
    :param options: passed on to :class:`~empc.Component`
        (``action_timeout``, ``limits``, ``access_lists``, ``identity``,
        ``threads``...).

    As an account, the handlers are served the same way, and the fake
    server plays a client server's side instead: SASL PLAIN over a stream
    that says it is encrypted, then resource binding; it answers the
    roster request with an empty roster. Stanzas cross the wire in
    ``jabber:client``, as they do, and are written and read here in the
    component namespace (``c``), as the handlers see them: a test does
    not change with the kind of link. :attr:`sent` then starts with the
    account's initial presence and roster request.
    """

    def __init__(
        self,
        handlers: Iterable[Handler] = (),
        domain: str = "component.example.org",
        *,
        account: str | None = None,
        clock: Clock | None = None,
        builtins: bool = True,
        link: LinkSettings | None = None,
        storage: Database | str | None = None,
        **options: Any,
    ) -> None:
        self.clock = clock or Clock()
        handlers = list(handlers)
        if builtins:
            handlers += builtin_handlers(handlers, account=account is not None)
        options.setdefault("threads", _hand_off(self.clock))
        if account is None:
            self.component = Component(domain, handlers, self.clock, **options)
        else:
            self.component = Account(account, handlers, self.clock, **options)
        self._start(_TEST_SECRET, link or _QUIET_LINK, storage)

    @classmethod
    def from_config(
        cls,
        path: str,
        domain: str | None = None,
        *,
        clock: Clock | None = None,
        link: LinkSettings | None = None,
        storage: Database | str | None = None,
    ) -> FakeServer:
        """The component that the config file at ``path`` describes (the one
        for ``domain``, or the first), with its handlers, limits, access
        lists, secret and link settings, as ``twistd empc`` would build it;
        keepalives and pings are off unless ``link`` is given. Its database
        is ``storage`` as for :class:`FakeServer`, never the config's. An
        account of the file is chosen the same way, by its JID.

        :raises LookupError: if the file has no component (or account) for
            ``domain``.
        :raises ConfigError: if the file is not a valid config.
        """
        config = load_config(path)
        server = cls.__new__(cls)
        server.clock = clock or Clock()
        threads = _hand_off(server.clock)
        components = [c for c in config.components if domain in (None, c.domain)]
        accounts = [a for a in config.accounts if domain in (None, a.jid, _bare(a.jid))]
        if components:
            server.component = build_component(components[0], config, server.clock, threads)
            secret = components[0].secret
        elif accounts:
            server.component = build_account(accounts[0], config, server.clock, threads)
            secret = accounts[0].password
        else:
            raise LookupError(f"{path} has no component or account {domain!r}")
        quiet = dataclasses.replace(config.link, keepalive_interval=0, ping_interval=0)
        server._start(secret.reveal(), link or quiet, storage)
        return server

    def _start(self, secret: str, link: LinkSettings, storage: Database | str | None) -> None:
        self._sent: list[etree._Element] = []
        self._ids = itertools.count(1)
        self._stream_error: StreamError | None = None
        self._malformed: StreamError | None = None
        self._opening: list[ParserEvent] | None = []
        self._server_closed = False
        self._stopping = False
        # What a server accepts from a component: Prosody's stanza limit.
        self._reader = StreamParser()
        self._transport = _Connection(self.clock, self._read)
        self._protocol: LinkProtocol
        if isinstance(self.component, Account):
            # As over direct TLS: PLAIN may go, and no STARTTLS is needed.
            self._protocol = AccountProtocol(
                self.component,
                secret,
                self.clock,
                link,
                tls=AccountTls(optionsForClientTLS(self.component.jid.domain), direct=True),
                stream_management=StreamManagement(),
            )
        else:
            self._protocol = ComponentProtocol(self.component, secret, self.clock, link)
        self.storage = self._open_storage(storage)
        self.started: Deferred[object] = Deferred()
        if self.storage is None:
            self.component.start().chainDeferred(self.started)
        else:
            opened = self.storage.open()
            opened.addCallback(lambda _: self.component.start()).chainDeferred(self.started)
        self.started.addCallback(self._connect, secret)

    def _open_storage(self, storage: Database | str | None) -> Database | None:
        """The database the component gets (see :class:`FakeServer`), not yet open."""
        schemas = schemas_of(self.component.handlers)
        if isinstance(storage, str):
            storage = Database(storage, runner=InlineRunner())
        elif storage is None and schemas:
            storage = Database("sqlite://", runner=InlineRunner())
        if storage is not None:
            for schema in schemas:
                storage.add_schema(schema)
        self.component.storage = storage
        return storage

    def _connect(self, started: object, secret: str) -> object:
        """Play the server's side of the stream opening and the handshake
        (or the log-in of an account)."""
        if self._stopping:
            return started
        opening = self._opening
        assert opening is not None
        self._transport.protocol = self._protocol
        self._protocol.makeConnection(self._transport)
        if isinstance(self.component, Account):
            self._log_in(self.component, opening, secret)
            return started
        if not (
            len(opening) == 1
            and isinstance(opening[0], StreamHeader)
            and opening[0].element.get("to") == self.domain
        ):
            raise AssertionError(f"the component did not open a stream to its domain: {opening}")
        opening.clear()
        self._protocol.dataReceived(_server_header(self.domain))
        expected = hashlib.sha1((_STREAM_ID + secret).encode()).hexdigest()
        if not (
            len(opening) == 1
            and isinstance(opening[0], etree._Element)
            and opening[0].tag == _HANDSHAKE_TAG
            and opening[0].text == expected
        ):
            raise AssertionError(
                "the component's handshake is not the XEP-0114 one "
                "(hex SHA-1 of the stream id and the secret)"
            )
        self._opening = None
        self._protocol.dataReceived(b"<handshake/>")
        return started

    def _log_in(self, account: Account, opening: list[ParserEvent], password: str) -> None:
        """Play a client server's side: SASL PLAIN, then binding."""
        domain = account.jid.domain
        header = _client_header(domain)
        self._expect_header(opening, domain, NS_CLIENT)
        self._protocol.dataReceived(header + _features(_PLAIN_OFFER))
        (auth,) = _elements(opening, f"{{{NS_SASL}}}auth")
        expected = base64.b64encode(f"\0{account.jid.local}\0{password}".encode()).decode()
        if auth.get("mechanism") != "PLAIN" or auth.text != expected:
            raise AssertionError("the account did not authenticate with its JID and password")
        self._reader = StreamParser()  # the account opens a new stream
        self._protocol.dataReceived(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        self._expect_header(opening, domain, NS_CLIENT)
        self._protocol.dataReceived(header + _features(_BIND_OFFER))
        (bind,) = _elements(opening, f"{{{NS_CLIENT}}}iq")
        resource = bind.findtext(f".//{{{NS_BIND}}}resource") or "fake-resource"
        self._opening = None
        result = make_stanza("iq", {"type": "result", "id": bind.get("id")})
        answer = new_element(NS_BIND, "bind", parent=result)
        new_element(NS_BIND, "jid", parent=answer).text = f"{account.jid.bare}/{resource}"
        self._protocol.dataReceived(_on_the_wire(result))
        # The account's session begins: its presence, and its roster asked for.
        for stanza in self.sent:
            if stanza.find(f"{{{NS_ROSTER}}}query") is not None and stanza.get("type") == "get":
                empty = make_stanza("iq", {"type": "result", "id": stanza.get("id")})
                self._protocol.dataReceived(_on_the_wire(empty))

    def _expect_header(self, opening: list[ParserEvent], to: str, namespace: str) -> None:
        if not (
            len(opening) == 1
            and isinstance(opening[0], StreamHeader)
            and opening[0].element.get("to") == to
            and opening[0].element.nsmap.get(None) == namespace
        ):
            raise AssertionError(f"the component did not open a stream to {to}: {opening}")
        opening.clear()

    @property
    def domain(self) -> str:
        return self.component.domain

    @property
    def connected(self) -> bool:
        """Whether the component's connection is up: False before the
        handshake, and once the component has closed or aborted it."""
        return self._transport.protocol is not None and self._transport.connected

    @property
    def stream_error(self) -> StreamError | None:
        """The stream error the component sent, if it sent one (it then
        closes its stream)."""
        return self._stream_error

    @property
    def sent(self) -> list[etree._Element]:
        """Every stanza the component has sent so far, oldest first.

        :raises AssertionError: if the component wrote something a server
            would refuse as XML.
        """
        if self._malformed is not None:
            raise AssertionError(f"the component sent what a server refuses: {self._malformed!r}")
        return list(self._sent)

    def deliver(self, stanza: str | bytes | etree._Element) -> list[etree._Element]:
        """Deliver a stanza to the component, as the server would.

        Text is parsed with the stanza namespace as default namespace; an
        element is copied (it is left as it is) and may be in no namespace,
        which on the wire means the stream's. A missing ``to`` becomes the
        component's domain, a missing ``from`` :data:`DEFAULT_SENDER`, a
        missing IQ ``id`` a fresh one. The stanza is then serialized and fed
        to the component (see :meth:`feed`).

        Returns the stanzas the component sent while handling it.

        :raises RuntimeError: if the component is not connected.
        """
        element = self._completed(stanza, to=self.domain)
        if isinstance(self.component, Account):
            return self.feed(_on_the_wire(element))
        return self.feed(etree.tostring(element, with_tail=False))

    def _completed(self, stanza: str | bytes | etree._Element, to: str) -> etree._Element:
        """``stanza`` parsed or copied, with ``to``, :data:`DEFAULT_SENDER`
        as ``from`` and, for an IQ, a fresh ``id`` where it has none."""
        element = _parse(stanza) if isinstance(stanza, str | bytes) else copy.deepcopy(stanza)
        defaults = {"to": to, "from": DEFAULT_SENDER}
        if etree.QName(element).localname == "iq":
            defaults["id"] = f"test-{next(self._ids)}"
        for name, value in defaults.items():
            if element.get(name) is None:
                element.set(name, value)
        return element

    def grant(
        self,
        *,
        version: int = 2,
        roster: str = "none",
        message: str = "none",
        presence: str = "none",
        iq: Mapping[str, str] | None = None,
    ) -> list[etree._Element]:
        """Play the server granting privileges (XEP-0356): its advertisement
        in ``urn:xmpp:privilege:VERSION``, from the component's parent
        domain; ``iq`` maps namespaces to ``get``, ``set`` or ``both``."""
        namespace = f"urn:xmpp:privilege:{version}"
        advertisement = new_element(NS_COMPONENT, "message", {"from": self.component.server_domain})
        privilege = new_element(namespace, "privilege", parent=advertisement)
        for access, kind in (("roster", roster), ("message", message), ("presence", presence)):
            new_element(namespace, "perm", {"access": access, "type": kind}, privilege)
        if iq:
            perm = new_element(namespace, "perm", {"access": "iq"}, privilege)
            for ns, kind in iq.items():
                new_element(namespace, "namespace", {"ns": ns, "type": kind}, perm)
        return self.deliver(advertisement)

    def delegate(self, *namespaces: str, version: int = 2) -> list[etree._Element]:
        """Play the server delegating ``namespaces`` (XEP-0355): its
        advertisement in ``urn:xmpp:delegation:VERSION``."""
        namespace = f"urn:xmpp:delegation:{version}"
        advertisement = new_element(NS_COMPONENT, "message", {"from": self.component.server_domain})
        delegation = new_element(namespace, "delegation", parent=advertisement)
        for delegated in namespaces:
            new_element(namespace, "delegated", {"namespace": delegated}, delegation)
        return self.deliver(advertisement)

    def deliver_delegated(
        self, stanza: str | bytes | etree._Element, *, version: int = 2, sender: str | None = None
    ) -> list[etree._Element]:
        """Deliver a user's IQ as the server forwards a delegated one: in
        ``<delegation><forwarded>`` of ``urn:xmpp:delegation:VERSION``, from
        ``sender`` (the server by default). The user's IQ is completed as
        :meth:`deliver` does (but its ``to`` defaults to the server).
        Returns what the component sent: the wrapped answer, with
        :func:`delegated_answer` to read it."""
        inner = self._completed(stanza, to=self.component.server_domain)
        namespace = f"urn:xmpp:delegation:{version}"
        outer = new_element(
            NS_COMPONENT, "iq", {"type": "set", "from": sender or self.component.server_domain}
        )
        forwarded(inner, new_element(namespace, "delegation", parent=outer))
        return self.deliver(outer)

    def feed(self, data: bytes) -> list[etree._Element]:
        """Feed raw bytes of the server's stream to the component, in one
        read, then run the clock's current turn (see the module's
        documentation for why).

        Returns the stanzas the component sent meanwhile.

        :raises RuntimeError: if the component is not connected.
        """
        if not self.connected:
            raise RuntimeError(
                "the component is not connected: see FakeServer.started and stream_error"
            )
        return self._sent_during(lambda: self._protocol.dataReceived(data))

    def close_stream(self) -> list[etree._Element]:
        """Close the stream as the server would, with ``</stream:stream>``.

        Returns the stanzas the component sent meanwhile. The component
        answers what it received before the close, then closes its side and
        lets the connection go.

        :raises RuntimeError: if the component is not connected.
        """
        self._server_closed = True
        return self.feed(_CLOSE)

    def advance(self, seconds: float) -> list[etree._Element]:
        """Move the clock on; returns the stanzas sent meanwhile."""
        return self._sent_during(lambda: self.clock.advance(seconds))

    def clear(self) -> None:
        """Forget what was sent so far."""
        self._sent.clear()

    def find(self, xpath: str, **namespaces: str) -> list[etree._Element]:
        """The sent stanzas for which ``xpath`` (evaluated with the stanza as
        context node) is true; ``c`` and ``stanzas`` are predefined prefixes."""
        expression = etree.XPath(xpath, namespaces={**NAMESPACES, **namespaces})
        return [stanza for stanza in self.sent if expression(stanza)]

    def only(self, xpath: str, **namespaces: str) -> etree._Element:
        """The one sent stanza that matches ``xpath``.

        :raises AssertionError: if none or several match, showing what was sent.
        """
        found = self.find(xpath, **namespaces)
        if len(found) != 1:
            shown = "\n".join(etree.tostring(s, encoding="unicode") for s in self.sent)
            raise AssertionError(
                f"{len(found)} sent stanzas match {xpath!r}, expected 1; sent:\n{shown}"
            )
        return found[0]

    def stop(self) -> Deferred[object]:
        """Stop as ``twistd empc`` does: the component closes its stream (once
        the stanzas it received are answered), the fake server answers the
        close in the next turn of the clock, and once the connection is gone
        the handlers' ``stop`` hooks run.

        Fires when every hook has finished; fails if one failed. The clock's
        current turn is run; an action still running keeps the stream open
        (and the Deferred waiting) until it answers or the link's
        ``grace`` has passed on the clock.
        """
        self._stopping = True
        closed: Deferred[None] = succeed(None)
        if self.connected:
            closed = self._protocol.close()
            self.clock.advance(0)
        stopped = closed.addCallback(lambda _: self.component.stop())
        if self.storage is not None:
            storage = self.storage
            stopped.addBoth(lambda outcome: storage.close().addCallback(lambda _: outcome))
        return stopped

    def _sent_during(self, step: Callable[[], object]) -> list[etree._Element]:
        before = len(self.sent)
        step()
        self.clock.advance(0)
        return self.sent[before:]

    def _read(self, data: bytes) -> None:
        """Read what the component wrote, as the server would."""
        for item in self._reader.feed(data):
            if self._opening is not None:
                self._opening.append(item)
            elif isinstance(item, StreamError):
                self._malformed = item
            elif isinstance(item, etree._Element):
                if item.tag == _STREAM_ERROR_TAG:
                    self._stream_error = parse_stream_error(item)
                elif etree.QName(item).namespace == NS_SM:  # stream management: not stanzas
                    continue
                else:
                    if etree.QName(item).namespace == NS_CLIENT:
                        item = renamespaced(item, NS_CLIENT, NS_COMPONENT)
                    if self._is_ping_to_server(item):
                        # The link's business, not the handlers': answered
                        # a turn later, as over a network.
                        self.clock.callLater(0, self._answer_ping, item)
                    else:
                        self._sent.append(item)
            elif isinstance(item, StreamFooter) and not self._server_closed:
                # The component closed its stream: the server closes its
                # own, a turn later as over a network.
                self._server_closed = True
                self.clock.callLater(0, self._answer_close)

    def _is_ping_to_server(self, stanza: etree._Element) -> bool:
        return (
            stanza.tag == f"{{{NS_COMPONENT}}}iq"
            and stanza.get("type") == "get"
            and stanza.get("to") == self.component.server_domain
            and stanza.find(f"{{{NS_PING}}}ping") is not None
        )

    def _answer_ping(self, ping: etree._Element) -> None:
        if self.connected:
            answer = make_stanza(
                "iq",
                {"type": "result", "id": ping.get("id"), "to": ping.get("from") or self.domain},
            )
            answer.set("from", self.component.server_domain)
            wire = _on_the_wire(answer) if isinstance(self.component, Account) else None
            self._protocol.dataReceived(wire or etree.tostring(answer))

    def _answer_close(self) -> None:
        if self.connected:
            self._protocol.dataReceived(_CLOSE)


class _Connection(StringTransport):
    """The component's end of an in-memory connection to the fake server.

    What the component writes goes to ``read`` at once, until the
    connection is lost. Closing the connection, cleanly or not, reaches the
    protocol's ``connectionLost`` in a later turn of the clock, as with a
    socket.
    """

    protocol: LinkProtocol | None = None

    def __init__(self, clock: IReactorTime, read: Callable[[bytes], None]) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 5347))
        self._clock = clock
        self._read = read

    def write(self, data: bytes) -> None:
        if self.connected:
            self._read(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self._close(ConnectionDone("the component closed the connection"))

    def abortConnection(self) -> None:
        self.disconnected = True
        self._close(ConnectionAborted("the component aborted the connection"))

    def _close(self, reason: Exception) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            self._clock.callLater(0, self._lost, Failure(reason))

    def _lost(self, reason: Failure) -> None:
        self.connected = False
        assert self.protocol is not None
        self.protocol.connectionLost(reason)


def delegated_answer(outer: etree._Element) -> etree._Element:
    """The user's answer inside the component's answer to a delegated IQ,
    in the component namespace.

    :raises AssertionError: if ``outer`` is not a result wrapping one IQ.
    """
    if outer.get("type") != "result" or len(outer) != 1:
        raise AssertionError(f"not a delegation result: {etree.tostring(outer)!r}")
    inner = forwarded_stanza(outer[0], "iq")
    if inner is None:
        raise AssertionError(f"no forwarded IQ in {etree.tostring(outer)!r}")
    return as_component(inner)


def _hand_off(clock: IReactorTime) -> ThreadRunner:
    """A thread runner without threads: the action runs in a later turn of
    ``clock``, and what crosses crosses as in production: a copy of the
    stanza, and the outcome serialized and parsed back."""

    def run(action: Callable[[etree._Element], object], stanza: etree._Element) -> Deferred[object]:
        outcome: Deferred[object] = Deferred()
        parcel = etree.tostring(stanza)

        def work() -> None:
            try:
                result = call_with_copy(action, parcel)
            except BaseException:  # as a pool thread catches them
                outcome.errback()
            else:
                outcome.callback(result)

        clock.callLater(0, work)
        return unpacked(outcome)

    return run


def _bare(jid: str) -> str:
    return str(JID.parse(jid).bare)


def _client_header(domain: str) -> bytes:
    return (
        b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
        b" xmlns='jabber:client' version='1.0' id='" + _STREAM_ID.encode() + b"'"
        b" from=" + quoteattr(domain).encode() + b">"
    )


_PLAIN_OFFER = (
    b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
    b"</mechanisms>"
)
_BIND_OFFER = b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"


def _features(offer: bytes) -> bytes:
    return b"<stream:features>" + offer + b"</stream:features>"


def _elements(opening: list[ParserEvent], tag: str) -> list[etree._Element]:
    """What the account wrote during its log-in, which must all be ``tag``
    elements; the list is emptied."""
    written = list(opening)
    opening.clear()
    if not written or any(not isinstance(e, etree._Element) or e.tag != tag for e in written):
        raise AssertionError(f"the account sent {written} where a server expects {tag}")
    return [e for e in written if isinstance(e, etree._Element)]


def _on_the_wire(stanza: etree._Element) -> bytes:
    """A stanza as a client server sends it: in ``jabber:client``."""
    return etree.tostring(renamespaced(stanza, NS_COMPONENT, NS_CLIENT), with_tail=False)


def _server_header(domain: str) -> bytes:
    return (
        b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
        b" xmlns='jabber:component:accept' id='" + _STREAM_ID.encode() + b"'"
        b" from=" + quoteattr(domain).encode() + b">"
    )


def _parse(text: str | bytes) -> etree._Element:
    data = text.encode() if isinstance(text, str) else text
    wrapper = etree.fromstring(
        b"<wrapper xmlns='jabber:component:accept'>" + data + b"</wrapper>", _TEST_INPUT
    )
    (stanza,) = wrapper
    wrapper.remove(stanza)
    return stanza
