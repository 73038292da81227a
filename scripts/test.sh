#!/usr/bin/env bash
# Set everything up from the lock and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/test-tools.sh
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
