"""The part reader: ordered parts, sha256 while streaming, seeks, bounded buffers (pure logic)."""

from __future__ import annotations

import hashlib
import io
import threading
from typing import BinaryIO

import pytest

from airflow_ecr_layers.core.errors import SourceError
from airflow_ecr_layers.core.reader import PartReader
from airflow_ecr_layers.core.sources import BytesSource

DATA = bytes(range(256)) * 41 + b"tail"  # 10500 bytes


def drain(reader: PartReader) -> list[tuple[int, bytes]]:
    parts = []
    while (part := reader.next_part()) is not None:
        parts.append((part.first_byte, part.data))
    return parts


def test_parts_in_order_and_digest() -> None:
    with PartReader(BytesSource(DATA), 4096) as reader:
        parts = drain(reader)
        digest = reader.digest()
    assert [first for first, _ in parts] == [0, 4096, 8192]
    assert b"".join(data for _, data in parts) == DATA
    assert digest == "sha256:" + hashlib.sha256(DATA).hexdigest()


def test_digest_before_the_end_is_refused() -> None:
    with PartReader(BytesSource(DATA), 4096) as reader:
        reader.next_part()
        with pytest.raises(RuntimeError, match="hashed"):
            reader.digest()


def test_seek_back_rereads_without_double_hashing() -> None:
    with PartReader(BytesSource(DATA), 4096) as reader:
        reader.next_part()
        reader.next_part()
        reader.seek(1000)  # as after lastValidByteReceived = 999
        rest = drain(reader)
        digest = reader.digest()
    assert rest[0][0] == 1000
    assert b"".join(d for _, d in rest) == DATA[1000:]
    assert digest == "sha256:" + hashlib.sha256(DATA).hexdigest()


def test_seek_forward_hashes_the_gap_without_returning_it() -> None:
    with PartReader(BytesSource(DATA), 4096) as reader:
        reader.seek(6000)  # the upload already holds bytes 0..5999
        rest = drain(reader)
        digest = reader.digest()
    assert rest[0][0] == 6000
    assert b"".join(d for _, d in rest) == DATA[6000:]
    assert digest == "sha256:" + hashlib.sha256(DATA).hexdigest()


class _ShortSource(BytesSource):
    @property
    def size(self) -> int:
        return len(self.data) + 10


def test_source_shorter_than_declared_fails_naming_offset() -> None:
    with PartReader(_ShortSource(DATA, "s3://b/short"), 4096) as reader:
        with pytest.raises(SourceError, match=r"s3://b/short ended at byte 10500"):
            drain(reader)


class _CountingSource(BytesSource):
    """Counts reads in flight that the consumer has not released."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        object.__setattr__(self, "reads", 0)
        object.__setattr__(self, "gate", threading.Event())

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        source = self

        class Handle(io.BytesIO):
            def read(self, n: int = -1) -> bytes:  # type: ignore[override]
                object.__setattr__(source, "reads", source.reads + 1)
                return super().read(n)

        handle = Handle(self.data)
        handle.seek(offset)
        return handle


def test_read_ahead_is_bounded_by_depth() -> None:
    source = _CountingSource(DATA * 10)
    with PartReader(source, 1024, depth=2) as reader:
        reader.next_part()
        threading.Event().wait(0.2)  # give the producer every chance to run ahead
        assert source.reads <= 2, "the producer read further ahead than its depth allows"
        reader.next_part()
        threading.Event().wait(0.2)
        assert source.reads <= 3
