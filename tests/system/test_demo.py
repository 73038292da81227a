"""The README's first command: the demo pushes an artifact through a real DAG and checks it."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def test_the_demo_pushes_and_its_three_checks_pass() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--size", str(11 * 1024 * 1024 + 7)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    checks = [line for line in done.stdout.splitlines() if line.startswith(("ok  ", "FAIL"))]
    assert checks == [
        "ok   image digest is sha256 of the stored manifest",
        "ok   layer digest is sha256 of the source",
        "ok   layer stored with the source's size",
    ]
    assert '"repository": "demo/models"' in done.stdout
