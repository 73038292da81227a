"""Count the GetObject requests the embedded S3 serves, per object: what a push read.

:func:`install` wraps moto's handler of ``GET`` on an object (``S3Response.get_object``)
in this process, so a test can assert that a re-push read none of its sources, or only
the one that changed. HeadObject, listings and the other sub-resources (``?acl``,
``?tagging``...) are not counted: they read no object bytes.

This module must not import Airflow.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from functools import wraps
from typing import Any

from moto.s3.responses import S3Response

__all__ = ["S3_READS", "S3Reads", "install"]


class S3Reads:
    """Thread-safe counts of GetObject requests, by ``bucket/key``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, bucket: str, key: str) -> None:
        with self._lock:
            self._counts[f"{bucket}/{key}"] += 1

    def of(self, bucket: str, key: str) -> int:
        """GETs of one object."""
        with self._lock:
            return self._counts[f"{bucket}/{key}"]

    def under(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """GETs of each object of ``bucket`` whose key starts with ``prefix`` (only those read)."""
        start = f"{bucket}/{prefix}"
        with self._lock:
            return {name: count for name, count in self._counts.items() if name.startswith(start)}

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


S3_READS = S3Reads()
_install_lock = threading.Lock()


def install() -> None:
    """Count every GetObject served by moto's S3 in this process (idempotent)."""
    with _install_lock:
        current: Callable[[S3Response], Any] = S3Response.get_object
        if getattr(current, "_counts_reads", False):
            return

        @wraps(current)
        def get_object(self: S3Response) -> Any:
            S3_READS.add(self.bucket_name, self.parse_key_name())
            return current(self)

        get_object._counts_reads = True  # type: ignore[attr-defined]
        S3Response.get_object = get_object  # type: ignore[method-assign]
