#!/usr/bin/env bash
# Set everything up from the lock, lint (ruff) and build the docs (warnings are errors), each
# failing at once; then, side by side, type-check (mypy), run the Airflow-facing tests on the
# lowest supported versions (scripts/test-floor.sh) and run every test tier (tests/unit,
# tests/integration, tests/system) on the locked versions with pytest-xdist. Ends with how long
# each step and each tier took. Arguments go to the last pytest; with arguments the floor run is
# skipped (FLOOR=1 forces it). TEST_WORKERS sets the xdist workers of both test runs (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
workers="${TEST_WORKERS:-2}"
work="$(mktemp -d)"
summary=()  # "step  seconds" lines, printed at the end
jobs_started=()  # process groups of the steps running in the background

cleanup() {
  for pid in "${jobs_started[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# timed NAME COMMAND...: run COMMAND in the foreground and note how long it took.
timed() {
  local name=$1 t0=$SECONDS
  shift
  "$@"
  summary+=("$(printf '%-44s %5d s' "$name" $((SECONDS - t0)))")
}

# beside NAME COMMAND...: start COMMAND in the background, its output kept for later (see collect).
beside() {
  local name=$1
  shift
  setsid bash -c 't0=$SECONDS; "$@" >"$0.log" 2>&1; echo "$? $((SECONDS - t0))" >"$0.done"' "$work/$name" "$@" &
  jobs_started+=("$!")
}

# collect NAME TITLE: wait for a background step, print its output, note its time; its exit status.
collect() {
  local name=$1 title=$2 rc seconds
  while [ ! -e "$work/$name.done" ]; do sleep 1; done
  read -r rc seconds <"$work/$name.done"
  echo "test: $title (ran beside the tests)"
  cat "$work/$name.log"
  summary+=("$(printf '%-44s %5d s' "$title" "$seconds")")
  return "$rc"
}

timed "bootstrap" bash scripts/bootstrap.sh
timed "image tools (umoci, skopeo)" bash scripts/test-tools.sh
echo "test: ruff check, ruff format --check"
timed "ruff" bash -c '.venv/bin/ruff check . && .venv/bin/ruff format --check .'
echo "test: mkdocs build --strict"
# not --quiet: it hides the warnings strict mode counts
timed "mkdocs build --strict" .venv/bin/mkdocs build --strict --site-dir "$work/site"

beside mypy .venv/bin/mypy
floor=0
if [ "$#" -eq 0 ] || [ "${FLOOR:-0}" = "1" ]; then
  floor=1
  beside floor env TIER_TIMES_FILE="$work/floor.tiers" TIER_TIMES_LABEL="floor " \
    TEST_WORKERS="$workers" bash scripts/test-floor.sh -q
fi

echo "test: every tier on requirements/dev.lock ($workers xdist workers)"
status=0
t0=$SECONDS
TIER_TIMES_FILE="$work/dev.tiers" .venv/bin/python -m pytest -p no:cacheprovider \
  -n "$workers" --dist loadfile --no-loadscope-reorder "$@" || status=$?
summary+=("$(printf '%-44s %5d s' "pytest, every tier (dev.lock)" $((SECONDS - t0)))")

failed=()
[ "$status" -eq 0 ] || failed+=("pytest")
echo "test: mypy"
collect mypy "mypy" || failed+=("mypy")
if [ "$floor" = 1 ]; then
  collect floor "floor run (floor.lock)" || failed+=("floor")
fi

echo
echo "test: times (wall clock; the last three steps ran side by side)"
printf '  %s\n' "${summary[@]}"
cat "$work"/*.tiers 2>/dev/null | sed 's/^/  tier /' || true
printf '  %-44s %5d s\n' "total" $((SECONDS - started))
if [ "${#failed[@]}" -ne 0 ]; then
  echo "test: FAILED: ${failed[*]}"
  exit 1
fi
echo "test: all passed"
