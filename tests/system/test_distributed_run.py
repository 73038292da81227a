"""The mapped fan-out DAG under a real scheduler (PostgreSQL) against the embedded ECR. LocalExecutor:
eight mapped uploads to one repository while 30 % of the ECR calls are throttled, then two runs of
the one-step push DAG pushing to one tag at once. CeleryExecutor: a smaller run (four 8 MiB
sources) on two Celery workers with a Redis broker, each of which must have run uploads (the
spread barrier the workers load makes that certain, and the run says it let every upload through)."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

import pytest

from helpers import ROOT


def distributed_run(*args: str, timeout: float) -> list[str]:
    """Run scripts/distributed-run.sh with ``args``; its output lines, once it has succeeded
    (skipped where the servers it needs are missing and cannot be installed)."""
    if os.geteuid() != 0:
        missing = [] if shutil.which("initdb") or glob.glob("/usr/lib/postgresql/*/bin/initdb") else ["PostgreSQL"]
        missing += ["redis-server"] if "celery" in args and not shutil.which("redis-server") else []
        if missing:
            pytest.skip(f"{' and '.join(missing)} missing and this is not root: distributed-run.sh cannot install it")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "distributed-run.sh"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-4000:]
    return done.stdout.strip().splitlines()


@pytest.mark.timeout(1500)
def test_the_distributed_run_overlaps_uploads_survives_throttling_and_concurrent_tag_pushes() -> None:
    last = distributed_run("--sources", "8", "--size-mib", "12", "--throttle", "0.3", "--same-tag", timeout=1400)[-1]
    found = re.fullmatch(
        r"distributed run: ok \(max overlapping uploads = (\d+); tasks=(\d+); same-tag runs: both ok, tag on "
        r"(\d)'s digest, throttled=(\d+) of (\d+) ECR calls, our retries=(\d+), task retries=(\d+)\)",
        last,
    )
    assert found, last
    overlap, tasks, _, throttled, total, _, _ = (int(g) for g in found.groups())
    assert overlap >= 2 and tasks == 8
    assert 0.15 * total <= throttled <= 0.45 * total  # about 30 % of the calls, every one survived


@pytest.mark.timeout(1000)
def test_the_celery_run_spreads_uploads_over_two_workers() -> None:
    lines = distributed_run("--executor", "celery", "--sources", "4", "--size-mib", "8", timeout=900)
    last = lines[-1]
    found = re.fullmatch(
        r"distributed run: ok \(executor=CeleryExecutor, workers=2, uploads per worker=(\d+)/(\d+), "
        r"max overlapping uploads=(\d+)\)",
        last,
    )
    assert found, last
    on_a, on_b, overlap = (int(g) for g in found.groups())
    assert on_a >= 1 and on_b >= 1 and on_a + on_b == 4  # every upload ran, on both workers
    assert overlap >= 2
    assert any(line.startswith("spread barrier: used; it let through 4 of 4 uploads") for line in lines)
