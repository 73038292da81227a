"""The project's embedded moto server, with ranged S3 GETs that read only the range.

moto 5.2.5 answers ``GET`` with ``Range: bytes=a-b`` by reading the whole object
out of its spooled file and slicing it: every 20 MiB part of a 2 GiB artifact
costs a 2 GiB read (and 2 GiB of the server's memory), so a benchmark through it
measures moto, not the client, and slows down with the square of the artifact
size. s3fs reads in ranges (one per part here), so the benchmark serves S3 from
this wrapper: the same server as ``python -m airflow_ecr_layers.testing.server``
(strict ECR included), with simple single ranges served by a positioned read of
the object's file (``os.pread``: no lock, so layers read in parallel do not queue
behind moto's per-key lock).
Every other request, and ECR, is moto's own code.

    python benchmarks/moto_server.py [--port N]
"""

from __future__ import annotations

import os
import re
import sys
import threading
from typing import Any

from moto.s3.models import FakeKey
from moto.s3.responses import S3Response

from airflow_ecr_layers.testing.server import main

_SIMPLE_RANGE = re.compile(r"bytes=(\d+)-(\d+)")
_ranged = threading.local()


class _Window:
    """Stands in for an object's bytes in moto's range handling: ``len()`` is the
    object's size, and a slice reads just that slice from the object's file."""

    def __init__(self, key: FakeKey) -> None:
        self._key = key

    def __len__(self) -> int:
        return int(self._key.size)

    def __getitem__(self, item: slice) -> bytes:
        start, stop, _ = item.indices(len(self))
        buffer = self._key._value_buffer  # moto keeps the bytes there
        if getattr(buffer, "_rolled", False):  # a file on disk: a positioned read needs no lock
            return os.pread(buffer.fileno(), max(stop - start, 0), start)
        with self._key.lock:  # still in memory: seek and read, one reader at a time
            buffer.seek(start)
            return bytes(buffer.read(max(stop - start, 0)))


def install() -> None:
    """Patch moto's S3 in this process (idempotent)."""
    if getattr(S3Response.get_object, "_ranged", False):
        return
    stock_value: property = FakeKey.__dict__["value"]
    stock_get_object = S3Response.get_object

    def value(self: FakeKey) -> Any:
        return _Window(self) if getattr(_ranged, "active", False) else stock_value.__get__(self)

    def get_object(self: S3Response) -> Any:
        found = _SIMPLE_RANGE.fullmatch(self.headers.get("range") or "")
        if found is None or int(found.group(1)) > int(found.group(2)):
            return stock_get_object(self)
        _ranged.active = True  # moto slices the value after get_object returns: a _Window reads only that slice
        try:
            return stock_get_object(self)
        finally:
            _ranged.active = False

    get_object._ranged = True  # type: ignore[attr-defined]
    FakeKey.value = property(value, stock_value.fset)  # type: ignore[method-assign,assignment]
    S3Response.get_object = get_object  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    sys.exit(main())
