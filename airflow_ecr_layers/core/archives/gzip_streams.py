"""gzip both ways, streamed: sources seen decompressed or compressed, never held whole.

* :class:`GunzipSource` (with :func:`is_gzip`): a gzip-compressed source seen
  decompressed, so tar members can be sliced out of a ``.tar.gz``. gzip cannot seek,
  so opening at an offset decompresses from the start and discards up to it: correct
  for any offset, cheap near the front.
* :class:`GzipSource`: a source seen gzip-compressed, deterministically, for pushing
  docker-save layers as Docker v2 schema 2 (``.tar.gzip``) layers. The compressed
  digest and size must be known before the upload (the manifest names them, and ECR
  checks the digest), so :meth:`GzipSource.measure` compresses once, counting and
  hashing; the upload then compresses again, and the stream is verified against that
  digest as it goes. zlib with fixed settings and a zero gzip timestamp gives the same
  bytes both times.

Nothing is kept in memory or on disk beyond zlib's state and one read block.
"""

from __future__ import annotations

import gzip
import io
import zlib
from typing import Any, BinaryIO

from airflow_ecr_layers.core.limits import MiB
from airflow_ecr_layers.core.sources.blobs import BlobSource, hash_and_count

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_LEVEL = 6
"""gzip's (and docker's) default compression level."""
_GZIP_WBITS = 31  # zlib writes a gzip header with mtime 0: deterministic output


# --- decompress: a .tar.gz seen as its tar ------------------------------------------------


def is_gzip(source: BlobSource) -> bool:
    if source.size < 2:
        return False
    with source.open_at(0, 64 * 1024) as handle:
        return handle.read(2) == GZIP_MAGIC


class GunzipSource:
    """The decompressed bytes of a gzip ``parent``; ``size`` costs one decompression pass."""

    def __init__(self, parent: BlobSource, block_size: int = MiB) -> None:
        self.parent = parent
        self.block_size = block_size
        self._size: int | None = None

    @property
    def name(self) -> str:
        return f"{self.parent.name} (gunzipped)"

    @property
    def size(self) -> int:
        if self._size is None:
            self._size = hash_and_count(self, self.block_size)[0]
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
    return io.BufferedReader(_RawReader(handle), buffer_size=block)


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


# --- compress: docker-save layers as Docker v2 schema 2 ---------------------------------


class GzipSource:
    """The gzip compression of ``parent`` (deterministic); ``size`` and ``digest`` cost one compression pass."""

    def __init__(self, parent: BlobSource, level: int = DEFAULT_LEVEL, *, fixed: bool = False) -> None:
        if not 0 <= level <= 9:
            raise ValueError(f"gzip level must be 0-9, got {level}")
        self.parent = parent
        self.level = level
        self.fixed = fixed
        """Compress with :class:`FixedGzip` (the same header on every platform)."""
        self._measured: tuple[int, str] | None = None

    @property
    def name(self) -> str:
        return f"{self.parent.name} (gzip -{self.level})"

    def measure(self) -> tuple[int, str]:
        """``(size, digest)`` of the compressed bytes; computed once, by compressing."""
        if self._measured is None:
            self._measured = hash_and_count(self, MiB)
        return self._measured

    @property
    def size(self) -> int:
        return self.measure()[0]

    @property
    def digest(self) -> str:
        return self.measure()[1]

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        stream = _GzipStream(
            self.parent.open_at(0, max(block_size, MiB)), self.parent.size, self.level, fixed=self.fixed
        )
        while offset > 0:  # compressed output cannot be seeked: produce and discard
            skipped = stream.read(min(offset, MiB))
            if not skipped:
                break
            offset -= len(skipped)
        return stream  # type: ignore[return-value]


FIXED_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
"""A gzip member header with nothing of the machine in it: deflate, no flags (no file name, no
comment), mtime 0, no extra flags, OS 255 ("unknown", as Go's compress/gzip writes it). zlib's own
gzip header (``wbits=31``) writes the OS byte of the platform zlib was built for."""


class FixedGzip:
    """A compressor (``compress``/``flush``, as ``zlib.compressobj``) whose gzip stream is
    :data:`FIXED_GZIP_HEADER`, raw deflate at ``level``, then the CRC-32 and size trailer."""

    def __init__(self, level: int = DEFAULT_LEVEL) -> None:
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
        self._crc = 0
        self._size = 0
        self._started = False

    def _header(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return FIXED_GZIP_HEADER

    def compress(self, data: bytes | memoryview) -> bytes:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        return self._header() + self._deflate.compress(data)

    def flush(self) -> bytes:
        trailer = (self._crc & 0xFFFFFFFF).to_bytes(4, "little") + (self._size & 0xFFFFFFFF).to_bytes(4, "little")
        return self._header() + self._deflate.flush() + trailer


class _GzipStream(io.RawIOBase):
    """Reads of the gzip compression of ``size`` bytes of ``raw``, produced as they are asked for.

    ``raw`` may go on past the blob (a member sliced out of an archive): only ``size``
    bytes of it are read. ``fixed`` compresses with :class:`FixedGzip` (no platform byte).
    """

    def __init__(self, raw: BinaryIO, size: int, level: int, *, fixed: bool = False) -> None:
        super().__init__()
        self._raw = raw
        self._remaining = size
        self._compressor: FixedGzip | Any = (
            FixedGzip(level) if fixed else zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
        )
        self._pending = bytearray()
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._pending) < size):
            chunk = self._raw.read(min(MiB, self._remaining)) if self._remaining else b""
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
