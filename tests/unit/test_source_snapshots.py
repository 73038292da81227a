"""A source's size and identity are one snapshot, taken when the source is made (issue 19):
a later change to the file does not change what the source says it is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_ecr_layers.core.errors import SourceError
from airflow_ecr_layers.core.sources.blobs import LocalFileSource
from airflow_ecr_layers.storage import PlainStorage, open_source


def rewrite(path: Path, data: bytes) -> None:
    """New bytes and a new mtime: what a later writer does to the file."""
    path.write_bytes(data)
    later = path.stat().st_mtime_ns + 5_000_000_000
    os.utime(path, ns=(later, later))


@pytest.mark.parametrize("how", ["LocalFileSource", "open_source"])
def test_size_and_identity_describe_the_file_as_it_was_opened(tmp_path: Path, how: str) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"a" * 100)
    source = LocalFileSource(str(path)) if how == "LocalFileSource" else open_source(f"file://{path}", PlainStorage())
    opened = source.identity()
    assert opened is not None and (opened.size, opened.mtime_ns) == (100, path.stat().st_mtime_ns)

    rewrite(path, b"b" * 250)

    assert source.size == 100
    assert source.identity() == opened
    again = LocalFileSource(str(path)) if how == "LocalFileSource" else open_source(f"file://{path}", PlainStorage())
    assert again.identity() != opened and again.size == 250  # a new opening sees the new file


def test_a_file_gone_between_listing_and_opening_is_a_clear_source_error(tmp_path: Path) -> None:
    from airflow_ecr_layers.storage import ObjectStorageSource

    path = PlainStorage()(f"file://{tmp_path / 'gone.bin'}")
    with pytest.raises(SourceError, match=r"gone\.bin.*does not exist"):
        ObjectStorageSource(path, info={"size": 3})


def test_an_s3_object_without_etag_or_version_has_no_identity() -> None:
    """Some S3-compatible stores report neither: such a source is never reused by URL and size alone."""
    import s3fs

    from airflow_ecr_layers.storage import FsPath, ObjectStorageSource

    fs = s3fs.S3FileSystem(anon=True, skip_instance_cache=True)
    path = FsPath(fs, "bucket/model.bin", "s3")
    assert ObjectStorageSource(path, info={"size": 10}).identity() is None
    tagged = ObjectStorageSource(path, info={"size": 10, "ETag": '"e1"'}).identity()
    assert tagged is not None and (tagged.url, tagged.etag) == ("s3://bucket/model.bin", '"e1"')
