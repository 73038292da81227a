#!/usr/bin/env bash
# Set everything up from the lock, then lint, type-check, build the docs (warnings are errors)
# and run every test tier (tests/unit, tests/integration, tests/system). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/test-tools.sh
echo "test: ruff check, ruff format --check, mypy"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
echo "test: mkdocs build --strict"
site_dir="$(mktemp -d)"
.venv/bin/mkdocs build --strict --site-dir "$site_dir"  # not --quiet: it hides the warnings strict mode counts
rm -rf "$site_dir"
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
