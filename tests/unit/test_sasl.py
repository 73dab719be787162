"""SaslClient and choose_mechanism: SASL of a client stream, driven with plain elements."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from empc.protocol import LocalProtocolError
from empc.protocol._sasl import (
    MAX_ITERATIONS,
    NS_SASL,
    SCRAM_SHA_256,
    AuthenticationFailed,
    NoMechanism,
    SaslClient,
    SaslError,
    SaslProtocolError,
    SaslState,
    ServerSignatureMismatch,
    choose_mechanism,
)
from empc.protocol._xml import new_element

PROPERTY = settings(max_examples=200, deadline=None)


@dataclass(frozen=True)
class Vector:
    """A SCRAM exchange published with its RFC, user "user", password "pencil"."""

    mechanism: str
    client_nonce: str
    server_first: str
    client_final: str
    server_final: str


RFC_5802 = Vector(
    "SCRAM-SHA-1",
    "fyko+d2lbbFgONRv9qkxdawL",
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
)
RFC_7677 = Vector(
    "SCRAM-SHA-256",
    "rOprNGfwEbeRWgbNEkqO",
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
)
VECTORS = pytest.mark.parametrize("vector", [RFC_5802, RFC_7677], ids=lambda v: v.mechanism)
PASSWORD = "pencil"


def from_server(name: str, text: str | None = None, children: str = "") -> etree._Element:
    """An element in the SASL namespace, parsed as the stream would deliver it."""
    body = (text or "") + children
    return etree.fromstring(f"<{name} xmlns='{NS_SASL}'>{body}</{name}>")


def carrying(name: str, message: str | bytes) -> etree._Element:
    """A challenge or success carrying ``message``, base64-encoded."""
    data = message.encode() if isinstance(message, str) else message
    return from_server(name, base64.b64encode(data).decode())


def payload(element: etree._Element) -> bytes:
    assert element.text is not None
    return base64.b64decode(element.text, validate=True)


def scram(vector: Vector) -> SaslClient:
    return SaslClient(vector.mechanism, "user", PASSWORD, client_nonce=vector.client_nonce)


def started(vector: Vector) -> SaslClient:
    client = scram(vector)
    client.auth()
    return client


def proving(vector: Vector) -> SaslClient:
    """A SCRAM client that has answered the server-first message with its proof."""
    client = started(vector)
    client.receive(carrying("challenge", vector.server_first))
    return client


def tampered(server_final: str) -> str:
    signature = bytearray(base64.b64decode(server_final[2:]))
    signature[0] ^= 1
    return "v=" + base64.b64encode(bytes(signature)).decode()


def plain_started() -> SaslClient:
    client = SaslClient("PLAIN", "user", PASSWORD)
    client.auth()
    return client


# Mechanism choice


def test_scram_sha_256_is_chosen_before_scram_sha_1_and_plain() -> None:
    assert choose_mechanism(["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"], tls=True) == "SCRAM-SHA-256"


def test_scram_sha_1_is_chosen_before_plain() -> None:
    assert choose_mechanism(["PLAIN", "SCRAM-SHA-1"], tls=True) == "SCRAM-SHA-1"


def test_plain_is_chosen_on_an_encrypted_stream_without_scram() -> None:
    assert choose_mechanism(["DIGEST-MD5", "PLAIN"], tls=True) == "PLAIN"


def test_scram_is_chosen_on_an_unencrypted_stream() -> None:
    assert choose_mechanism(["PLAIN", "SCRAM-SHA-1"], tls=False) == "SCRAM-SHA-1"


def test_plain_alone_on_an_unencrypted_stream_is_refused_saying_why() -> None:
    with pytest.raises(NoMechanism) as caught:
        choose_mechanism(["PLAIN"], tls=False)
    assert str(caught.value) == "the server offers only PLAIN, and the stream is not encrypted"
    assert caught.value.offered == ("PLAIN",)
    assert caught.value.tls is False


def test_plain_among_unknown_mechanisms_on_an_unencrypted_stream_is_refused_naming_them() -> None:
    with pytest.raises(NoMechanism, match="only DIGEST-MD5, PLAIN: PLAIN needs an encrypted"):
        choose_mechanism(["DIGEST-MD5", "PLAIN"], tls=False)


def test_channel_binding_variants_are_never_chosen() -> None:
    offered = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"]
    assert choose_mechanism(offered, tls=True) == "SCRAM-SHA-1"


def test_only_unknown_mechanisms_are_refused_naming_them() -> None:
    with pytest.raises(NoMechanism, match="only SCRAM-SHA-256-PLUS, EXTERNAL, none of which"):
        choose_mechanism(["SCRAM-SHA-256-PLUS", "EXTERNAL"], tls=True)


def test_no_mechanism_offered_is_refused() -> None:
    with pytest.raises(NoMechanism, match="the server offers no SASL mechanism"):
        choose_mechanism([], tls=True)


def test_a_refused_choice_is_a_sasl_error() -> None:
    with pytest.raises(SaslError):
        choose_mechanism(["X-OAUTH2"], tls=True)


@given(st.permutations(["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "DIGEST-MD5"]), st.booleans())
def test_the_order_the_server_lists_its_mechanisms_in_does_not_matter(
    offered: list[str], tls: bool
) -> None:
    assert choose_mechanism(offered, tls) == "SCRAM-SHA-256"


# PLAIN


def test_plain_auth_carries_an_empty_authzid_the_username_and_the_password() -> None:
    auth = SaslClient("PLAIN", "user", PASSWORD).auth()
    assert auth.tag == f"{{{NS_SASL}}}auth"
    assert auth.get("mechanism") == "PLAIN"
    assert payload(auth) == b"\0user\0pencil"


def test_plain_success_without_data_authenticates() -> None:
    client = plain_started()
    assert client.receive(from_server("success")) is None
    assert client.authenticated


def test_plain_success_with_data_is_refused() -> None:
    client = plain_started()
    with pytest.raises(SaslProtocolError, match="carrying data"):
        client.receive(carrying("success", "v=abc"))
    assert client.state is SaslState.FAILED


def test_a_challenge_to_plain_is_refused() -> None:
    client = plain_started()
    with pytest.raises(SaslProtocolError, match="a challenge to PLAIN"):
        client.receive(from_server("challenge", "="))
    assert not client.authenticated


def test_a_plain_username_holding_nul_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(LocalProtocolError):
        SaslClient("PLAIN", "us\0er", PASSWORD)


# SCRAM, with the RFCs' exchanges


@VECTORS
def test_scram_auth_carries_the_client_first_message(vector: Vector) -> None:
    auth = scram(vector).auth()
    assert auth.tag == f"{{{NS_SASL}}}auth"
    assert auth.get("mechanism") == vector.mechanism
    assert payload(auth) == f"n,,n=user,r={vector.client_nonce}".encode()


@VECTORS
def test_scram_answers_the_server_first_message_with_the_client_final_message(
    vector: Vector,
) -> None:
    response = started(vector).receive(carrying("challenge", vector.server_first))
    assert response is not None
    assert response.tag == f"{{{NS_SASL}}}response"
    assert payload(response) == vector.client_final.encode()


@VECTORS
def test_scram_success_carrying_the_server_signature_authenticates(vector: Vector) -> None:
    client = proving(vector)
    assert client.receive(carrying("success", vector.server_final)) is None
    assert client.authenticated


@VECTORS
def test_scram_server_signature_in_a_last_challenge_is_answered_with_an_empty_response(
    vector: Vector,
) -> None:
    client = proving(vector)
    response = client.receive(carrying("challenge", vector.server_final))
    assert response is not None
    assert response.tag == f"{{{NS_SASL}}}response"
    assert response.text == "="
    assert not client.authenticated


@VECTORS
def test_scram_empty_success_after_a_verified_signature_authenticates(vector: Vector) -> None:
    client = proving(vector)
    client.receive(carrying("challenge", vector.server_final))
    assert client.receive(from_server("success")) is None
    assert client.authenticated


@VECTORS
def test_scram_success_with_a_tampered_signature_is_refused(vector: Vector) -> None:
    client = proving(vector)
    with pytest.raises(ServerSignatureMismatch, match="could not prove it knows the password"):
        client.receive(carrying("success", tampered(vector.server_final)))
    assert client.state is SaslState.FAILED


@VECTORS
def test_scram_last_challenge_with_a_tampered_signature_is_refused(vector: Vector) -> None:
    client = proving(vector)
    with pytest.raises(ServerSignatureMismatch):
        client.receive(carrying("challenge", tampered(vector.server_final)))
    assert client.state is SaslState.FAILED


@VECTORS
def test_scram_success_without_a_signature_is_refused(vector: Vector) -> None:
    client = proving(vector)
    with pytest.raises(ServerSignatureMismatch, match="no signature"):
        client.receive(from_server("success"))
    assert not client.authenticated


def test_scram_success_before_the_server_first_message_is_refused() -> None:
    client = started(RFC_7677)
    with pytest.raises(SaslProtocolError, match="before the SCRAM exchange"):
        client.receive(from_server("success"))
    assert not client.authenticated


def test_scram_success_with_data_after_a_verified_signature_is_refused() -> None:
    client = proving(RFC_7677)
    client.receive(carrying("challenge", RFC_7677.server_final))
    with pytest.raises(SaslProtocolError, match="carrying data"):
        client.receive(carrying("success", RFC_7677.server_final))


def test_scram_third_challenge_is_refused() -> None:
    client = proving(RFC_7677)
    client.receive(carrying("challenge", RFC_7677.server_final))
    with pytest.raises(SaslProtocolError, match="none is due"):
        client.receive(carrying("challenge", RFC_7677.server_final))


MALFORMED_SERVER_FIRST = {
    "empty": "",
    "salt missing": "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2,i=4096",
    "iteration count missing": "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2,s=W22ZaJ0SNY7soEsUEjb6gQ==",
    "nonce missing": "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    "nonce not extending ours": "r=someoneElsesNonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    "nonce equal to ours": "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    "salt not base64": "r=rOprNGfwEbeRWgbNEkqO%hv,s=!!!!,i=4096",
    "iteration count not a number": "r=rOprNGfwEbeRWgbNEkqO%hv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=ten",
    "a server error": "e=other-error",
    "not attributes": "hello",
}


@pytest.mark.parametrize("message", MALFORMED_SERVER_FIRST.values(), ids=MALFORMED_SERVER_FIRST)
def test_a_malformed_server_first_message_is_refused(message: str) -> None:
    client = started(RFC_7677)
    with pytest.raises(SaslProtocolError, match="a malformed SCRAM challenge"):
        client.receive(carrying("challenge", message))
    assert client.state is SaslState.FAILED


@pytest.mark.parametrize("text", ["not base64!", "cj1m=eWtv", "=="], ids=repr)
def test_a_challenge_that_is_not_base64_is_refused(text: str) -> None:
    client = started(RFC_7677)
    with pytest.raises(SaslProtocolError, match="not base64"):
        client.receive(from_server("challenge", text))
    assert client.state is SaslState.FAILED


def test_a_challenge_that_is_not_utf8_is_refused() -> None:
    client = started(RFC_7677)
    with pytest.raises(SaslProtocolError, match="not UTF-8"):
        client.receive(carrying("challenge", b"r=\xff\xfe,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"))


def test_an_element_that_is_no_sasl_answer_is_refused() -> None:
    client = started(RFC_7677)
    with pytest.raises(SaslProtocolError, match="unexpected element"):
        client.receive(from_server("abort"))
    assert client.state is SaslState.FAILED


@given(st.binary(max_size=200))
@PROPERTY
def test_any_bytes_as_a_challenge_raise_nothing_but_the_typed_error(data: bytes) -> None:
    client = started(RFC_7677)
    try:
        client.receive(carrying("challenge", data))
    except SaslProtocolError:
        assert client.state is SaslState.FAILED


@given(st.text(st.characters(exclude_categories=["Cc", "Cs", "Cn"]), max_size=200))
@PROPERTY
def test_any_text_as_a_challenge_raises_nothing_but_the_typed_error(text: str) -> None:
    client = started(RFC_7677)
    challenge = etree.Element(f"{{{NS_SASL}}}challenge")
    challenge.text = text
    try:
        client.receive(challenge)
    except SaslProtocolError:
        assert client.state is SaslState.FAILED


@given(st.binary(max_size=200))
@PROPERTY
def test_any_bytes_but_the_signature_in_a_success_are_refused(data: bytes) -> None:
    client = proving(RFC_7677)
    with pytest.raises(SaslProtocolError):
        client.receive(carrying("success", data))
    assert not client.authenticated


# Failure


def test_not_authorized_says_the_password_is_wrong() -> None:
    client = started(RFC_7677)
    with pytest.raises(AuthenticationFailed) as caught:
        client.receive(from_server("failure", children="<not-authorized/>"))
    assert caught.value.condition == "not-authorized"
    assert "the password for that JID is wrong" in str(caught.value)
    assert caught.value.permanent
    assert isinstance(caught.value, PermissionError)
    assert client.state is SaslState.FAILED


def test_a_failure_after_the_proof_is_raised_too() -> None:
    client = proving(RFC_5802)
    with pytest.raises(AuthenticationFailed, match="not-authorized"):
        client.receive(from_server("failure", children="<not-authorized/>"))


@pytest.mark.parametrize(
    ("condition", "words", "permanent"),
    [
        ("account-disabled", "is disabled", True),
        ("credentials-expired", "has expired", True),
        ("encryption-required", "requires an encrypted stream", True),
        ("mechanism-too-weak", "stronger mechanism", True),
        ("aborted", "was aborted", False),
        ("temporary-auth-failure", "later may work", False),
        ("x-unheard-of", "refused it", True),
    ],
)
def test_each_failure_condition_is_carried_in_plain_words(
    condition: str, words: str, permanent: bool
) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        plain_started().receive(from_server("failure", children=f"<{condition}/>"))
    assert caught.value.condition == condition
    assert words in str(caught.value)
    assert caught.value.permanent is permanent


def test_a_failure_carries_the_servers_text() -> None:
    children = "<account-disabled/><text xml:lang='en'>Call the admin</text>"
    with pytest.raises(AuthenticationFailed) as caught:
        plain_started().receive(from_server("failure", children=children))
    assert caught.value.condition == "account-disabled"
    assert caught.value.text == "Call the admin"
    assert "(the server says: Call the admin)" in str(caught.value)


def test_a_failure_naming_no_condition_says_so() -> None:
    children = "<text>No</text><extra xmlns='urn:example:other'/>"
    with pytest.raises(AuthenticationFailed, match="without saying why") as caught:
        plain_started().receive(from_server("failure", children=children))
    assert caught.value.condition is None


# Secrets and misuse


@VECTORS
def test_the_password_never_appears_in_a_repr_or_an_error(vector: Vector) -> None:
    client = proving(vector)
    assert PASSWORD not in repr(client)
    with pytest.raises(SaslError) as caught:
        client.receive(carrying("success", tampered(vector.server_final)))
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value)


def test_a_password_saslprep_forbids_is_refused_without_showing_it() -> None:
    with pytest.raises(LocalProtocolError) as caught:
        SaslClient("SCRAM-SHA-256", "user", "secret\x07bell")
    assert "secret" not in str(caught.value)


def test_an_unsupported_mechanism_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="unsupported SASL mechanism: 'DIGEST-MD5'"):
        SaslClient("DIGEST-MD5", "user", PASSWORD)


def test_a_challenge_before_auth_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError, match="no SASL exchange is under way"):
        scram(RFC_7677).receive(carrying("challenge", RFC_7677.server_first))


def test_auth_twice_is_a_local_error() -> None:
    client = started(RFC_7677)
    with pytest.raises(LocalProtocolError, match="cannot start"):
        client.auth()


def test_nothing_is_consumed_after_a_failure() -> None:
    client = plain_started()
    with pytest.raises(AuthenticationFailed):
        client.receive(from_server("failure", children="<not-authorized/>"))
    with pytest.raises(LocalProtocolError, match="it is failed"):
        client.receive(from_server("success"))


def test_nothing_is_consumed_after_success() -> None:
    client = plain_started()
    client.receive(from_server("success"))
    with pytest.raises(LocalProtocolError, match="it is authenticated"):
        client.receive(from_server("success"))


def test_a_server_asking_for_more_iterations_than_the_cap_is_refused_before_computing() -> None:
    client = SaslClient(SCRAM_SHA_256, "user", "pencil", client_nonce="rOprNGfwEbeRWgbNEkqO")
    client.auth()
    server_first = (
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,"
        f"i={MAX_ITERATIONS + 1}"
    )
    challenge = new_element(NS_SASL, "challenge")
    challenge.text = base64.b64encode(server_first.encode()).decode()
    with pytest.raises(SaslProtocolError, match="more than 1,000,000"):
        client.receive(challenge)
    assert client.state is SaslState.FAILED
