#!/usr/bin/env bash
# Create .venv from the pinned lock (requirements/dev.lock) and install this project into it.
# Idempotent: a second run only checks that the environment matches the lock.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_BIN="${PYTHON:-}"
if [ -z "$PYTHON_BIN" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON_BIN="$candidate"; break; fi
  done
fi
"$PYTHON_BIN" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $("$PYTHON_BIN" --version)"
  "$PYTHON_BIN" -m venv .venv
fi
if ! .venv/bin/python -m uv --version >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==0.13.8"
fi
export VIRTUAL_ENV="$PWD/.venv"
.venv/bin/python -m uv pip sync --quiet --compile-bytecode requirements/dev.lock  # .pyc files: every test subprocess imports Airflow
.venv/bin/python -m uv pip install --quiet --no-deps -e .
echo "bootstrap: .venv matches requirements/dev.lock"
