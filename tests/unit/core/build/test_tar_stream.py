"""Reproducible tar layers: exact bytes checked against tarfile and tar, read from any byte (pure logic)."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from airflow_ecr_layers.core.build.tar_stream import (
    BLOCK,
    END_OF_ARCHIVE,
    MAX_OCTAL_SIZE,
    LayerFile,
    TarLayer,
    entry_header,
    entry_size,
    image_path,
    join_image_path,
)
from airflow_ecr_layers.core.errors import InvalidInputError, SourceChangedError
from airflow_ecr_layers.core.limits import MiB
from airflow_ecr_layers.core.sources.blobs import BytesSource
from airflow_ecr_layers.core.sources.identity import SourceIdentity
from helpers import pattern_bytes

LONG = "deep/" * 30 + "name-" * 30 + ".bin"
"""Over 255 bytes: does not fit ustar's name and prefix fields either."""
FILES = {
    "/models/config.json": b'{"a": 1}',
    "/models/weights/part-0.bin": pattern_bytes(3 * BLOCK + 17, seed=1),
    "/models/weights/part-1.bin": pattern_bytes(BLOCK, seed=2),  # exactly one block: no padding
    "/models/empty/.keep": b"",
    "/models/empty-file": b"",
    "/models/" + LONG: b"long name",
    "/models/" + "x" * 95 + "/abcdef": b"a name of 102 bytes in the tar",
    "/models/ünïcødé/日本語.txt": "unicode ✓".encode(),
    "/models/a.b": b"sorts after the folder a/",
    "/models/a/b": b"inside a/",
    "/run.sh": b"#!/bin/sh\necho hi\n",
}
EXECUTABLE = {"/run.sh"}


def layer_of(files: dict[str, bytes], mtime: int = 0) -> TarLayer:
    return TarLayer(
        [LayerFile(path, BytesSource(data, path), path in EXECUTABLE) for path, data in files.items()], mtime=mtime
    )


def read_all(layer: TarLayer, offset: int = 0, chunk: int = MiB) -> bytes:
    out = bytearray()
    with layer.open_at(offset, chunk) as handle:
        while data := handle.read(chunk):
            out += data
    return bytes(out)


def expected_names(files: dict[str, bytes]) -> list[str]:
    """Folders (each once, ending in /) and files, by path component."""
    folders = {"/".join(p.strip("/").split("/")[:i]) for p in files for i in range(1, p.count("/"))}
    names = {p.lstrip("/"): p.lstrip("/").split("/") for p in files} | {f + "/": f.split("/") for f in folders}
    return sorted(names, key=lambda n: names[n])


# --- the bytes -------------------------------------------------------------------------


def test_tarfile_reads_back_every_entry_with_fixed_metadata() -> None:
    layer = layer_of(FILES, mtime=1_700_000_000)
    data = read_all(layer)
    assert len(data) == layer.size
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        assert [m.name + ("/" if m.isdir() else "") for m in members] == expected_names(FILES)
        for member in members:
            assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
            assert member.mtime == 1_700_000_000
            if member.isdir():
                assert member.mode == 0o755
                continue
            assert member.isreg()
            path = "/" + member.name
            assert member.mode == (0o755 if path in EXECUTABLE else 0o644)
            handle = tar.extractfile(member)
            assert handle is not None and handle.read() == FILES[path]
    assert data.endswith(bytes(END_OF_ARCHIVE)) and len(data) % BLOCK == 0


