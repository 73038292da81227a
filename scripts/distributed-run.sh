#!/usr/bin/env bash
# Run the mapped fan-out example DAG under a real scheduler (LocalExecutor, or CeleryExecutor
# with --executor celery: a Redis broker and two Celery workers; PostgreSQL either way;
# scheduler + dag-processor + api-server) against the embedded ECR+S3, and check that the
# mapped layer uploads overlap in time (and, on Celery, that both workers ran uploads).
# Everything listens on 127.0.0.1 only and is stopped at the end. Arguments go to
# the distributed_run package in scripts/ (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

# install_from_debian PACKAGE WHAT: install a server package as root, without letting the
# package start its own service (this run starts throwaway servers of its own).
install_from_debian() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "distributed-run: $2 is not installed; run as root or: apt-get install $1" >&2
    exit 1
  fi
  echo "distributed-run: installing $2 from Debian's packages"
  local policy_rc_d_added=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy_rc_d_added=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null
  if [ -n "$policy_rc_d_added" ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
}

# PostgreSQL server binaries (Debian keeps initdb off PATH).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  install_from_debian postgresql PostgreSQL
fi

# The Redis server is the Celery broker: only needed with --executor celery.
executor=local
previous=""
for arg in "$@"; do
  case "$arg" in
    --executor=*) executor="${arg#--executor=}" ;;
    *) if [ "$previous" = "--executor" ]; then executor="$arg"; fi ;;
  esac
  previous="$arg"
done
if [ "$executor" = celery ] && ! command -v redis-server >/dev/null 2>&1; then
  install_from_debian redis-server "the Redis server"
fi

PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}" exec .venv/bin/python -m distributed_run "$@"
