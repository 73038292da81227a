"""The repository's tracked files name no absolute path of a development machine."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MACHINE_PATH = re.compile(r"(^|[^A-Za-z0-9_.])/(work|root|home)/[A-Za-z]")
"""A path under /work, /root or /home, not as the tail of a longer path or a URL's host."""
SKIPPED = {"tests/unit/test_repository_hygiene.py", "requirements/dev.lock"}
"""This file (it spells the pattern out) and the lock (generated; it names no paths of ours)."""


def _tracked_files() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True)
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.decode(errors='replace').strip()}")
    return [name for name in listed.stdout.decode().split("\0") if name]


def test_no_tracked_file_names_a_development_machine_path() -> None:
    files = _tracked_files()
    assert "pyproject.toml" in files  # the listing is this repository's
    found = []
    for name in files:
        path = ROOT / name
        if name in SKIPPED or not path.is_file():
            continue
        content = path.read_bytes()
        if b"\0" in content[:8192]:  # binary, as git tells it
            continue
        for number, line in enumerate(content.decode("utf-8", errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "machine paths in tracked files:\n" + "\n".join(found)


def absolute(*parts: str) -> str:
    """A machine path, put together here so that this file names none itself."""
    return "/" + "/".join(parts)


@pytest.mark.parametrize(
    "line, names_one",
    [
        (f"see ``{absolute('work', 'shared', 'ECR-CONTRACT.md')}``", True),
        (absolute("home", "someone", ".aws", "config"), True),
        (f"cd {absolute('root', 'project')}", True),
        (f"'{absolute('work', 'x')}'", True),
        ("s3://bucket/work/data", False),
        ("https://example.org/home/index", False),
        ("./work/file", False),
        ("/work/", False),
    ],
)
def test_the_pattern_tells_machine_paths_from_others(line: str, names_one: bool) -> None:
    assert bool(MACHINE_PATH.search(line)) is names_one
