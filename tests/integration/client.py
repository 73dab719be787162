"""A synchronous XMPP client for tests, built on slixmpp.

slixmpp is asyncio based; the tests are plain synchronous pytest functions.
Each ``XmppClient`` runs its own event loop in a daemon thread and every public
method submits a coroutine to it and waits for the answer with a timeout.

Every message and presence the client receives lands in its inbox (pubsub
events and errors included), from which a test takes, with a bounded wait,
the first one that matches.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from slixmpp import ClientXMPP, Iq
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0004 import Form as DataForm
from slixmpp.plugins.xep_0030 import DiscoItems
from slixmpp.plugins.xep_0050 import Command
from slixmpp.plugins.xep_0059 import Set as ResultSet
from slixmpp.plugins.xep_0060 import XEP_0060
from slixmpp.plugins.xep_0060.stanza import Pubsub
from slixmpp.plugins.xep_0077 import Register
from slixmpp.xmlstream import ElementBase, StanzaBase, register_stanza_plugin
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

T = TypeVar("T")
IqType = Literal["get", "set"]
MessageType = Literal["chat", "normal", "groupchat", "headline", "error"]
PresenceType = Literal[
    "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "unavailable", "error"
]

CLIENT_NS = "jabber:client"
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
class Received:
    """A message or presence the client received.

    ``sender`` is the ``from`` attribute exactly as it came (no JID
    unescaping); ``type`` is "" when the stanza has none ("normal" message,
    available presence); ``body`` (of a message) and ``status`` (of a
    presence) are None when absent.
    """

    kind: str  # "message" or "presence"
    sender: str
    type: str
    id: str
    body: str | None
    xml: str
    status: str | None = None

    @property
    def element(self) -> ET.Element:
        return ET.fromstring(self.xml)

    @property
    def bare_sender(self) -> str:
        return self.sender.partition("/")[0]

    @property
    def error_condition(self) -> str | None:
        # slixmpp writes the stanza without its jabber:client namespace.
        for error in self.element.findall("error"):
            for child in error:
                if child.tag.startswith(f"{{{STANZAS_NS}}}") and not child.tag.endswith("}text"):
                    return child.tag.partition("}")[2]
        return None

    def __str__(self) -> str:
        return self.xml


Predicate = Callable[[Received], bool]


@dataclass(frozen=True)
class DiscoInfo:
    reply: IqReply
    identities: list[dict[str, str]] = field(default_factory=list)
    features: set[str] = field(default_factory=set)


# -- registration (XEP-0077) and ad-hoc commands (XEP-0050) ------------------------

REGISTER_NS = "jabber:iq:register"
XML_NS = "http://www.w3.org/XML/1998/namespace"
CommandAction = Literal["next", "complete", "prev"]
FormValues = Mapping[str, str | list[str]]
"""Values to submit in a data form, by field var."""


@dataclass(frozen=True)
class FormField:
    """A field of a data form as received; ``values`` are its ``<value/>`` texts."""

    type: str
    label: str
    required: bool
    values: list[str]


@dataclass(frozen=True)
class RegistrationAnswer:
    """The answer to a registration query: whether the user is registered,
    the instructions, the legacy field elements offered (name: text) and the
    data form's fields by var; all empty when ``reply`` is an error."""

    reply: IqReply
    registered: bool = False
    instructions: str | None = None
    legacy: dict[str, str] = field(default_factory=dict)
    fields: dict[str, FormField] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandAnswer:
    """The answer to an ad-hoc command request: its status, session, the
    actions offered, the form's fields by var and the notes (type, text);
    all empty when ``reply`` is an error."""

    reply: IqReply
    status: str | None = None
    sessionid: str | None = None
    actions: set[str] = field(default_factory=set)
    fields: dict[str, FormField] = field(default_factory=dict)
    notes: list[tuple[str, str]] = field(default_factory=list)


def _received(reply: IqReply) -> Iq:
    """The answer as a slixmpp stanza, read through the plugins' interfaces."""
    element = reply.element
    # Read with an xml:lang (Prosody stamps one), a stanza's plugins look
    # for sub-elements of that language and miss those already parsed.
    element.attrib.pop(f"{{{XML_NS}}}lang", None)
    return Iq(xml=element)


