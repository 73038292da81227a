"""A gzip-compressed source seen decompressed, so tar members can be sliced out of it.

gzip cannot seek, so opening at an offset decompresses from the start and discards
up to it: correct for any offset, cheap near the front. Nothing is kept in memory
or on disk beyond zlib's window and one read block.
"""

from __future__ import annotations

import gzip
import io
from typing import Any, BinaryIO

from airflow_ecr_layers.core.sources import BlobSource

GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(source: BlobSource) -> bool:
    if source.size < 2:
        return False
    with source.open_at(0, 64 * 1024) as handle:
        return handle.read(2) == GZIP_MAGIC


class GunzipSource:
    """The decompressed bytes of a gzip ``parent``; ``size`` costs one decompression pass."""

    def __init__(self, parent: BlobSource, block_size: int = 1024 * 1024) -> None:
        self.parent = parent
        self.block_size = block_size
        self._size: int | None = None

    @property
    def name(self) -> str:
        return f"{self.parent.name} (gunzipped)"

    @property
    def size(self) -> int:
        if self._size is None:
            total = 0
            with self.open_at(0, self.block_size) as handle:
                while chunk := handle.read(self.block_size):
                    total += len(chunk)
            self._size = total
        return self._size

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        block = max(block_size, self.block_size)
        handle = _OwnedGzipFile(_in_blocks(self.parent.open_at(0, block), block))
        if offset:
            handle.seek(offset)  # decompresses and discards: gzip has no index
        return handle  # type: ignore[return-value]


class _RawReader(io.RawIOBase):
    """A handle as raw I/O, so an ``io.BufferedReader`` can read it in large blocks."""

    def __init__(self, handle: BinaryIO) -> None:
        super().__init__()
        self._handle = handle

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._handle.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._handle.close()
        finally:
            super().close()


def _in_blocks(handle: BinaryIO, block: int) -> BinaryIO:
    """GzipFile reads its file 8 KiB at a time (the header's file name 1 byte at a time); on an
    object-store handle without a read cache each read is a ranged GET. Read ``block`` bytes a time."""
    return io.BufferedReader(_RawReader(handle), buffer_size=block)  # type: ignore[return-value]


class _OwnedGzipFile(gzip.GzipFile):
    """A GzipFile that also closes the compressed handle it reads from."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()
