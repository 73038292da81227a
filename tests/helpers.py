"""Helpers the tests of every tier share (imported as ``helpers``; ``tests/`` is on the path)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from airflow_ecr_layers.core.limits import MiB

__all__ = [
    "CONN_ID",
    "ROOT",
    "MiB",
    "another_account",
    "make_signing_key",
    "pattern_bytes",
    "sha256",
    "wait_for",
]

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


def another_account(aws: Any, monkeypatch: Any, account_id: str, conn_id: str = "aws_prod") -> Any:
    """An Airflow connection ``conn_id`` to ``account_id`` of the embedded server (set in the
    environment through ``monkeypatch``), and a boto3 ECR client of that account."""
    import boto3

    key, secret = aws.credentials_for(account_id)
    conn = {
        "conn_type": "aws",
        "login": key,
        "password": secret,
        "extra": {"endpoint_url": aws.endpoint_url, "region_name": aws.region},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return boto3.client(
        "ecr",
        endpoint_url=aws.endpoint_url,
        region_name=aws.region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def make_signing_key(kms: Any, alias: str = "alias/release", spec: str = "ECC_NIST_P256") -> str:
    """A KMS signing key behind ``alias``; returns its cosign reference ``awskms:///<alias>``."""
    key_id = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    return f"awskms:///{alias}"
