"""The demo config: it loads, and the component it describes works (on a
real reactor, with the storage's threads)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from tweeter import Tweeter
from tweeter_kit import DOMAIN, async_test
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from empc import ConfigError, load_config
from empc.pubsub import PubSub
from empc.storage import Database
from empc.testing import FakeServer

CONFIG = Path(__file__).parent.parent / "config.yaml"


def test_the_demo_config_is_valid() -> None:
    """Checked as shipped, without starting anything (nor creating .demo/)."""
    config = load_config(str(CONFIG), environ={"TWEETER_SECRET": "s3cret"})
    (component,) = config.components
    assert component.domain == DOMAIN
    assert component.secret.reveal() == "s3cret"
    assert component.identity == ("pubsub", "service", "Tweeter")
    tweeter, pubsub = component.handlers
    assert isinstance(tweeter, Tweeter) and isinstance(pubsub, PubSub)
    assert pubsub.config["creators"] == []
    assert config.storage is not None
    assert config.storage.url == "sqlite:///.demo/tweeter.sqlite3"
    assert (config.limits.rate, config.limits.burst) == (2, 10)


def test_the_former_database_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    old = "- class: tweeter.handlers:Tweeter\n        config: {database: tweeter.sqlite3}"
    config.write_text(CONFIG.read_text().replace("- class: tweeter.handlers:Tweeter", old))
    with pytest.raises(ConfigError, match=r"unknown config key.*database"):
        load_config(str(config), environ={"TWEETER_SECRET": "s3cret"})


def test_the_tweeter_does_not_start_without_a_pubsub_service() -> None:
    server = FakeServer([Tweeter()], domain=DOMAIN)
    outcome: list[object] = []
    server.started.addErrback(lambda failure: outcome.append(failure.value))
    assert "add the handler empc.pubsub:PubSub" in str(outcome[0])


class DemoConfigTests(unittest.TestCase):
    def setUp(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="tweeter-"))
        self.addCleanup(shutil.rmtree, directory)
        self.database = directory / "tweeter.sqlite3"
        self.config = directory / "config.yaml"
        self.config.write_text(CONFIG.read_text())
        patch = pytest.MonkeyPatch()
        patch.setenv("TWEETER_SECRET", "s3cret")
        self.addCleanup(patch.undo)

    @async_test
    async def test_the_component_answers(self) -> None:
        # The storage as twistd makes it: its own threads, on the reactor.
        storage = Database(f"sqlite:///{self.database}")
        server = FakeServer.from_config(str(self.config), storage=storage)
        self.addCleanup(server.stop)
        await server.started
        self.assertEqual(server.domain, DOMAIN)
        self.assertIsInstance(server.component.handlers[0], Tweeter)
        self.assertTrue(self.database.exists())
        server.deliver(
            "<message type='chat' from='bob@localhost/phone'><body>following</body></message>"
        )
        for _ in range(500):
            if server.sent:
                break
            await deferLater(reactor, 0.01)
        body = server.only("self::c:message[@to='bob@localhost/phone']").findtext(
            "{jabber:component:accept}body"
        )
        self.assertEqual(body, "You follow nobody yet. Send 'follow <jid>' to follow someone.")
        (reply,) = server.deliver(
            "<iq type='get'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )
        identity = reply.find(".//{http://jabber.org/protocol/disco#info}identity")
        assert identity is not None
        self.assertEqual(identity.get("category"), "pubsub")
