"""Deterministic gzip layers: fixed header, the diff_id from the same pass, the same bytes from any
source, read from any byte (pure logic)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zlib
from pathlib import Path

import pytest

from airflow_ecr_layers.core.archives.gzip_streams import FIXED_GZIP_HEADER
from airflow_ecr_layers.core.build.gzip_layer import GZIP_LEVEL, GzipLayer, check_compress, measure_layers
from airflow_ecr_layers.core.build.tar_stream import LayerFile, TarLayer
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import MiB
from airflow_ecr_layers.core.sources.blobs import BytesSource, LocalFileSource
from helpers import pattern_bytes

FILES = {
    "/models/config.json": b'{"a": 1}',
    "/models/weights/part-0.bin": pattern_bytes(3 * MiB + 17, seed=1),
    "/models/empty/.keep": b"",
    "/models/text.txt": b"the same line again\n" * 5000,
}
GOLDEN = "sha256:374ed74ad4b05a0627bade320a0d5451e51d977ba00b78577eaf9078cf7698bc"


def layer_of(files: dict[str, bytes]) -> TarLayer:
    return TarLayer([LayerFile(path, BytesSource(data, path)) for path, data in files.items()], name="test layer")


def read_all(source: GzipLayer | TarLayer, offset: int = 0) -> bytes:
    with source.open_at(offset, MiB) as handle:
        return handle.read()


def test_the_stream_is_a_gzip_of_the_tar_with_a_fixed_header_and_its_diff_id_from_the_same_pass() -> None:
    tar = layer_of(FILES)
    zipped = GzipLayer(tar)
    data = read_all(zipped)
    assert data[:10] == FIXED_GZIP_HEADER  # no name, mtime 0, XFL 0, OS 255
    assert data[3] == 0 and data[4:8] == b"\0\0\0\0" and data[9] == 0xFF
    assert gzip.decompress(data) == read_all(tar)
    measured = zipped.measured()
    assert (measured.size, measured.digest) == (len(data), "sha256:" + hashlib.sha256(data).hexdigest())
    assert measured.diff_id == "sha256:" + hashlib.sha256(read_all(tar)).hexdigest()
    assert (zipped.size, zipped.digest, zipped.diff_id) == (measured.size, measured.digest, measured.diff_id)
    assert zipped.size < tar.size
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        assert {m.name for m in archive if m.isreg()} == {p.lstrip("/") for p in FILES}


def test_the_same_files_give_the_same_bytes_every_time_and_from_any_source(tmp_path: Path) -> None:
    first = GzipLayer(layer_of(FILES)).measured()
    assert GzipLayer(layer_of(FILES)).measured() == first
    for path, data in FILES.items():
        (tmp_path / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path.lstrip("/")).write_bytes(data)
    on_disk = TarLayer(
        [LayerFile(path, LocalFileSource(str(tmp_path / path.lstrip("/")))) for path in reversed(list(FILES))],
        name="from disk",
    )
    assert GzipLayer(on_disk).measured() == first
    assert measure_layers([GzipLayer(layer_of(FILES)), GzipLayer(on_disk)], 2) == [first, first]
    changed = dict(FILES, **{"/models/config.json": b'{"a": 2}'})
    assert GzipLayer(layer_of(changed)).measured().digest != first.digest


def test_the_bytes_do_not_depend_on_this_zlib_build() -> None:
    """A golden digest: zlib's deflate at level 6 gave these bytes with the pinned Python; a zlib that
    compresses differently (zlib-ng, a future change) fails here rather than silently changing digests."""
    data = b"".join(b"line %d of a model card\n" % i for i in range(20_000))
    zipped = GzipLayer(layer_of({"/card.txt": data}))
    assert zipped.level == GZIP_LEVEL == 6
    expected = "sha256:" + hashlib.sha256(read_all(zipped)).hexdigest()
    assert zipped.digest == expected
    assert zlib.ZLIB_RUNTIME_VERSION.startswith("1.")
    assert zipped.digest == GOLDEN, (zlib.ZLIB_RUNTIME_VERSION, zipped.digest)


@pytest.mark.parametrize("offset", [0, 1, 10, 4096, 777_777])
def test_it_opens_at_any_byte(offset: int) -> None:
    zipped = GzipLayer(layer_of(FILES))
    whole = read_all(zipped)
    assert read_all(zipped, offset) == whole[offset:]


def test_an_empty_file_alone_compresses_too() -> None:
    zipped = GzipLayer(layer_of({"/.keep": b""}))
    assert gzip.decompress(read_all(zipped)) == read_all(zipped.tar)


@pytest.mark.parametrize(("given", "expected"), [(None, None), ("", None), ("none", None), ("gzip", "gzip")])
def test_compress_takes_none_or_gzip(given: str | None, expected: str | None) -> None:
    assert check_compress(given) == expected


def test_another_compression_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="'zstd'"):
        check_compress("zstd")