def test_the_bytes_are_those_tarfile_writes_in_pax_format() -> None:
    """Our headers, field for field, as Python's tarfile writes them (its device fields of regular
    files aside, which Python versions write differently: they are masked, checksum included)."""
    layer = layer_of(FILES, mtime=42)
    ours = read_all(layer)
    written = io.BytesIO()
    with tarfile.open(fileobj=written, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in layer.paths:
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime, info.uname, info.gname = 42, "", ""
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = FILES["/" + name]
                info.size, info.mode = len(data), 0o755 if "/" + name in EXECUTABLE else 0o644
                tar.addfile(info, io.BytesIO(data))
    theirs = written.getvalue()
    assert set(theirs[len(ours) :]) <= {0}  # tarfile pads to a 10 KiB record; the layer ends at two zero blocks

    def masked(block: bytes) -> bytes:
        return block[:148] + b"\0" * 8 + block[156:329] + b"\0" * 16 + block[345:]

    assert len(theirs) >= len(ours)
    for start in range(0, len(ours), BLOCK):
        a, b = ours[start : start + BLOCK], theirs[start : start + BLOCK]
        if a[257:263] == b"ustar\0":  # a header block
            assert masked(a) == masked(b), f"header at {start}"
        else:
            assert a == b, f"block at {start}"


def test_pax_headers_only_where_ustar_cannot_hold_the_name() -> None:
    layer = layer_of(FILES)
    data = read_all(layer)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    pax = {m.name: m.pax_headers for m in members}
    for member, name in zip(members, layer.paths, strict=True):  # folders' names end in / in the tar
        assert bool(member.pax_headers) == (len(name.encode()) > 100 or not name.isascii()), name
    assert pax["models/" + LONG] == {"path": "models/" + LONG}
    assert pax["models/ünïcødé/日本語.txt"] == {"path": "models/ünïcødé/日本語.txt"}
    assert pax["models/" + "x" * 95 + "/abcdef"] == {"path": "models/" + "x" * 95 + "/abcdef"}  # 104 bytes
    assert pax["models/config.json"] == {}
    assert data.count(b"././@PaxHeader") == sum(bool(p) for p in pax.values())


def test_size_past_eight_gib_goes_into_a_pax_record() -> None:
    size = MAX_OCTAL_SIZE + 5
    header = entry_header("huge.bin", 0o644, size, 0)
    with tarfile.open(fileobj=io.BytesIO(header + bytes(BLOCK)), mode="r:") as tar:
        info = tar.next()
        assert info is not None and info.size == size and info.pax_headers == {"size": str(size)}


def test_a_pinned_layer_keeps_its_digest() -> None:
    """The format is part of every image digest: a change here changes every image built."""
    files = {"/data/a.txt": b"a\n", "/data/sub/b.bin": bytes(700), "/data/empty": b"", "/bin/tool": b"x"}
    layer = TarLayer([LayerFile(p, BytesSource(d), p == "/bin/tool") for p, d in files.items()], mtime=0)
    digest = hashlib.sha256(read_all(layer)).hexdigest()
    assert (layer.size, digest) == (6656, PINNED_DIGEST)


PINNED_DIGEST = "0e1c534d2b790b1b9f1d29339b3d8c64d3816e23ab6cdb5ae98a3cb330903874"


@pytest.mark.skipif(shutil.which("tar") is None, reason="no tar on this machine")
def test_tar_lists_the_same_entries(tmp_path: Path) -> None:
    layer = layer_of(FILES, mtime=1_000_000_000)
    archive = tmp_path / "layer.tar"
    archive.write_bytes(read_all(layer))
    listing = subprocess.run(
        ["tar", "--numeric-owner", "-tvf", str(archive)],
        capture_output=True,
        text=True,
        check=True,
        env={"LC_ALL": "C.UTF-8", "TZ": "UTC"},
    ).stdout.splitlines()
    assert len(listing) == len(layer.paths)
    for line, name in zip(listing, layer.paths, strict=True):
        mode, owner, size, date, time_of_day, listed = line.split(None, 5)
        assert listed == name
        assert owner == "0/0" and (date, time_of_day) == ("2001-09-09", "01:46")
        path = "/" + name
        if name.endswith("/"):
            assert mode == "drwxr-xr-x" and size == "0"
        else:
            assert mode == ("-rwxr-xr-x" if path in EXECUTABLE else "-rw-r--r--")
            assert int(size) == len(FILES[path])
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], check=True)
    for path, data in FILES.items():
        assert (out / path.lstrip("/")).read_bytes() == data


