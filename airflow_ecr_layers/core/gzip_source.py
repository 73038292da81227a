"""A source seen gzip-compressed, deterministically, for pushing docker-save layers as
Docker v2 schema 2 (``.tar.gzip``) layers.

The compressed digest and size must be known before the upload (the manifest names
them, and ECR checks the digest), so :meth:`GzipSource.measure` compresses once,
counting and hashing; the upload then compresses again, and the stream is verified
against that digest as it goes. zlib with fixed settings and a zero gzip timestamp
gives the same bytes both times. Nothing is kept beyond zlib's state and one block.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from typing import Any, BinaryIO

from airflow_ecr_layers.core.sources import BlobSource

DEFAULT_LEVEL = 6
"""gzip's (and docker's) default compression level."""
_READ = 1024 * 1024
_GZIP_WBITS = 31  # zlib writes a gzip header with mtime 0: deterministic output


class GzipSource:
    def __init__(self, parent: BlobSource, level: int = DEFAULT_LEVEL) -> None:
        if not 0 <= level <= 9:
            raise ValueError(f"gzip level must be 0-9, got {level}")
        self.parent = parent
        self.level = level
        self._measured: tuple[int, str] | None = None

    @property
    def name(self) -> str:
        return f"{self.parent.name} (gzip -{self.level})"

    def measure(self) -> tuple[int, str]:
        """``(size, digest)`` of the compressed bytes; computed once, by compressing."""
        if self._measured is None:
            digest, size = hashlib.sha256(), 0
            with self.open_at(0, _READ) as handle:
                while chunk := handle.read(_READ):
                    digest.update(chunk)
                    size += len(chunk)
            self._measured = (size, "sha256:" + digest.hexdigest())
        return self._measured

    @property
    def size(self) -> int:
        return self.measure()[0]

    @property
    def digest(self) -> str:
        return self.measure()[1]

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        stream = _GzipStream(self.parent.open_at(0, max(block_size, _READ)), self.parent.size, self.level)
        while offset > 0:  # compressed output cannot be seeked: produce and discard
            skipped = stream.read(min(offset, _READ))
            if not skipped:
                break
            offset -= len(skipped)
        return stream  # type: ignore[return-value]


class _GzipStream(io.RawIOBase):
    """Reads of the gzip compression of ``size`` bytes of ``raw``, produced as they are asked for.

    ``raw`` may go on past the blob (a member sliced out of an archive): only ``size``
    bytes of it are read.
    """

    def __init__(self, raw: BinaryIO, size: int, level: int) -> None:
        super().__init__()
        self._raw = raw
        self._remaining = size
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
        self._pending = bytearray()
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._pending) < size):
            chunk = self._raw.read(min(_READ, self._remaining)) if self._remaining else b""
            self._remaining -= len(chunk)
            if chunk:
                self._pending += self._compressor.compress(chunk)
            else:
                self._pending += self._compressor.flush()
                self._done = True
        if size < 0 or size >= len(self._pending):
            out, self._pending = bytes(self._pending), bytearray()
        else:
            out = bytes(self._pending[:size])
            del self._pending[:size]
        return out

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()
