"""The mapped fan-out DAG under a real scheduler (LocalExecutor, PostgreSQL) against the embedded ECR:
eight mapped uploads to one repository while 30 % of the ECR calls are throttled, then two runs of
the one-step push DAG pushing to one tag at once."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

import pytest

from helpers import ROOT


@pytest.mark.timeout(1500)
def test_the_distributed_run_overlaps_uploads_survives_throttling_and_concurrent_tag_pushes() -> None:
    if os.geteuid() != 0 and not shutil.which("initdb") and not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        pytest.skip("PostgreSQL is not installed and this is not root: scripts/distributed-run.sh cannot install it")
    done = subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "distributed-run.sh"),
            "--sources",
            "8",
            "--size-mib",
            "12",
            "--throttle",
            "0.3",
            "--same-tag",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1400,
    )
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-4000:]
    found = re.fullmatch(
        r"distributed run: ok \(max overlapping uploads = (\d+); tasks=(\d+); same-tag runs: both ok, tag on "
        r"(\d)'s digest, throttled=(\d+) of (\d+) ECR calls, our retries=(\d+), task retries=(\d+)\)",
        last,
    )
    assert found, last
    overlap, tasks, _, throttled, total, _, _ = (int(g) for g in found.groups())
    assert overlap >= 2 and tasks == 8
    assert 0.15 * total <= throttled <= 0.45 * total  # about 30 % of the calls, every one survived
