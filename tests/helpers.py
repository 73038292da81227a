"""Helpers the tests of every tier share (imported as ``helpers``; ``tests/`` is on the path)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from airflow_ecr_layers.core.limits import MiB

__all__ = ["CONN_ID", "ROOT", "MiB", "pattern_bytes", "sha256", "wait_for"]

ROOT = Path(__file__).resolve().parent.parent
"""The repository's root."""
CONN_ID = "aws_default"
"""The Airflow connection the tests point at the embedded ECR+S3."""


def pattern_bytes(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes that differ per position (so misplaced parts change the digest)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    reps = -(-size // len(block))
    return (block * reps)[:size]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``condition`` every 50 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting")
        time.sleep(0.05)


def load_script(path: Path, name: str) -> ModuleType:
    """Import a script that is not in a package (a benchmark's) as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the body runs
    spec.loader.exec_module(module)
    return module
