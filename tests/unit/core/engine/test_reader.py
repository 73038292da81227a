"""The part reader: ordered parts, sha256 while streaming, seeks, bounded buffers (pure logic)."""

from __future__ import annotations

import hashlib
import io
import threading
from typing import Any, BinaryIO

import pytest

from airflow_ecr_layers.core.engine.reader import PartReader
from airflow_ecr_layers.core.errors import SourceChangedError
from airflow_ecr_layers.core.sources.blobs import BytesSource

DATA = bytes(range(256)) * 41 + b"tail"  # 10500 bytes


def drain(reader: PartReader) -> list[tuple[int, bytes]]:
    parts = []
    while (part := reader.next_part()) is not None:
        parts.append((part.first_byte, bytes(part.data)))  # the reader reuses its buffers
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
    with (
        PartReader(_ShortSource(DATA, "s3://b/short"), 4096) as reader,
        pytest.raises(SourceChangedError, match=r"s3://b/short ended at byte 10500"),
    ):
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

            def readinto(self, buffer: Any) -> int:
                object.__setattr__(source, "reads", source.reads + 1)
                return super().readinto(buffer)

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


def test_full_parts_cycle_through_depth_buffers_and_the_short_tail_gets_its_own() -> None:
    data = DATA * 3  # 31500 bytes: 7 parts of 4096 and a 2828-byte tail
    buffers: list[int] = []
    seen: list[bytes] = []
    with PartReader(BytesSource(data), 4096, depth=2) as reader:
        while (part := reader.next_part()) is not None:
            buffers.append(id(part.data))
            seen.append(bytes(part.data))
    assert b"".join(seen) == data
    assert len(set(buffers[:-1])) == 2, "full parts should alternate between the reader's two buffers"
    assert buffers[:-1] == [buffers[0], buffers[1]] * 3 + [buffers[0]]
    assert buffers[-1] not in buffers[:-1], "the short last part must not shrink a shared buffer"


def test_a_held_part_is_never_overwritten_while_the_producer_runs_ahead() -> None:
    data = bytes(range(256)) * 64  # 16 parts of 1024 bytes, each distinct from its neighbours
    with PartReader(BytesSource(data), 1024, depth=2) as reader:
        expected_first = 0
        while (part := reader.next_part()) is not None:
            threading.Event().wait(0.01)  # the producer fills the other buffer meanwhile
            assert part.first_byte == expected_first
            assert bytes(part.data) == data[part.first_byte : part.end], "a part changed while it was held"
            expected_first = part.end
    assert expected_first == len(data)


class _ReadOnlySource(BytesSource):
    """A handle with ``read`` only (no ``readinto``): the reader copies what it returns."""

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        data = self.data[offset:]

        class Handle:
            def __init__(self) -> None:
                self.position = 0

            def read(self, n: int) -> bytes:
                chunk = data[self.position : self.position + min(n, 1000)]  # short reads, like a socket
                self.position += len(chunk)
                return chunk

            def __enter__(self) -> Handle:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

        return Handle()  # type: ignore[return-value]


def test_a_handle_without_readinto_is_read_and_copied() -> None:
    with PartReader(_ReadOnlySource(DATA), 4096) as reader:
        parts = drain(reader)
        digest = reader.digest()
    assert b"".join(d for _, d in parts) == DATA
    assert digest == "sha256:" + hashlib.sha256(DATA).hexdigest()


def test_a_closed_readers_buffers_serve_the_next_reader() -> None:
    from airflow_ecr_layers.core.engine.buffers import POOL

    POOL.clear()
    with PartReader(BytesSource(DATA), 4096) as first:
        held = {id(part.data) for part in iter(first.next_part, None)}
    with PartReader(BytesSource(DATA), 4096) as second:
        again = {id(part.data) for part in iter(second.next_part, None)}
    assert held == again  # the same part buffers, and the same buffer for the short tail
    POOL.clear()


def test_the_pool_keeps_no_more_than_its_bound() -> None:
    from airflow_ecr_layers.core.engine.buffers import BufferPool

    pool = BufferPool(max_idle_bytes=10)
    kept, extra = bytearray(6), bytearray(6)
    pool.give([kept, extra])
    assert pool.idle_bytes == 6
    assert pool.take(6) is kept
    assert pool.take(6) is not extra and pool.idle_bytes == 0
