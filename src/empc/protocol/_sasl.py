"""SASL authentication of a client stream (RFC 6120 §6), as a sans-IO state machine.

Theory of operation
-------------------

:class:`SaslClient` knows no sockets. The client stream picks a mechanism
from the server's ``<mechanisms/>`` with :func:`choose_mechanism`, sends
:meth:`SaslClient.auth`, then hands every element the server sends in the
SASL namespace to :meth:`SaslClient.receive` and sends the ``<response/>``
it returns, until it returns ``None`` (authenticated) or raises. All state
transitions live in this module::

    READY --auth()--> AUTHENTICATING
    AUTHENTICATING --<success/> (PLAIN)--> AUTHENTICATED
    AUTHENTICATING --<challenge/> (SCRAM server-first)--> PROVING
    PROVING --<success/> carrying a server signature that verifies--> AUTHENTICATED
    PROVING --<challenge/> carrying a server signature that verifies--> VERIFIED
    VERIFIED --<success/> without data--> AUTHENTICATED
    any state before AUTHENTICATED --<failure/>, or a breach--> FAILED

A SCRAM server sends its final message (its signature, the proof that it
knows the password too) either as data in ``<success/>`` (RFC 6120 §6.3.10)
or in a last ``<challenge/>`` answered by an empty ``<response/>``; both are
accepted, and a SCRAM exchange never reports success before the signature
verified: a server that cannot prove it is not the one the account is on.

The SCRAM computations are scramp's; this module maps them to XMPP's
elements and errors. The password stays out of every message and repr.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Iterable
from typing import ClassVar, NoReturn

import scramp
from lxml import etree

from ._errors import LocalProtocolError
from ._xml import new_element

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"

SCRAM_SHA_256 = "SCRAM-SHA-256"
SCRAM_SHA_1 = "SCRAM-SHA-1"
PLAIN = "PLAIN"
# Strongest first. The -PLUS variants need channel binding, which we do not offer.
_SCRAM_MECHANISMS = (SCRAM_SHA_256, SCRAM_SHA_1)

_CHALLENGE_TAG = f"{{{NS_SASL}}}challenge"
_SUCCESS_TAG = f"{{{NS_SASL}}}success"
_FAILURE_TAG = f"{{{NS_SASL}}}failure"
_TEXT_TAG = f"{{{NS_SASL}}}text"

# RFC 6120 §6.5, in plain words; not-authorized is also what servers say
# for an account that does not exist, so as not to reveal which accounts do.
_FAILURE_EXPLANATIONS = {
    "aborted": "the authentication was aborted",
    "account-disabled": "the account for that JID is disabled",
    "credentials-expired": "the password for that JID has expired",
    "encryption-required": "the server requires an encrypted stream for that mechanism",
    "incorrect-encoding": "the server could not decode what was sent",
    "invalid-authzid": "the server refused the authorization identity",
    "invalid-mechanism": "the server does not support the mechanism chosen",
    "malformed-request": "the server found the request malformed",
    "mechanism-too-weak": "the server requires a stronger mechanism than the one chosen",
    "not-authorized": "the password for that JID is wrong (or the account does not exist)",
    "temporary-auth-failure": "the server could not authenticate for now; later may work",
}
# The most PBKDF2 iterations a server may ask for: the proof is computed
# in the caller's thread (about 0.25 s at this count); a server asking for
# more would hold it for seconds.
MAX_ITERATIONS = 1_000_000

# Conditions after which the same attempt may succeed later.
_PASSING_CONDITIONS = frozenset(("aborted", "temporary-auth-failure"))


class SaslError(Exception):
    """The account could not authenticate."""


class NoMechanism(SaslError):
    """The server offers no mechanism we can use.

    :ivar offered: the mechanisms the server offers, in its order.
    :ivar tls: whether the stream is encrypted.
    """

    permanent = True  # until the server's or the account's configuration changes

    def __init__(self, offered: tuple[str, ...], tls: bool) -> None:
        super().__init__(_no_mechanism_reason(offered, tls))
        self.offered = offered
        self.tls = tls


class AuthenticationFailed(SaslError, PermissionError):
    """The server answered ``<failure/>``.

    :ivar condition: the RFC 6120 §6.5 condition, such as ``not-authorized``,
        or ``None`` if the server named none.
    :ivar text: the server's optional human-readable text.
    :ivar permanent: whether trying again with the same credentials is
        pointless until someone changes the account or the configuration.
    """

    def __init__(self, condition: str | None, text: str | None = None) -> None:
        if condition is None:
            reason = "the server refused the authentication without saying why"
        else:
            explanation = _FAILURE_EXPLANATIONS.get(condition, "the server refused it")
            reason = f"{condition}: {explanation}"
        super().__init__(reason if text is None else f"{reason} (the server says: {text})")
        self.condition = condition
        self.text = text
        self.permanent = condition not in _PASSING_CONDITIONS


class SaslProtocolError(SaslError, ValueError):
    """The server broke the SASL exchange: a malformed or unexpected element
    or payload. The exchange has failed."""

    reason: ClassVar[str] = "the server broke the SASL exchange"

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.reason}: {detail}")
        self.detail = detail


class ServerSignatureMismatch(SaslProtocolError):
    """The server's SCRAM signature is wrong or missing: it does not know
    the password, so it is not the server the account is on."""

    reason = "the server could not prove it knows the password"


def choose_mechanism(offered: Iterable[str], tls: bool) -> str:
    """The strongest mechanism of those ``offered`` that we can use.

    SCRAM-SHA-256 first, then SCRAM-SHA-1, then PLAIN, which sends the
    password itself and so only when ``tls`` (the stream is encrypted).

    :raises NoMechanism: if none of ``offered`` can be used; its message
        names what the server offers and why none fits.
    """
    offered = tuple(offered)
    usable = (*_SCRAM_MECHANISMS, PLAIN) if tls else _SCRAM_MECHANISMS
    for mechanism in usable:
        if mechanism in offered:
            return mechanism
    raise NoMechanism(offered, tls)


def _no_mechanism_reason(offered: tuple[str, ...], tls: bool) -> str:
    if not offered:
        return "the server offers no SASL mechanism"
    offers = f"the server offers only {', '.join(offered)}"
    if PLAIN in offered and not tls:
        if offered == (PLAIN,):
            return f"{offers}, and the stream is not encrypted"
        return (
            f"{offers}: PLAIN needs an encrypted stream, and none of the others"
            " is SCRAM-SHA-256 or SCRAM-SHA-1"
        )
    return f"{offers}, none of which is SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN"


class SaslState(enum.Enum):
    READY = "ready"
    AUTHENTICATING = "authenticating"
    PROVING = "proving"
    VERIFIED = "verified"
    AUTHENTICATED = "authenticated"
    FAILED = "failed"


class SaslClient:
    """One SASL exchange of an account with its server.

    :param mechanism: SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN (see
        :func:`choose_mechanism`).
    :param username: the local part of the account's JID.
    :param password: the account's password.
    :param client_nonce: the SCRAM client nonce; a fresh random one unless
        given (tests fix it to replay known exchanges).
    :raises LocalProtocolError: if the mechanism is none of those, or the
        username or password cannot be sent with it (empty, or characters
        SASLprep forbids); the message never holds the password.
    """

    def __init__(
        self, mechanism: str, username: str, password: str, *, client_nonce: str | None = None
    ) -> None:
        self.mechanism = mechanism
        self.username = username
        self.state = SaslState.READY
        self._scram: scramp.ScramClient | None = None
        self._plain_message = b""
        if mechanism == PLAIN:
            if not username or "\0" in username or "\0" in password:
                raise LocalProtocolError("PLAIN needs a username, and neither may hold NUL")
            # RFC 4616: an empty authorization identity, then the
            # authentication identity and the password.
            self._plain_message = b"\0" + username.encode() + b"\0" + password.encode()
        elif mechanism in _SCRAM_MECHANISMS:
            try:
                self._scram = scramp.ScramClient(
                    [mechanism], username, password, c_nonce=client_nonce
                )
            except scramp.ScramException as exc:
                raise LocalProtocolError(
                    f"cannot authenticate {username!r} with {mechanism}: {exc}"
                ) from None
        else:
            raise LocalProtocolError(f"unsupported SASL mechanism: {mechanism!r}")

    def __repr__(self) -> str:
        # The password stays out of every representation.
        return f"<SaslClient {self.mechanism} {self.username!r} {self.state.value}>"

    @property
    def authenticated(self) -> bool:
        """Whether the server accepted the account (and, for SCRAM, proved it
        knows the password)."""
        return self.state is SaslState.AUTHENTICATED

    def auth(self) -> etree._Element:
        """The ``<auth/>`` element that opens the exchange, carrying the
        mechanism's initial response.

        :raises LocalProtocolError: if the exchange has already begun.
        """
        self._expect(SaslState.READY, "start")
        if self._scram is None:
            initial = self._plain_message
        else:
            initial = self._scram.get_client_first().encode()
        self.state = SaslState.AUTHENTICATING
        element = new_element(NS_SASL, "auth", {"mechanism": self.mechanism})
        element.text = _encode(initial)
        return element

    def receive(self, element: etree._Element) -> etree._Element | None:
        """Consume an element the server sent in the SASL namespace.

        :returns: the ``<response/>`` to send for a ``<challenge/>``; ``None``
            for a ``<success/>``: the account is authenticated.
        :raises AuthenticationFailed: for a ``<failure/>``.
        :raises SaslProtocolError: for any other element, and as
            :meth:`challenge` and :meth:`success` say.
        :raises LocalProtocolError: if the exchange is not under way.
        """
        if element.tag == _CHALLENGE_TAG:
            return self.challenge(element)
        if element.tag == _SUCCESS_TAG:
            self.success(element)
            return None
        if element.tag == _FAILURE_TAG:
            self.failure(element)
        self._expect_under_way()
        self.state = SaslState.FAILED
        raise SaslProtocolError(f"unexpected element {element.tag}")

    def challenge(self, challenge: etree._Element) -> etree._Element:
        """The ``<response/>`` to the server's ``<challenge/>``.

        The first SCRAM challenge (the server-first message) is answered
        with the proof of the password; a second one must carry the
        server's signature, which is verified and answered with an empty
        response.

        :raises SaslProtocolError: if the payload is not base64, is not the
            SCRAM message expected (missing or malformed attributes, a nonce
            that does not extend ours, an error attribute), or comes when no
            challenge is expected (PLAIN has none; SCRAM has two at most).
        :raises ServerSignatureMismatch: if the server's signature is wrong.
        :raises LocalProtocolError: if the exchange is not under way.
        """
        self._expect_under_way()
        payload = self._payload(challenge)
        if self._scram is not None and self.state is SaslState.AUTHENTICATING:
            try:
                server_first = _decode_scram(payload)
            except scramp.ScramException as exc:
                self._fail(SaslProtocolError(f"a malformed SCRAM challenge ({exc})"))
            iterations = _iterations(server_first)
            if iterations > MAX_ITERATIONS:
                self._fail(
                    SaslProtocolError(
                        f"the server asks for {iterations} iterations, more than {MAX_ITERATIONS:,}"
                    )
                )
            try:
                self._scram.set_server_first(server_first)
                client_final = self._scram.get_client_final()
            except scramp.ScramException as exc:
                self._fail(SaslProtocolError(f"a malformed SCRAM challenge ({exc})"))
            self.state = SaslState.PROVING
            return _response(client_final.encode())
        if self.state is SaslState.PROVING:
            self._verify_server_final(payload)
            self.state = SaslState.VERIFIED
            return _response(b"")
        self._fail(SaslProtocolError(f"a challenge to {self.mechanism} when none is due"))

    def success(self, success: etree._Element) -> None:
        """Consume the server's ``<success/>``: the account is authenticated.

        :raises ServerSignatureMismatch: for SCRAM, if the success carries
            no signature when none came before, or a wrong one.
        :raises SaslProtocolError: if the payload is not base64, or the
            success comes before the SCRAM exchange has run, or it carries
            data when none is due.
        :raises LocalProtocolError: if the exchange is not under way.
        """
        self._expect_under_way()
        payload = self._payload(success)
        if self.state is SaslState.PROVING:
            if not payload:
                self._fail(ServerSignatureMismatch("the success carries no signature"))
            self._verify_server_final(payload)
        elif self._scram is not None and self.state is SaslState.AUTHENTICATING:
            self._fail(SaslProtocolError("a success before the SCRAM exchange"))
        elif payload:
            self._fail(SaslProtocolError("a success carrying data when none is due"))
        self.state = SaslState.AUTHENTICATED

    def failure(self, failure: etree._Element) -> NoReturn:
        """Consume the server's ``<failure/>``.

        :raises AuthenticationFailed: always, with the condition the
            failure names and its text.
        :raises LocalProtocolError: if the exchange is not under way.
        """
        self._expect_under_way()
        condition = next(
            (
                etree.QName(child).localname
                for child in failure.iterchildren(f"{{{NS_SASL}}}*")
                if child.tag != _TEXT_TAG
            ),
            None,
        )
        self._fail(AuthenticationFailed(condition, failure.findtext(_TEXT_TAG) or None))

    def _verify_server_final(self, payload: bytes) -> None:
        assert self._scram is not None  # only SCRAM reaches PROVING
        try:
            self._scram.set_server_final(_decode_scram(payload))
        except scramp.ScramException as exc:
            self._fail(ServerSignatureMismatch(str(exc)))

    def _payload(self, element: etree._Element) -> bytes:
        try:
            return _decode(element.text)
        except SaslProtocolError as exc:
            self._fail(exc)

    def _fail(self, error: SaslError) -> NoReturn:
        self.state = SaslState.FAILED
        raise error

    def _expect(self, state: SaslState, action: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"cannot {action} a SASL exchange that is {self.state.value}")

    def _expect_under_way(self) -> None:
        if self.state in (SaslState.READY, SaslState.AUTHENTICATED, SaslState.FAILED):
            raise LocalProtocolError(f"no SASL exchange is under way: it is {self.state.value}")


def _response(data: bytes) -> etree._Element:
    element = new_element(NS_SASL, "response")
    element.text = _encode(data)
    return element


def _encode(data: bytes) -> str:
    """Base64, with "=" for empty data (RFC 6120 §6.4.2)."""
    return base64.b64encode(data).decode("ascii") if data else "="


def _decode(text: str | None) -> bytes:
    """The data an element carries: none for no text or "=", else strict base64.

    :raises SaslProtocolError: if the text is not base64.
    """
    if not text or text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise SaslProtocolError("a payload that is not base64") from None


def _iterations(server_first: str) -> int:
    """The iteration count a SCRAM server-first message asks for; 0 when
    it names none a number (scramp then refuses the message)."""
    for attribute in server_first.split(","):
        if attribute.startswith("i=") and attribute[2:].isdigit():
            return int(attribute[2:])
    return 0


def _decode_scram(payload: bytes) -> str:
    """A SCRAM message, which is UTF-8 (RFC 5802 §5.1).

    :raises scramp.ScramException: if it is not.
    """
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise scramp.ScramException("a message that is not UTF-8") from None
