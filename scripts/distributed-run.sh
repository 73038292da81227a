#!/usr/bin/env bash
# Run the mapped fan-out example DAG under a real scheduler (LocalExecutor, PostgreSQL,
# scheduler + dag-processor + api-server) against the embedded ECR+S3, and check that the
# mapped layer uploads overlap in time. Everything listens on 127.0.0.1 only and is stopped
# at the end. Arguments go to scripts/distributed_run.py (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

# PostgreSQL server binaries from Debian's packages (Debian keeps initdb off PATH).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "distributed-run: PostgreSQL is not installed; run as root or: apt-get install postgresql" >&2
    exit 1
  fi
  echo "distributed-run: installing PostgreSQL from Debian's packages"
  # Keep the package's own cluster from being started: this run starts a throwaway one.
  policy_rc_d_added=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy_rc_d_added=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  if [ -n "$policy_rc_d_added" ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
fi

exec .venv/bin/python scripts/distributed_run.py "$@"