# --- reading from any byte -----------------------------------------------------------------


def test_the_size_is_known_before_anything_is_read() -> None:
    layer = TarLayer([LayerFile(f"/f{i}", Unreadable(size)) for i, size in enumerate([0, 1, 511, 512, 513, 10**6])])
    assert layer.size == sum(entry_size(f"/f{i}", s) for i, s in enumerate([0, 1, 511, 512, 513, 10**6])) + 1024


def test_reading_from_every_segment_boundary_gives_the_tail_of_the_archive() -> None:
    layer = layer_of(FILES)
    whole = read_all(layer)
    boundaries = sorted({edge for start, end, _ in layer.segments() for edge in (start, end)})
    assert boundaries[0] == 0 and boundaries[-1] == layer.size
    assert {kind for _, _, kind in layer.segments()} == {"header", "data", "padding", "end"}
    for offset in sorted({max(0, min(layer.size, b + d)) for b in boundaries for d in (-1, 0, 1)}):
        assert read_all(layer, offset, chunk=1000) == whole[offset:], offset


def test_reads_of_any_size_and_seeks_back_give_the_same_bytes() -> None:
    layer = layer_of(FILES)
    whole = read_all(layer)
    for chunk in (1, 7, 511, 512, 513, 4096):
        assert read_all(layer, chunk=chunk) == whole
    with layer.open_at(0, 4096) as handle:
        handle.seek(1500)
        first = handle.read(3000)
        handle.seek(100)
        assert handle.read(50) == whole[100:150]
        handle.seek(-10, io.SEEK_END)
        assert handle.read() == bytes(10)
    assert first == whole[1500:4500]


def test_memory_stays_bounded_reading_a_big_file() -> None:
    """64 MiB through a 1 MiB buffer: the layer holds a header, never the file."""
    layer = TarLayer([LayerFile("/big.bin", Generated(64 * MiB)), LayerFile("/small", BytesSource(b"s"))])
    buffer = bytearray(MiB)
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        with layer.open_at(0, MiB) as handle:
            while count := handle.readinto(buffer):
                digest.update(memoryview(buffer)[:count])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, peak
    expected = hashlib.sha256(read_all(layer)).hexdigest()
    assert digest.hexdigest() == expected


def test_a_file_that_ends_early_fails_the_read_naming_it() -> None:
    layer = TarLayer([LayerFile("/a", Generated(1000, stops_at=600))])
    with pytest.raises(SourceChangedError, match="generated.*ended at byte 600"):
        read_all(layer)


def test_check_unchanged_asks_every_file_source() -> None:
    sources = [Checked(10, "one"), Checked(20, "two"), Checked(0, "three")]
    layer = TarLayer([LayerFile(f"/{s.name}", s) for s in sources])
    layer.check_unchanged()
    assert [s.checks for s in sources] == [1, 1, 1]
    sources[1].changed = True
    with pytest.raises(SourceChangedError, match="two changed"):
        layer.check_unchanged()


def test_a_source_is_opened_where_it_is_needed_and_closed_after_its_last_byte() -> None:
    sources = [Generated(3000, name=f"g{i}") for i in range(3)]
    layer = TarLayer([LayerFile(f"/g{i}", s) for i, s in enumerate(sources)])
    read_all(layer, chunk=1024)
    assert [s.opened for s in sources] == [[0], [0], [0]]
    assert all(s.open_handles == 0 for s in sources)
    start = next(start for start, _, kind in layer.segments() if kind == "data") + 1234
    read_all(layer, start)
    assert sources[0].opened == [0, 1234]


