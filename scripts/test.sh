#!/usr/bin/env bash
# Set everything up from the lock, then lint, type-check and run every test tier
# (tests/unit, tests/integration, tests/system). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/test-tools.sh
echo "test: ruff check, ruff format --check, mypy"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
