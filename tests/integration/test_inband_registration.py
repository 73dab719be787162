"""In-band registration with a component (XEP-0077), through Prosody and
ejabberd, by a real client using slixmpp's own XEP-0077 plugin.

The component (``registration_handlers:Gateway``) behaves as a gateway
(XEP-0100): it asks a newly registered user for a presence subscription,
which slixmpp approves and returns, and cancels both on removal.
"""

from __future__ import annotations

import pytest
from client import REGISTER_NS, XmppClient, login
from component import ComponentProcess, StartComponent
from servers import XmppServer

pytestmark = pytest.mark.integration

DOMAIN = "second.localhost"
CONNECT_TIMEOUT = 20.0


@pytest.fixture
def gateway(xmpp_server: XmppServer, start_component: StartComponent) -> ComponentProcess:
    process = start_component(
        xmpp_server, domain=DOMAIN, handlers=["registration_handlers:Gateway"]
    )
    process.wait_for(f"Component {DOMAIN} connected", CONNECT_TIMEOUT)
    return process


def _bob(server: XmppServer) -> XmppClient:
    """Bob, available with his roster, as an IM client is: the server then
    hands him subscription requests."""
    jid, password = server.users[1]
    return login(jid, password, server.c2s_port, available=True)


def test_a_client_registers_gets_subscribed_and_unregisters(
    xmpp_server: XmppServer, gateway: ComponentProcess
) -> None:
    with _bob(xmpp_server) as bob:
        assert REGISTER_NS in bob.disco_info(DOMAIN).features
        asked = bob.register_form(DOMAIN)
        assert asked.reply.type == "result", asked.reply.xml
        assert not asked.registered
        assert asked.instructions == "Give your legacy user name and password"
        assert asked.legacy == {"username": "", "password": ""}
        assert asked.fields["username"].required and asked.fields["password"].type == (
            "text-private"
        )

        reply = bob.register(DOMAIN, {"username": "bobby", "password": "s3cret", "nick": "Bob"})
        assert reply.type == "result", reply.xml
        # XEP-0100: the gateway asks to see bob's presence; slixmpp approves
        # and asks back, which the gateway approves for a registered user.
        bob.wait_for(DOMAIN, lambda p: p.type == "subscribe", kind="presence")
        bob.wait_for(DOMAIN, lambda p: p.type == "subscribed", kind="presence")

        again = bob.register_form(DOMAIN)
        assert again.registered, again.reply.xml
        assert again.legacy["username"] == "bobby"
        assert again.fields["username"].values == ["bobby"]
        assert again.fields["nick"].values == ["Bob"]

        reply = bob.unregister(DOMAIN)
        assert reply.type == "result", reply.xml
        assert not bob.register_form(DOMAIN).registered


def test_errors_reach_the_client(xmpp_server: XmppServer, gateway: ComponentProcess) -> None:
    with _bob(xmpp_server) as bob:
        missing = bob.register(DOMAIN, {"username": "bobby"}, legacy=True)
        assert missing.error_condition == "not-acceptable", missing.xml
        bad = bob.register(DOMAIN, {"username": "bobby"})
        assert bad.error_condition == "bad-request", bad.xml
        removed = bob.unregister(DOMAIN)
        assert removed.error_condition == "registration-required", removed.xml
        legacy = bob.register(DOMAIN, {"username": "bobby", "password": "pw"}, legacy=True)
        assert legacy.type == "result", legacy.xml
        assert bob.register_form(DOMAIN).legacy["username"] == "bobby"
        assert bob.unregister(DOMAIN).type == "result"
