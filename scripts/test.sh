#!/usr/bin/env bash
# Set everything up from the lock, then lint, type-check, build the docs (warnings are errors),
# run the Airflow-facing tests on the lowest supported versions (scripts/test-floor.sh), and run
# every test tier (tests/unit, tests/integration, tests/system) on the locked versions.
# Arguments go to the last pytest; with arguments the floor run is skipped (FLOOR=1 forces it).
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
if [ "$#" -eq 0 ] || [ "${FLOOR:-0}" = "1" ]; then
  echo "test: the lowest supported versions (requirements/floor.lock)"
  bash scripts/test-floor.sh -q
fi
echo "test: every tier on requirements/dev.lock"
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