def _submitted(values: FormValues, form_type: str | None = None) -> DataForm:
    form = DataForm()
    form["type"] = "submit"
    if form_type is not None:
        form.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
    for var, value in values.items():
        form.add_field(var=var, value=value)
    return form


def _form_fields(parent: ElementBase) -> dict[str, FormField]:
    """The fields of the data form in ``parent`` (none if it has no form)."""
    if parent.xml.find(f"{{{DataForm.namespace}}}x") is None:
        return {}
    fields = {}
    for var, form_field in parent["form"].get_fields().items():
        value = form_field.get_value(convert=False)
        values = [] if value is None else [value] if isinstance(value, str) else list(value)
        fields[var] = FormField(
            form_field["type"], form_field["label"], bool(form_field["required"]), values
        )
    return fields


# -- end of registration and ad-hoc commands ------------------------------------


# -- publish-subscribe (XEP-0060, paged by XEP-0059) --------------------------------

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_ERRORS = f"{NS_PUBSUB}#errors"
NS_PUBSUB_EVENT = f"{NS_PUBSUB}#event"
FORM_NODE_CONFIG = f"{NS_PUBSUB}#node_config"
# slixmpp pages pubsub items with its XEP-0059 plugin but does not itself
# put a <set/> in <pubsub/>.
register_stanza_plugin(Pubsub, ResultSet)
PubSubRequest = Callable[[XEP_0060], Awaitable[Iq]]


@dataclass(frozen=True)
class PubSubAnswer:
    """The answer to a PubSub request, read through slixmpp's plugin: the
    node created, the item published, the items (id, payload XML) with the
    RSM page's ``first``, ``last`` and ``count``, the subscription state, the
    configuration form's fields by var, the owner's list of subscriptions
    (jid, state); each empty where the answer has none (or is an error)."""

    reply: IqReply
    node: str | None = None
    item_id: str | None = None
    items: list[tuple[str, str | None]] = field(default_factory=list)
    first: str | None = None
    last: str | None = None
    count: int | None = None
    subscription: str | None = None
    fields: dict[str, FormField] = field(default_factory=dict)
    subscriptions: list[tuple[str, str]] = field(default_factory=list)

    @property
    def item_ids(self) -> list[str]:
        return [item_id for item_id, _payload in self.items]

    @property
    def pubsub_condition(self) -> str | None:
        """The XEP-0060 condition of an error (``closed-node``...), if any."""
        for error in self.reply.element.iterfind("{*}error"):
            for child in error:
                if child.tag.startswith(f"{{{NS_PUBSUB_ERRORS}}}"):
                    return child.tag.partition("}")[2]
        return None


@dataclass(frozen=True)
class PubSubEvent:
    """A notification's ``<event/>``: what happened (items, retract, purge,
    delete, configuration), to which node, the item ids and payloads."""

    kind: str
    node: str
    item_ids: list[str]
    payloads: list[str]


def pubsub_event(received: Received) -> PubSubEvent | None:
    """The PubSub event a message carries (None if it carries none); a
    publish is ``items``, a retraction ``retract``."""
    event = received.element.find(f"{{{NS_PUBSUB_EVENT}}}event")
    if event is None or len(event) == 0:
        return None
    what = event[0]
    kind = what.tag.partition("}")[2]
    ids: list[str] = []
    payloads: list[str] = []
    for child in what:
        if child.tag == f"{{{NS_PUBSUB_EVENT}}}retract":
            kind = "retract"
        ids.append(child.get("id", ""))
        payloads += [ET.tostring(payload, encoding="unicode") for payload in child]
    return PubSubEvent(kind, what.get("node", ""), ids, payloads)


