#!/usr/bin/env bash
# Runs every check: lint, types, unit tests, the examples' tests and
# the integration tests against real Prosody and ejabberd (installed by
# setup.sh; a missing server fails the run, it never skips).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

.venv/bin/ruff check src twisted tests bench examples
.venv/bin/ruff format --check src twisted tests bench examples
.venv/bin/mypy
(cd examples/tweeter && ../../.venv/bin/mypy)
(cd examples/hack && ../../.venv/bin/mypy)
.venv/bin/pytest "$@"
