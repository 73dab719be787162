"""``python -m empc routes -c config.yaml``: print each component's route table.

Routes are listed in the order they are tried: the first match wins.
"""

from __future__ import annotations

import argparse
import sys

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock

from empc._config import ConfigError, load_config
from empc._tap import build_component


def _no_threads(action: object, stanza: object) -> Deferred[object]:
    return fail(RuntimeError("python -m empc runs no action"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m empc")
    commands = parser.add_subparsers(dest="command", required=True)
    routes = commands.add_parser("routes", help="print the route table of each component")
    routes.add_argument("-c", "--config", default="config.yaml", help="the config file")
    options = parser.parse_args(argv)
    try:
        config = load_config(options.config)
        for component_config in config.components:
            # A clock that never runs and no threads: nothing is run here.
            component = build_component(component_config, config, Clock(), _no_threads)
            print(f"{component.domain}:")
            for number, route in enumerate(component.router.routes, 1):
                print(f"  {number:3}. {route.describe()}")
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
