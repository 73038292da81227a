"""The mapped fan-out DAG under a real scheduler (LocalExecutor, PostgreSQL) against the embedded ECR."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

from helpers import ROOT


@pytest.mark.timeout(900)
def test_the_distributed_run_overlaps_uploads_and_checks_every_digest() -> None:
    if os.geteuid() != 0 and not shutil.which("initdb") and not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        pytest.skip("PostgreSQL is not installed and this is not root: scripts/distributed-run.sh cannot install it")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "distributed-run.sh")], capture_output=True, text=True, cwd=ROOT, timeout=840
    )
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert last.startswith("distributed run: ok (max overlapping uploads = ")
    assert int(last.rsplit("= ", 1)[1].rstrip(")")) >= 2