# --- what is refused --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("models/a", "not absolute"),
        ("", "not absolute"),
        ("/models/../etc/passwd", r"'\.\.'"),
        ("/..", r"'\.\.'"),
        ("/", "root"),
        ("/a\0b", "NUL"),
        ("/bad\udcff", "UTF-8"),
    ],
)
def test_paths_that_cannot_be_in_an_image_are_refused(path: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        image_path(path)


def test_paths_are_normalised() -> None:
    assert image_path("/models//a/./b") == "/models/a/b"
    assert image_path("/models/a/") == "/models/a"
    assert join_image_path("/", "a/b") == "/a/b"
    assert join_image_path("/models/", "a//b") == "/models/a/b"
    with pytest.raises(InvalidInputError, match="outside /models"):
        join_image_path("/models", "../etc/passwd")
    with pytest.raises(InvalidInputError, match="relative path"):
        join_image_path("/models", "/etc/passwd")
    with pytest.raises(InvalidInputError, match="not absolute"):
        join_image_path("models", "a")


def test_two_files_at_one_path_and_a_file_where_a_folder_is_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="given by two sources.*'/a/b'"):
        TarLayer([LayerFile("/a/b", BytesSource(b"1")), LayerFile("/a//b", BytesSource(b"2"))])
    with pytest.raises(InvalidInputError, match="both a file and a folder.*'/a'"):
        TarLayer([LayerFile("/a", BytesSource(b"1")), LayerFile("/a/b", BytesSource(b"2"))])
    with pytest.raises(InvalidInputError, match="at least one file"):
        TarLayer([])
    with pytest.raises(InvalidInputError, match="mtime"):
        TarLayer([LayerFile("/a", BytesSource(b"1"))], mtime=-1)


# --- sources for the tests ---------------------------------------------------------------------


@dataclass
class Unreadable:
    size: int
    name: str = "unreadable"

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        raise AssertionError("nothing is read to size a layer")


@dataclass
class Generated:
    """``size`` pattern bytes made on the fly (none held), ending at ``stops_at`` if given."""

    size: int
    stops_at: int | None = None
    name: str = "generated"
    opened: list[int] = field(default_factory=list)
    open_handles: int = 0

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        self.opened.append(offset)
        self.open_handles += 1
        return _GeneratedReader(self, offset)  # type: ignore[return-value]


_PATTERN = memoryview(bytes(range(251)) * (MiB // 251 + 2))


class _GeneratedReader(io.RawIOBase):
    def __init__(self, source: Generated, offset: int) -> None:
        super().__init__()
        self.source, self.position = source, offset

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = self.source.size if self.source.stops_at is None else self.source.stops_at
        count = max(0, min(len(view), end - self.position, MiB))
        start = self.position % 251
        view[:count] = _PATTERN[start : start + count]  # a copy out of a view: nothing allocated
        self.position += count
        return count

    def close(self) -> None:
        if not self.closed:
            self.source.open_handles -= 1
        super().close()


@dataclass
class Checked:
    size: int
    name: str
    changed: bool = False
    checks: int = 0

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        return io.BytesIO(bytes(self.size)[offset:])

    def check_unchanged(self) -> None:
        self.checks += 1
        if self.changed:
            raise SourceChangedError(f"{self.name} changed while it was read")


def test_the_layer_identity_sums_up_its_files_identities_for_resume_records() -> None:
    def layer(etag: str = "e1", mtime: int = 0, executable: bool = False) -> TarLayer:
        return TarLayer(
            [
                LayerFile("/a", WithIdentity(3, "s3://b/a", etag), executable),
                LayerFile("/d/b", WithIdentity(0, "s3://b/d/b", "e2")),
            ],
            mtime=mtime,
        )

    first = layer().identity()
    assert first is not None and first.url.startswith("tar-layer:sha256:") and first.size == layer().size
    assert layer().identity() == first
    assert len({first, layer(etag="e9").identity(), layer(mtime=1).identity(), layer(executable=True).identity()}) == 4
    assert TarLayer([LayerFile("/a", BytesSource(b"no identity"))]).identity() is None


@dataclass
class WithIdentity:
    size: int
    url: str
    etag: str
    name: str = "with identity"

    def identity(self) -> SourceIdentity:
        return SourceIdentity(self.url, self.size, etag=self.etag)

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        return io.BytesIO(bytes(self.size)[offset:])
