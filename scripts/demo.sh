#!/usr/bin/env bash
# Set everything up from the lock, start an embedded ECR+S3 on 127.0.0.1, run an example
# DAG that pushes an artifact, and print what ECR now holds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