def _pubsub_answer(reply: IqReply) -> PubSubAnswer:
    if reply.type != "result":
        return PubSubAnswer(reply)
    iq = _received(reply)
    found: dict[str, Any] = {}
    if iq.xml.find(f"{{{NS_PUBSUB}}}pubsub") is not None:
        pubsub = iq["pubsub"]
        found["node"] = pubsub["create"]["node"] or None
        published = list(pubsub["publish"])
        found["item_id"] = published[0]["id"] if published else None
        items = pubsub["items"]
        found["items"] = [
            (
                item["id"],
                None if item["payload"] is None else ET.tostring(item["payload"], "unicode"),
            )
            for item in items
        ]
        page = pubsub["rsm"]
        found["first"] = page["first"] or None
        found["last"] = page["last"] or None
        found["count"] = int(page["count"]) if page["count"] else None
        found["subscription"] = pubsub["subscription"]["subscription"] or None
    owner = iq.xml.find(f"{{{NS_PUBSUB}#owner}}pubsub")
    if owner is not None:
        found["fields"] = _form_fields(iq["pubsub_owner"]["configure"])
        found["subscriptions"] = [
            (str(entry["jid"]), entry["subscription"])
            for entry in iq["pubsub_owner"]["subscriptions"]
        ]
    return PubSubAnswer(reply, **found)


# -- end of publish-subscribe ---------------------------------------------------------


