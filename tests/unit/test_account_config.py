"""The ``accounts`` section of the config: defaults, every key, and errors
naming key and line."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import write_config

from empc._config import AccountConfig, Config, ConfigError, PresenceConfig, load_config
from empc.handlers import Ping

PASSWORD = "Xy9-distinctive-PASSWORD-0815"
NO_ENV: dict[str, str] = {}

# Line 1: accounts, line 2: jid, line 3: password; a tail starts at line 4.
MINIMAL = f"""
accounts:
  - jid: bot@example.org/empc
    password: {PASSWORD}
"""


def _self_signed() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "empc test CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


CERTIFICATE = _self_signed()


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    return load_config(write_config(tmp_path, text), NO_ENV if environ is None else environ)


def account(tmp_path: Path, tail: str = "", environ: dict[str, str] | None = None) -> AccountConfig:
    """The account of :data:`MINIMAL` with ``tail`` added to its entry."""
    [only] = load(tmp_path, MINIMAL + tail, environ).accounts
    return only


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, environ)
    return str(caught.value)


def entry_with(*lines: str) -> str:
    """An account entry with exactly ``lines`` (line 2 onwards)."""
    return "accounts:\n  - " + "\n    ".join(lines) + "\n"


# Accounts beside components


def test_accounts_alone_are_a_valid_config(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL)
    assert config.components == []
    assert [a.jid for a in config.accounts] == ["bot@example.org/empc"]


def test_components_and_accounts_load_together(tmp_path: Path) -> None:
    text = MINIMAL + "components:\n  - domain: echo.example.org\n    secret: s\n"
    config = load(tmp_path, text)
    assert [c.domain for c in config.components] == ["echo.example.org"]
    assert [a.jid for a in config.accounts] == ["bot@example.org/empc"]


def test_a_config_without_accounts_has_an_empty_list(tmp_path: Path) -> None:
    config = load(tmp_path, "components:\n  - domain: echo.example.org\n    secret: s\n")
    assert config.accounts == []


def test_an_empty_components_list_beside_accounts_is_accepted(tmp_path: Path) -> None:
    assert load(tmp_path, "components: []\n" + MINIMAL).components == []


def test_neither_components_nor_accounts_names_both_keys(tmp_path: Path) -> None:
    message = error_of(tmp_path, "limits:\n  action_timeout: 5\n")
    assert "components (line 1): missing" in message
    assert "accounts" in message


def test_an_empty_accounts_list_alone_is_refused_naming_its_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "limits: {}\naccounts: []\n")
    assert "accounts (line 2): empty" in message
    assert "at least one" in message
    assert "components" in message


def test_accounts_that_is_not_a_list_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "accounts:\n  jid: bot@example.org\n")
    assert "accounts (line 1): expected a list" in message


def test_two_accounts_keep_their_order(tmp_path: Path) -> None:
    text = MINIMAL + f"  - jid: other@example.net/x\n    password: {PASSWORD}\n"
    jids = [a.jid for a in load(tmp_path, text).accounts]
    assert jids == ["bot@example.org/empc", "other@example.net/x"]


def test_an_unknown_account_key_is_refused_with_key_path_and_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + "    resource: x\n")
    assert "accounts[0].resource (line 4): unknown key" in message


def test_an_unknown_key_in_the_second_account_names_its_index(tmp_path: Path) -> None:
    text = MINIMAL + f"  - jid: other@example.net\n    password: {PASSWORD}\n    bogus: 1\n"
    assert "accounts[1].bogus (line 6): unknown key" in error_of(tmp_path, text)


# jid


def test_a_full_jid_keeps_its_resource_and_lower_cases_its_domain(tmp_path: Path) -> None:
    text = entry_with("jid: Bot@Example.ORG/Desk", f"password: {PASSWORD}")
    assert load(tmp_path, text).accounts[0].jid == "Bot@example.org/Desk"


def test_a_bare_jid_gets_an_empc_resource_of_8_hex_digits(tmp_path: Path) -> None:
    text = entry_with("jid: bot@example.org", f"password: {PASSWORD}")
    jid = load(tmp_path, text).accounts[0].jid
    assert re.fullmatch(r"bot@example\.org/empc-[0-9a-f]{8}", jid)


def test_each_load_draws_a_new_resource_for_a_bare_jid(tmp_path: Path) -> None:
    text = entry_with("jid: bot@example.org", f"password: {PASSWORD}")
    resources = {load(tmp_path, text).accounts[0].jid for _ in range(3)}
    assert len(resources) == 3


def test_a_jid_without_a_local_part_is_refused_naming_key_and_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, entry_with(f"password: {PASSWORD}", "jid: example.org"))
    assert "accounts[0].jid (line 3): an account's JID is user@domain" in message


def test_an_invalid_jid_is_refused_naming_key_and_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, entry_with('jid: "bot@example.org/"', f"password: {PASSWORD}"))
    assert "accounts[0].jid (line 2): invalid resource" in message


def test_a_missing_jid_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, entry_with(f"password: {PASSWORD}"))
    assert "accounts[0].jid (line 2): missing" in message


# password


def test_the_password_is_read_inline(tmp_path: Path) -> None:
    assert account(tmp_path).password.reveal() == PASSWORD


def test_the_password_is_read_from_password_file(tmp_path: Path) -> None:
    password_file = tmp_path / "bot.password"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    text = entry_with("jid: bot@example.org", f"password_file: {password_file}")
    assert load(tmp_path, text).accounts[0].password.reveal() == PASSWORD


def test_password_env_when_set_wins_over_the_inline_password(tmp_path: Path) -> None:
    found = account(tmp_path, "    password_env: BOT_PASSWORD\n", {"BOT_PASSWORD": "from-env"})
    assert found.password.reveal() == "from-env"


def test_password_env_when_set_wins_over_password_file(tmp_path: Path) -> None:
    password_file = tmp_path / "bot.password"
    password_file.write_text(PASSWORD, encoding="utf-8")
    text = entry_with(
        "jid: bot@example.org", f"password_file: {password_file}", "password_env: BOT_PASSWORD"
    )
    config = load(tmp_path, text, {"BOT_PASSWORD": "from-env"})
    assert config.accounts[0].password.reveal() == "from-env"


def test_an_empty_password_env_variable_does_not_count(tmp_path: Path) -> None:
    found = account(tmp_path, "    password_env: BOT_PASSWORD\n", {"BOT_PASSWORD": ""})
    assert found.password.reveal() == PASSWORD


def test_password_env_alone_is_enough(tmp_path: Path) -> None:
    text = entry_with("jid: bot@example.org", "password_env: BOT_PASSWORD")
    config = load(tmp_path, text, {"BOT_PASSWORD": "from-env"})
    assert config.accounts[0].password.reveal() == "from-env"


def test_empc_secret_is_no_default_for_an_account_password(tmp_path: Path) -> None:
    text = entry_with("jid: bot@example.org")
    message = error_of(tmp_path, text, {"EMPC_SECRET": "for the components"})
    assert "accounts[0].password (line 2): no password" in message
    assert "EMPC_SECRET" not in message


def test_no_password_at_all_names_the_three_keys(tmp_path: Path) -> None:
    message = error_of(tmp_path, entry_with("jid: bot@example.org"))
    assert message.endswith(
        "accounts[0].password (line 2): no password: set password, password_file or password_env"
    )


def test_no_password_with_an_unset_password_env_names_that_variable(tmp_path: Path) -> None:
    message = error_of(tmp_path, entry_with("jid: bot@example.org", "password_env: BOT_PASSWORD"))
    assert "accounts[0].password (line 2)" in message
    assert "the environment variable BOT_PASSWORD" in message


def test_password_and_password_file_together_are_refused_naming_the_file_key(
    tmp_path: Path,
) -> None:
    password_file = tmp_path / "bot.password"
    password_file.write_text("other", encoding="utf-8")
    message = error_of(tmp_path, MINIMAL + f"    password_file: {password_file}\n")
    assert "accounts[0].password_file (line 4): give either password or password_file" in message


def test_a_missing_password_file_is_named_with_its_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.password"
    message = error_of(tmp_path, entry_with("jid: bot@example.org", f"password_file: {missing}"))
    assert f"accounts[0].password_file (line 3): cannot read {missing}" in message


def test_an_empty_password_file_is_refused_with_its_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.password"
    empty.write_text("\n", encoding="utf-8")
    message = error_of(tmp_path, entry_with("jid: bot@example.org", f"password_file: {empty}"))
    assert f"accounts[0].password_file (line 3): {empty} is empty" in message


def test_the_password_is_not_in_the_repr_of_the_config(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL)
    assert PASSWORD not in repr(config)
    assert PASSWORD not in str(config.accounts[0].password)


def test_a_password_from_the_environment_is_not_in_the_repr_of_the_config(
    tmp_path: Path,
) -> None:
    text = MINIMAL + "    password_env: BOT_PASSWORD\n"
    config = load(tmp_path, text, {"BOT_PASSWORD": PASSWORD + "-env"})
    assert PASSWORD not in repr(config)


@pytest.mark.parametrize(
    "tail",
    ["    bogus: 1\n", "    tls: maybe\n", "    presence: {priority: 500}\n", "    server: x\n"],
)
def test_the_password_is_not_in_config_error_messages(tmp_path: Path, tail: str) -> None:
    assert PASSWORD not in error_of(tmp_path, MINIMAL + tail)


def test_a_password_of_a_wrong_type_is_not_in_the_error_message(tmp_path: Path) -> None:
    message = error_of(tmp_path, entry_with("jid: bot@example.org", f"password: [{PASSWORD}]"))
    assert "accounts[0].password (line 3): expected a string" in message
    assert PASSWORD not in message


# server


def test_the_server_defaults_to_the_jid_s_domain_on_port_5222(tmp_path: Path) -> None:
    text = entry_with("jid: bot@Chat.Example.ORG", f"password: {PASSWORD}")
    assert load(tmp_path, text).accounts[0].server == "tcp:host=chat.example.org:port=5222"


def test_the_default_server_escapes_the_colons_of_an_ip_literal(tmp_path: Path) -> None:
    text = entry_with("jid: bot@[::1]", f"password: {PASSWORD}")
    assert load(tmp_path, text).accounts[0].server == r"tcp:host=[\:\:1]:port=5222"


@pytest.mark.parametrize(
    "server", ["tcp:host=xmpp.example.org:port=5223", "tls:host=xmpp.example.org:port=5223"]
)
def test_a_client_endpoint_is_kept_as_the_server(tmp_path: Path, server: str) -> None:
    assert account(tmp_path, f"    server: {server}\n").server == server


@pytest.mark.parametrize("server", ["tcp:host=example.org:port=none", "bogus:x", "tcp:example.org"])
def test_a_server_that_is_no_client_endpoint_is_refused_naming_key_and_line(
    tmp_path: Path, server: str
) -> None:
    message = error_of(tmp_path, MINIMAL + f"    server: {server}\n")
    assert "accounts[0].server (line 4): not a client endpoint" in message


# tls and trust_roots


def test_tls_is_required_and_the_system_trust_store_used_by_default(tmp_path: Path) -> None:
    found = account(tmp_path)
    assert (found.tls, found.trust_roots) == ("required", None)


@pytest.mark.parametrize("tls", ["required", "optional"])
def test_tls_is_read(tmp_path: Path, tls: str) -> None:
    assert account(tmp_path, f"    tls: {tls}\n").tls == tls


@pytest.mark.parametrize("tls", ["off", "true"])
def test_another_tls_value_is_refused_listing_the_two(tmp_path: Path, tls: str) -> None:
    message = error_of(tmp_path, MINIMAL + f"    tls: {tls!r}\n")
    assert "accounts[0].tls (line 4): expected required or optional" in message


def test_trust_roots_naming_a_pem_certificate_file_is_kept(tmp_path: Path) -> None:
    roots = tmp_path / "ca.pem"
    roots.write_text(CERTIFICATE, encoding="utf-8")
    assert account(tmp_path, f"    trust_roots: {roots}\n").trust_roots == str(roots)


def test_unreadable_trust_roots_are_refused_naming_key_and_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    message = error_of(tmp_path, MINIMAL + f"    trust_roots: {missing}\n")
    assert f"accounts[0].trust_roots (line 4): cannot read {missing}" in message


def test_trust_roots_with_a_broken_certificate_are_refused_naming_key_and_line(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nMIIBsz==\n-----END CERTIFICATE-----\n")
    message = error_of(tmp_path, MINIMAL + f"    trust_roots: {broken}\n")
    assert f"accounts[0].trust_roots (line 4): {broken} holds a certificate that cannot" in message


def test_trust_roots_with_a_direct_tls_server_are_refused_naming_key_and_line(
    tmp_path: Path,
) -> None:
    roots = tmp_path / "ca.pem"
    roots.write_text(CERTIFICATE, encoding="utf-8")
    tail = f"    server: tls:host=example.org:port=5223\n    trust_roots: {roots}\n"
    message = error_of(tmp_path, MINIMAL + tail)
    assert "accounts[0].trust_roots (line 5): applies to STARTTLS only" in message


def test_trust_roots_without_a_certificate_are_refused_naming_key_and_line(
    tmp_path: Path,
) -> None:
    key_only = tmp_path / "key.pem"
    key_only.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    message = error_of(tmp_path, MINIMAL + f"    trust_roots: {key_only}\n")
    assert f"accounts[0].trust_roots (line 4): {key_only} holds no PEM certificate" in message


# presence


def test_presence_is_plainly_available_at_priority_0_by_default(tmp_path: Path) -> None:
    assert account(tmp_path).presence == PresenceConfig(show=None, status=None, priority=0)


def test_presence_show_status_and_priority_are_read(tmp_path: Path) -> None:
    tail = "    presence: {show: dnd, status: At your service, priority: -5}\n"
    found = account(tmp_path, tail).presence
    assert found == PresenceConfig(show="dnd", status="At your service", priority=-5)


@pytest.mark.parametrize("show", ["away", "chat", "dnd", "xa"])
def test_each_presence_show_is_accepted(tmp_path: Path, show: str) -> None:
    assert account(tmp_path, f"    presence: {{show: {show}}}\n").presence.show == show


def test_another_presence_show_is_refused_naming_key_and_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + "    presence:\n      show: busy\n")
    assert "accounts[0].presence.show (line 5): expected away, chat, dnd or xa" in message


@pytest.mark.parametrize("priority", [-128, 127])
def test_a_priority_at_the_edge_of_its_range_is_accepted(tmp_path: Path, priority: int) -> None:
    found = account(tmp_path, f"    presence: {{priority: {priority}}}\n")
    assert found.presence.priority == priority


@pytest.mark.parametrize(
    ("priority", "why"),
    [(-129, "must be at least -128"), (128, "must be at most 127"), (1.5, "a whole number")],
)
def test_a_priority_out_of_range_is_refused_naming_key_and_line(
    tmp_path: Path, priority: float, why: str
) -> None:
    message = error_of(tmp_path, MINIMAL + f"    presence:\n      priority: {priority}\n")
    assert "accounts[0].presence.priority (line 5)" in message
    assert why in message


def test_a_status_that_is_no_string_is_refused_naming_key_and_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + "    presence:\n      status: [a]\n")
    assert "accounts[0].presence.status (line 5): expected a string" in message


def test_an_unknown_presence_key_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + "    presence:\n      type: away\n")
    assert "accounts[0].presence.type (line 5): unknown key" in message


# subscriptions


def test_subscriptions_are_all_by_default(tmp_path: Path) -> None:
    assert account(tmp_path).subscriptions == "all"


@pytest.mark.parametrize("policy", ["all", "none", "handler"])
def test_each_subscription_policy_is_read(tmp_path: Path, policy: str) -> None:
    assert account(tmp_path, f"    subscriptions: {policy}\n").subscriptions == policy


def test_another_subscription_policy_is_refused_naming_key_and_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + "    subscriptions: some\n")
    assert "accounts[0].subscriptions (line 4): expected all, none, handler or a list" in message


def test_a_subscription_list_is_kept_as_a_tuple(tmp_path: Path) -> None:
    text = "access_lists:\n  admins: [alice@example.org]\n" + MINIMAL.lstrip("\n")
    text += "    subscriptions: [carol@example.net, example.com, list:admins]\n"
    [found] = load(tmp_path, text).accounts
    assert found.subscriptions == ("carol@example.net", "example.com", "list:admins")


def test_a_subscription_list_naming_an_unknown_access_list_is_refused(tmp_path: Path) -> None:
    text = MINIMAL + "    subscriptions:\n      - example.com\n      - list:admins\n"
    message = error_of(tmp_path, text)
    assert "accounts[0].subscriptions[1] (line 6): no access list named 'admins'" in message


def test_a_subscription_entry_that_is_no_jid_is_refused_naming_its_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + "    subscriptions:\n      - '@example.com'\n")
    assert "accounts[0].subscriptions[0] (line 5): invalid local part" in message


def test_a_subscription_entry_that_is_no_string_is_refused_naming_its_line(
    tmp_path: Path,
) -> None:
    message = error_of(tmp_path, MINIMAL + "    subscriptions:\n      - {jid: a@b}\n")
    assert "accounts[0].subscriptions[0] (line 5): expected a bare JID" in message


# identity, builtins, handlers: as for components


def test_the_identity_is_client_bot_empc_by_default(tmp_path: Path) -> None:
    assert account(tmp_path).identity == ("client", "bot", "empc")


def test_the_identity_is_read(tmp_path: Path) -> None:
    tail = "    identity: {category: client, type: pc, name: Desk}\n"
    assert account(tmp_path, tail).identity == ("client", "pc", "Desk")


def test_an_unknown_identity_key_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + "    identity:\n      kind: bot\n")
    assert "accounts[0].identity.kind (line 5): unknown key" in message


def test_every_built_in_is_on_by_default(tmp_path: Path) -> None:
    found = account(tmp_path)
    assert found.builtins and all(found.builtins.values())
    assert found.builtin_config == {}


def test_a_built_in_is_switched_off_or_given_its_config(tmp_path: Path) -> None:
    found = account(tmp_path, "    builtins: {ping: false, commands: {idle_timeout: 60}}\n")
    assert found.builtins["ping"] is False
    assert found.builtins["commands"] is True
    assert found.builtin_config == {"commands": {"idle_timeout": 60}}


def test_a_built_in_s_bad_config_is_refused_naming_key_and_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + "    builtins:\n      commands: {bogus: 1}\n")
    assert "accounts[0].builtins.commands (line 5): refused its config" in message


def test_the_handlers_are_read(tmp_path: Path) -> None:
    found = account(tmp_path, "    handlers: [empc.handlers:Ping]\n")
    assert [type(h) for h in found.handlers] == [Ping]


def test_a_handler_that_cannot_be_loaded_is_refused_naming_key_and_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + "    handlers:\n      - nowhere:Nothing\n")
    assert "accounts[0].handlers[0] (line 5): cannot load handler nowhere:Nothing" in message


@pytest.mark.parametrize("server", ["ssl:host=example.org:port=5223", "SSL:host=x:port=1"])
def test_an_endpoint_that_checks_no_certificate_is_refused_naming_key_and_line(
    tmp_path: Path, server: str
) -> None:
    message = error_of(tmp_path, MINIMAL + f"    server: {server}\n")
    assert "accounts[0].server (line 4): an account connects with tcp: or unix:" in message


@pytest.mark.parametrize(
    ("server", "direct"),
    [
        ("tcp:host=example.org:port=5222", False),
        ("tls:host=example.org:port=5223", True),
        ("TLS:host=example.org:port=5223", True),
    ],
)
def test_a_tls_endpoint_is_direct_tls_whatever_its_case(
    tmp_path: Path, server: str, direct: bool
) -> None:
    assert account(tmp_path, f"    server: {server}\n").direct_tls is direct


def test_trust_roots_beside_an_upper_case_tls_server_are_refused(tmp_path: Path) -> None:
    roots = tmp_path / "ca.pem"
    roots.write_text(CERTIFICATE, encoding="utf-8")
    tail = f"    server: TLS:host=example.org:port=5223\n    trust_roots: {roots}\n"
    assert "applies to STARTTLS only" in error_of(tmp_path, MINIMAL + tail)
