#!/usr/bin/env bash
# Runs every check: lint, types, unit tests and the integration tests against
# real Prosody and ejabberd (installed by setup.sh; a missing server fails).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

.venv/bin/ruff check src twisted tests bench
.venv/bin/ruff format --check src twisted tests bench
.venv/bin/mypy
.venv/bin/pytest "$@"
