"""gzip on the fly (docker-save layers as Docker v2 schema 2): pure logic."""

from __future__ import annotations

import gzip
import hashlib
import os

from airflow_ecr_layers.core.gzip_source import GzipSource
from airflow_ecr_layers.core.sources import BytesSource, SliceSource

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
