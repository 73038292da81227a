"""gzip both ways, streamed (``core.gzip_streams``), and the ``hash_and_count`` pass that
measures them: pure logic.

Compressing on the fly pushes docker-save layers as Docker v2 schema 2; decompressing
reads a ``.tar.gz`` image archive in place.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from typing import Any

from airflow_ecr_layers.core.archives.gzip_streams import GunzipSource, GzipSource, is_gzip
from airflow_ecr_layers.core.sources.blobs import BlobSource, BytesSource, SliceSource, hash_and_count

LAYER = os.urandom(300_000) + b"tar padding " * 200_000


def _read(source: GzipSource, offset: int = 0) -> bytes:
    with source.open_at(offset, 1 << 20) as handle:
        return handle.read()


def test_measure_matches_the_stream_and_decompresses_to_the_input() -> None:
    source = GzipSource(BytesSource(LAYER))
    whole = _read(source)
    assert source.measure() == (len(whole), "sha256:" + hashlib.sha256(whole).hexdigest())
    assert gzip.decompress(whole) == LAYER
    assert len(whole) < len(LAYER)


def test_deterministic_and_readable_from_any_offset() -> None:
    first, second = _read(GzipSource(BytesSource(LAYER))), _read(GzipSource(BytesSource(LAYER)))
    assert first == second
    assert _read(GzipSource(BytesSource(LAYER)), 12_345) == first[12_345:]


def test_a_member_of_an_archive_is_compressed_alone() -> None:
    archive = BytesSource(b"HEADER" + LAYER + b"NEXT MEMBER" * 1000)
    member = SliceSource(archive, 6, len(LAYER), "archive!layer.tar")
    assert gzip.decompress(_read(GzipSource(member))) == LAYER


def test_gunzip_sees_the_decompressed_bytes_from_any_offset() -> None:
    compressed = BytesSource(gzip.compress(LAYER, mtime=0))
    assert is_gzip(compressed) and not is_gzip(BytesSource(LAYER)) and not is_gzip(BytesSource(b"\x1f"))
    source = GunzipSource(compressed, block_size=64 * 1024)
    assert source.size == len(LAYER)
    assert _read_any(source) == LAYER
    assert _read_any(source, 12_345) == LAYER[12_345:]
    assert _read_any(GunzipSource(GzipSource(BytesSource(LAYER)))) == LAYER


def _read_any(source: BlobSource, offset: int = 0) -> bytes:
    with source.open_at(offset, 1 << 20) as handle:
        return handle.read()


class _Recording:
    """A BytesSource whose handles note the size of every read asked of them."""

    def __init__(self, data: bytes) -> None:
        self.inner = BytesSource(data)
        self.name, self.size = "recording", len(data)
        self.reads: list[int] = []

    def open_at(self, offset: int, block_size: int) -> Any:
        handle = self.inner.open_at(offset, block_size)
        read = handle.read

        def recorded(size: int = -1) -> bytes:
            self.reads.append(size)
            return read(size)

        handle.read = recorded  # type: ignore[method-assign]
        return handle


def test_hash_and_count_streams_in_bounded_blocks() -> None:
    source = _Recording(LAYER)
    assert hash_and_count(source, 100_000) == (len(LAYER), "sha256:" + hashlib.sha256(LAYER).hexdigest())
    assert source.reads and all(0 < size <= 100_000 for size in source.reads)
    assert len(source.reads) == -(-len(LAYER) // 100_000) + 1  # the last read finds the end
    assert hash_and_count(BytesSource(b"")) == (0, "sha256:" + hashlib.sha256(b"").hexdigest())
