"""``empc`` (or ``python -m empc``): commands that run no component.

``check -c config.yaml`` builds what ``twistd empc -c config.yaml`` would
run and prints it: the components and accounts with their handlers and
routes, the storage, the access lists and the limits. It connects to
nothing, unless given ``--connect``: then it tries each component's
handshake and each account's log-in once and prints the server's answer
(exit status 1 unless every one is accepted). ``routes -c config.yaml``
prints each component's (and account's) route table, in the
order routes are tried (the first match wins). ``migrate -c config.yaml``
runs the storage's migrations (every schema the handlers declare) and
exits, as ``twistd empc`` would at start-up. ``new NAME`` makes a new
component project in the new folder ``NAME`` (see :mod:`empc._new`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.python.failure import Failure

from empc._check import built_components, describe, try_handshakes
from empc._component import Component
from empc._config import Config, ConfigError, load_config
from empc._new import STORAGES, NewProjectError, new_project
from empc._tap import build_account, build_component, build_database
from empc.storage import InlineRunner, StorageError

T = TypeVar("T")


def _no_threads(action: object, stanza: object) -> Deferred[object]:
    return fail(RuntimeError("python -m empc runs no action"))


def _components(config: Config) -> list[Component]:
    # A clock that never runs and no threads: nothing is run here.
    components = [build_component(c, config, Clock(), _no_threads) for c in config.components]
    accounts = [build_account(a, config, Clock(), _no_threads) for a in config.accounts]
    return components + accounts


def _routes(config: Config) -> int:
    for component in _components(config):
        print(f"{component.domain}:")
        for number, route in enumerate(component.router.routes, 1):
            print(f"  {number:3}. {route.describe()}")
    return 0


def _migrate(config: Config) -> int:
    database = build_database(config, _components(config), Clock(), InlineRunner())
    if database is None:
        print("no storage: the config has no storage section and no handler declares schemas")
        return 0
    outcome: list[object] = []
    # The inline runner: open() and close() have finished when they return.
    database.open().addBoth(outcome.append)
    if isinstance(outcome[0], Failure):
        raise StorageError(f"{database.safe_url}: {outcome[0].value}")
    for name, revisions in database.revisions.items():
        print(f"{database.safe_url}: schema {name} at revision {', '.join(revisions) or '(none)'}")
    database.close()
    return 0


def _check(config: Config, connect: bool, timeout: float) -> int:
    from twisted.internet import reactor

    print(describe(config, *built_components(config, reactor)))
    if not connect:
        return 0
    answers = _run(reactor, lambda: try_handshakes(config, reactor, timeout))
    tried = [f"handshake of {c.domain}" for c in config.components]
    tried += [f"log-in of {a.jid}" for a in config.accounts]
    for what, words in zip(tried, answers, strict=True):
        print(f"{what}: {words}")
    return 0 if all(words == "accepted" for words in answers) else 1


def _new(name: str, parent: str, domain: str | None, storage: str) -> int:
    project = new_project(name, Path(parent), domain, storage)
    print(f"made {project.path}:")
    for path in project.files:
        print(f"  {path.relative_to(project.path)}")
    print(f"next: cd {project.path} and read README.md (set up, test, run)")
    return 0


def _run(reactor: Any, start: Callable[[], Deferred[T]]) -> T:
    """Run the reactor until the Deferred ``start`` returns has fired;
    return its result, or raise its failure."""
    outcome: list[T | Failure] = []

    def started() -> None:
        done = start()
        done.addBoth(outcome.append)
        done.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(started)
    reactor.run()
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="empc")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="print what twistd empc would run, and exit")
    check.add_argument("--connect", action="store_true", help="try each component's handshake once")
    check.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to connect and to handshake"
    )
    routes = commands.add_parser("routes", help="print the route table of each component")
    migrate = commands.add_parser("migrate", help="run the storage's migrations and exit")
    for command in (check, routes, migrate):
        command.add_argument("-c", "--config", default="config.yaml", help="the config file")
    new = commands.add_parser("new", help="make a new component project in the folder NAME")
    new.add_argument("name", metavar="NAME", help="the project's Python package name")
    new.add_argument("--domain", help="the component's domain (default: NAME.localhost)")
    new.add_argument("--storage", choices=STORAGES, default="sqlite", help="the database")
    new.add_argument("--directory", default=".", help="where to make the folder NAME")
    options = parser.parse_args(argv)
    if options.command == "new":
        try:
            return _new(options.name, options.directory, options.domain, options.storage)
        except NewProjectError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    try:
        config = load_config(options.config)
        if options.command == "check":
            return _check(config, options.connect, options.timeout)
        return _routes(config) if options.command == "routes" else _migrate(config)
    except (ConfigError, StorageError, ValueError, usage.UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
