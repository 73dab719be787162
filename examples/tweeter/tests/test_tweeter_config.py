"""The demo config: it loads, and the component it describes works."""

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
from empc.testing import FakeServer

CONFIG = Path(__file__).parent.parent / "config.yaml"


def test_the_demo_config_is_valid() -> None:
    """Checked as shipped, without starting anything (nor creating .demo/)."""
    config = load_config(str(CONFIG), environ={"TWEETER_SECRET": "s3cret"})
    (component,) = config.components
    assert component.domain == DOMAIN
    assert component.secret.reveal() == "s3cret"
    assert component.identity == ("pubsub", "service", "Tweeter")
    (handler,) = component.handlers
    assert isinstance(handler, Tweeter)
    assert handler.config == {"database": ".demo/tweeter.sqlite3"}
    assert (config.limits.rate, config.limits.burst) == (2, 10)


def test_a_config_without_a_database_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.read_text().replace(".demo/tweeter.sqlite3", "''"))
    with pytest.raises(ConfigError, match="database: give the path of the SQLite file"):
        load_config(str(config), environ={"TWEETER_SECRET": "s3cret"})


class DemoConfigTests(unittest.TestCase):
    def setUp(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="tweeter-"))
        self.addCleanup(shutil.rmtree, directory)
        self.database = directory / "db" / "tweeter.sqlite3"
        text = CONFIG.read_text()
        assert "database: .demo/tweeter.sqlite3" in text
        self.config = directory / "config.yaml"
        self.config.write_text(text.replace(".demo/tweeter.sqlite3", str(self.database)))
        patch = pytest.MonkeyPatch()
        patch.setenv("TWEETER_SECRET", "s3cret")
        self.addCleanup(patch.undo)

    @async_test
    async def test_the_component_answers(self) -> None:
        server = FakeServer.from_config(str(self.config))
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