class XmppClient:
    """One logged-in user: ``with XmppClient(jid, pw, port) as client: ...``.

    Plaintext by default (loopback): no direct TLS, no STARTTLS, and
    PLAIN/SCRAM allowed over the unencrypted stream.  With a ``ca_file`` it
    uses STARTTLS, trusts only the CAs of that PEM file, checks the server's
    certificate is for the JID's domain and sends no password in clear.
    """

    def __init__(
        self,
        jid: str,
        password: str,
        port: int,
        host: str = "127.0.0.1",
        timeout: float = 15.0,
        available: bool = False,
        ca_file: Path | None = None,
    ) -> None:
        """``available``: after login, get the roster and send initial
        presence, as an IM client does.  The server then delivers messages
        to the bare JID (and stored offline ones), and presence from
        contacts, to this session."""
        self.jid = jid
        self.ca_file = ca_file
        self.password = password
        self.address = (host, port)
        self.timeout = timeout
        self.available = available
        self._inbox: list[Received] = []
        self._inbox_changed = threading.Condition()
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

    def disconnect(self, timeout: float = 5.0) -> None:
        """Log out but keep the client: ``connect()`` logs in again (a new
        session; the inbox is kept)."""
        if self._thread.is_alive():
            self._run(self._disconnect(timeout), timeout + _MARGIN)

    def reconnect(self) -> XmppClient:
        self.disconnect()
        return self.connect()

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

    @property
    def encrypted(self) -> bool:
        """Whether the connection is TLS now."""
        transport = None if self._xmpp is None else self._xmpp.transport
        return transport is not None and transport.get_extra_info("ssl_object") is not None

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

    # -- messages and presence ------------------------------------------------------

    def send_message(self, to: str, body: str, mtype: MessageType = "chat") -> str:
        """Send a message; return its id."""
        return self._run(self._send_message(to, body, mtype), DEFAULT_TIMEOUT)

    def send_presence(self, to: str, ptype: PresenceType | None = None) -> None:
        """Send a directed presence (``ptype`` e.g. "subscribe")."""
        self._run(self._send_presence(to, ptype), DEFAULT_TIMEOUT)

    def wait_for(
        self,
        sender: str | None = None,
        predicate: Predicate | None = None,
        *,
        kind: str = "message",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Received:
        """Take from the inbox the first ``kind`` stanza from ``sender`` (a
        bare JID matches any of its resources) that satisfies ``predicate``,
        waiting at most ``timeout`` s for it; others stay in the inbox.

        Raise TimeoutError (listing the inbox) if none comes.
        """
        match = _matcher(kind, sender, predicate)
        deadline = time.monotonic() + timeout
        with self._inbox_changed:
            while True:
                for index, received in enumerate(self._inbox):
                    if match(received):
                        return self._inbox.pop(index)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    inbox = "\n".join(map(str, self._inbox)) or "(empty)"
                    raise TimeoutError(
                        f"{self.jid}: no {kind} from {sender or 'anyone'} matching within "
                        f"{timeout}s; inbox:\n{inbox}"
                    )
                self._inbox_changed.wait(remaining)

    def wait_for_message(
        self,
        sender: str | None = None,
        predicate: Predicate | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Received:
        return self.wait_for(sender, predicate, kind="message", timeout=timeout)

    def take(
        self,
        sender: str | None = None,
        predicate: Predicate | None = None,
        *,
        kind: str = "message",
        wait: float = 0.0,
    ) -> list[Received]:
        """After ``wait`` s, take every matching stanza out of the inbox
        (an empty list: nothing came)."""
        if wait > 0:
            time.sleep(wait)
        match = _matcher(kind, sender, predicate)
        with self._inbox_changed:
            taken = [received for received in self._inbox if match(received)]
            self._inbox[:] = [received for received in self._inbox if not match(received)]
        return taken

    def inbox(self) -> list[Received]:
        """Everything received and not taken yet, oldest first."""
        with self._inbox_changed:
            return list(self._inbox)

    def chat(
        self,
        to: str,
        body: str,
        predicate: Predicate | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Received:
        """Send a chat message to ``to`` and wait for the answer from ``to``:
        by default a message with the request's id, else one that satisfies
        ``predicate``."""
        sent_id = self.send_message(to, body)
        if predicate is None:

            def predicate(received: Received) -> bool:
                return received.id == sent_id

        return self.wait_for_message(to, predicate, timeout)

    def subscribe(self, to: str, timeout: float = DEFAULT_TIMEOUT) -> Received:
        """Send presence subscribe; wait for ``subscribed`` (or an error)."""
        return self._presence_request(to, "subscribe", ("subscribed",), timeout)

    def unsubscribe(self, to: str, timeout: float = DEFAULT_TIMEOUT) -> Received:
        """Send presence unsubscribe; wait for ``unsubscribed``, ``unavailable``
        or an error.

        Not only ``unsubscribed``: the user's server cancels the subscription
        as soon as the user asks, so by the time the contact's
        ``unsubscribed`` comes in it may drop it as unneeded (ejabberd does,
        as RFC 6121 §3.2.3 allows); the contact then only goes unavailable.
        """
        return self._presence_request(to, "unsubscribe", ("unsubscribed", "unavailable"), timeout)

    def _presence_request(
        self, to: str, ptype: PresenceType, answers: tuple[str, ...], timeout: float
    ) -> Received:
        self.send_presence(to, ptype)
        return self.wait_for(
            to.partition("/")[0],
            lambda received: received.type in (*answers, "error"),
            kind="presence",
            timeout=timeout,
        )

    # -- registration (XEP-0077) and ad-hoc commands (XEP-0050) --------------------

    def register_form(self, to: str, timeout: float = DEFAULT_TIMEOUT) -> RegistrationAnswer:
        """Ask ``to`` how to register (or what is on file, if registered)."""
        reply = self.iq(to, str(Register()), timeout=timeout)
        if reply.type != "result":
            return RegistrationAnswer(reply)
        register = _received(reply)["register"]
        return RegistrationAnswer(
            reply,
            bool(register["registered"]),
            register["instructions"] or None,
            {name: register[name] for name in register["fields"]},
            _form_fields(register),
        )

    def register(
        self,
        to: str,
        values: FormValues,
        *,
        legacy: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> IqReply:
        """Register with ``to``: ``values`` by var in a data form of
        FORM_TYPE jabber:iq:register or, ``legacy``, as the legacy field
        elements (by element name, text values only)."""
        register = Register()
        if legacy:
            for name, value in values.items():
                register[name] = value
        else:
            register.append(_submitted(values, REGISTER_NS))
        return self.iq(to, str(register), "set", timeout)

    def unregister(self, to: str, timeout: float = DEFAULT_TIMEOUT) -> IqReply:
        """Cancel the registration with ``to`` (``<remove/>``)."""
        register = Register()
        register["remove"] = True
        return self.iq(to, str(register), "set", timeout)

    def command_list(self, to: str, timeout: float = DEFAULT_TIMEOUT) -> list[tuple[str, str]]:
        """The ad-hoc commands ``to`` offers this user: (node, name) pairs.

        Raise AssertionError (showing the answer) if ``to`` answers an error.
        """
        query = DiscoItems()
        query["node"] = Command.namespace
        reply = self.iq(to, str(query), timeout=timeout)
        if reply.type != "result":
            raise AssertionError(f"{to} refused the command list: {reply.xml}")
        items = _received(reply)["disco_items"]["items"]
        return [(node, name) for _jid, node, name in items]

    def execute_command(
        self, to: str, node: str, timeout: float = DEFAULT_TIMEOUT
    ) -> CommandAnswer:
        """Start the command ``node`` of ``to``."""
        return self._command(to, node, "execute", None, {}, timeout)

    def continue_command(
        self,
        to: str,
        node: str,
        sessionid: str,
        values: FormValues,
        action: CommandAction = "next",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> CommandAnswer:
        """Go on with a command's session, submitting ``values`` by var (give
        the FORM_TYPE among them if the form has one; none: no form)."""
        return self._command(to, node, action, sessionid, values, timeout)

    def cancel_command(
        self, to: str, node: str, sessionid: str, timeout: float = DEFAULT_TIMEOUT
    ) -> CommandAnswer:
        """Cancel a command's session."""
        return self._command(to, node, "cancel", sessionid, {}, timeout)

    def _command(
        self,
        to: str,
        node: str,
        action: str,
        sessionid: str | None,
        values: FormValues,
        timeout: float,
    ) -> CommandAnswer:
        command = Command()
        command["node"] = node
        command["action"] = action
        if sessionid is not None:
            command["sessionid"] = sessionid
        if values:
            command.append(_submitted(values))
        reply = self.iq(to, str(command), "set", timeout)
        if reply.type != "result":
            return CommandAnswer(reply)
        answer = _received(reply)["command"]
        return CommandAnswer(
            reply,
            answer["status"] or None,
            answer["sessionid"] or None,
            set(answer["actions"]),
            _form_fields(answer),
            list(answer["notes"]),
        )

    # -- end of registration and ad-hoc commands --------------------------------

    # -- publish-subscribe (XEP-0060, paged by XEP-0059) ------------------------

    def create_node(
        self,
        to: str,
        node: str | None = None,
        config: FormValues | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> PubSubAnswer:
        """Create ``node`` (None: an instant node, named by ``to``), with
        the ``pubsub#...`` options of ``config`` if given; ``node`` of the
        answer is the name the service gave, if it gave one."""
        form = None if config is None else _submitted(config)
        return self._pubsub(
            lambda p: p.create_node(to, node, config=form, timeout=timeout), timeout
        )

    def node_config(self, to: str, node: str, timeout: float = DEFAULT_TIMEOUT) -> PubSubAnswer:
        """The node's configuration form (an owner's request)."""
        return self._pubsub(lambda p: p.get_node_config(to, node, timeout=timeout), timeout)

    def configure_node(
        self, to: str, node: str, config: FormValues, timeout: float = DEFAULT_TIMEOUT
    ) -> PubSubAnswer:
        """Submit the node configuration form with ``config`` by var."""
        form = _submitted(config, FORM_NODE_CONFIG)
        return self._pubsub(lambda p: p.set_node_config(to, node, form, timeout=timeout), timeout)

    def publish(
        self,
        to: str,
        node: str,
        payload: str | None,
        item_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> PubSubAnswer:
        """Publish ``payload`` (XML text; None: no payload) as ``item_id``
        (None: the service names it; ``item_id`` of the answer)."""
        element = None if payload is None else ET.fromstring(payload)
        return self._pubsub(
            lambda p: p.publish(to, node, id=item_id, payload=element, timeout=timeout), timeout
        )

    def retract(
        self,
        to: str,
        node: str,
        item_id: str,
        notify: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> PubSubAnswer:
        return self._pubsub(
            lambda p: p.retract(to, node, item_id, notify, timeout=timeout), timeout
        )

    def purge(self, to: str, node: str, timeout: float = DEFAULT_TIMEOUT) -> PubSubAnswer:
        return self._pubsub(lambda p: p.purge(to, node, timeout=timeout), timeout)

    def delete_node(self, to: str, node: str, timeout: float = DEFAULT_TIMEOUT) -> PubSubAnswer:
        return self._pubsub(lambda p: p.delete_node(to, node, timeout=timeout), timeout)

    def subscribe_node(self, to: str, node: str, timeout: float = DEFAULT_TIMEOUT) -> PubSubAnswer:
        """Subscribe this user's bare JID to ``node``."""
        return self._pubsub(lambda p: p.subscribe(to, node, timeout=timeout), timeout)

    def unsubscribe_node(
        self, to: str, node: str, timeout: float = DEFAULT_TIMEOUT
    ) -> PubSubAnswer:
        return self._pubsub(lambda p: p.unsubscribe(to, node, timeout=timeout), timeout)

    def node_subscriptions(
        self, to: str, node: str, timeout: float = DEFAULT_TIMEOUT
    ) -> PubSubAnswer:
        """The node's subscriptions (an owner's request)."""
        return self._pubsub(lambda p: p.get_node_subscriptions(to, node, timeout=timeout), timeout)

    def set_node_subscriptions(
        self,
        to: str,
        node: str,
        subscriptions: Sequence[tuple[str, str]],
        timeout: float = DEFAULT_TIMEOUT,
    ) -> PubSubAnswer:
        """Set (jid, state) subscriptions of the node (an owner's request)."""
        listed = list(subscriptions)
        return self._pubsub(
            lambda p: p.modify_subscriptions(to, node, listed, timeout=timeout), timeout
        )

    def items(
        self,
        to: str,
        node: str,
        max_items: int | None = None,
        item_ids: Sequence[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> PubSubAnswer:
        """The node's items: the newest ``max_items``, or those of ``item_ids``."""
        ids = None if item_ids is None else list(item_ids)
        return self._pubsub(
            lambda p: p.get_items(to, node, item_ids=ids, max_items=max_items, timeout=timeout),
            timeout,
        )

    def item_pages(
        self,
        to: str,
        node: str,
        page_size: int,
        reverse: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[PubSubAnswer]:
        """Every page of the node's items, ``page_size`` a page, as
        slixmpp's XEP-0059 iterator walks them (each after the last of the
        one before; ``reverse``: from the end, each before the first of the
        one before), until a page comes back empty or an error stops it."""
        return self._run(self._item_pages(to, node, page_size, reverse, timeout), 10 * timeout)

    def _pubsub(self, request: PubSubRequest, timeout: float) -> PubSubAnswer:
        """Run ``request`` with the loop's XEP-0060 plugin; read its answer."""
        return _pubsub_answer(self._run(self._plugin_request(request), timeout + _MARGIN))

    async def _plugin_request(self, request: PubSubRequest) -> IqReply:
        if self._xmpp is None:
            raise LoginError(f"{self.jid}: not connected")
        return await _answer(request(self._xmpp.plugin["xep_0060"]))

    async def _item_pages(
        self, to: str, node: str, page_size: int, reverse: bool, timeout: float
    ) -> list[PubSubAnswer]:
        if self._xmpp is None:
            raise LoginError(f"{self.jid}: not connected")
        walk = self._xmpp.plugin["xep_0060"].get_items(to, node, iterator=True)
        walk.amount = page_size
        walk.reverse = reverse
        walk.iq_options = {"timeout": timeout}
        pages = []
        async for page in walk:
            pages.append(_pubsub_answer(_iq_reply(page)))
            if len(pages) > 100:  # a service that pages forever
                break
        return pages

    # -- end of publish-subscribe ------------------------------------------------

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
        xmpp.enable_direct_tls = False
        xmpp.enable_plaintext = True
        if self.ca_file is None:
            # The default test servers have no certificates: plaintext only.
            xmpp.enable_starttls = False
            xmpp.plugin["feature_mechanisms"].unencrypted_plain = True
            xmpp.plugin["feature_mechanisms"].unencrypted_scram = True
        else:
            # A context of our own: slixmpp's also trusts the system's CAs.
            xmpp.ssl_context = ssl.create_default_context(cafile=self.ca_file)
            xmpp.plugin["feature_mechanisms"].unencrypted_plain = False
            xmpp.plugin["feature_mechanisms"].unencrypted_scram = False
        for plugin in ("xep_0004", "xep_0050", "xep_0059", "xep_0060", "xep_0077"):
            xmpp.register_plugin(plugin)

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
        for kind in ("message", "presence"):
            xmpp.register_handler(
                Callback(f"test inbox {kind}", MatchXPath(f"{{{CLIENT_NS}}}{kind}"), self._receive)
            )
        xmpp.connect(*self.address)
        try:
            await asyncio.wait_for(ready, self.timeout)
            if self.available:
                # The roster first: Prosody sends presence from contacts (and
                # subscription answers) only to sessions that asked for it.
                await xmpp.get_roster(timeout=self.timeout)
                xmpp.send_presence()
        except TimeoutError:
            xmpp.cancel_connection_attempt()
            raise TimeoutError(f"{self.jid}: no session within {self.timeout}s") from None
        except BaseException:
            # Stop slixmpp from retrying the connection behind our back.
            xmpp.cancel_connection_attempt()
            raise

    def _receive(self, stanza: StanzaBase) -> None:
        """In the loop thread: put a message or presence in the inbox."""
        xml = stanza.xml
        body = xml.find(f"{{{CLIENT_NS}}}body")
        status = xml.find(f"{{{CLIENT_NS}}}status")
        received = Received(
            kind=xml.tag.partition("}")[2],
            sender=xml.get("from", ""),
            type=xml.get("type", ""),
            id=xml.get("id", ""),
            body=None if body is None else (body.text or ""),
            xml=str(stanza),
            status=None if status is None else (status.text or ""),
        )
        with self._inbox_changed:
            self._inbox.append(received)
            self._inbox_changed.notify_all()

    async def _send_message(self, to: str, body: str, mtype: MessageType) -> str:
        if self._xmpp is None:
            raise LoginError(f"{self.jid}: not connected")
        message = self._xmpp.make_message(mto=to, mbody=body, mtype=mtype)
        message["id"] = self._xmpp.new_id()
        message.send()
        return str(message["id"])

    async def _send_presence(self, to: str, ptype: PresenceType | None) -> None:
        if self._xmpp is None:
            raise LoginError(f"{self.jid}: not connected")
        self._xmpp.make_presence(pto=to, ptype=ptype).send()

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
        return await _answer(iq.send(timeout=timeout))


async def _answer(sent: Awaitable[Iq]) -> IqReply:
    """The reply to an IQ sent, result or error; TimeoutError if none came."""
    try:
        reply = await sent
    except IqError as exc:
        reply = exc.iq
    except IqTimeout as exc:
        raise TimeoutError(f"no reply from {exc.iq['to']} in time") from None
    return _iq_reply(reply)


def _iq_reply(reply: Iq) -> IqReply:
    if reply["type"] == "error":
        return IqReply(
            "error",
            str(reply),
            error_condition=reply["error"]["condition"] or None,
            error_type=reply["error"]["type"] or None,
        )
    return IqReply(reply["type"], str(reply))


def _matcher(kind: str, sender: str | None, predicate: Predicate | None) -> Predicate:
    def match(received: Received) -> bool:
        if received.kind != kind:
            return False
        if sender is not None and sender not in (received.sender, received.bare_sender):
            return False
        return predicate is None or predicate(received)

    return match


def login(
    jid: str,
    password: str,
    port: int,
    timeout: float = 15.0,
    available: bool = False,
    ca_file: Path | None = None,
) -> XmppClient:
    """A connected client (over STARTTLS trusting ``ca_file``'s CAs, if
    given); use it as a context manager to close it."""
    return XmppClient(
        jid, password, port, timeout=timeout, available=available, ca_file=ca_file
    ).connect()


class Clients(list[XmppClient]):
    """Several logged-in clients; as a context manager, closes them all."""

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for client in self:
            client.close()


def login_all(
    accounts: Sequence[tuple[str, str]],
    port: int,
    timeout: float = 15.0,
    available: bool = False,
) -> Clients:
    """Log in every (jid, password) at once, in parallel; the clients in the
    same order.  If one fails, the others are closed and its error raised."""
    clients = Clients(
        XmppClient(jid, password, port, timeout=timeout, available=available)
        for jid, password in accounts
    )
    with ThreadPoolExecutor(max_workers=max(1, len(clients))) as pool:
        futures = [pool.submit(client.connect) for client in clients]
        errors = [future.exception() for future in futures]
    failed = next((error for error in errors if error is not None), None)
    if failed is not None:
        clients.close()  # closing a client that failed to connect is harmless
        raise failed
    return clients
