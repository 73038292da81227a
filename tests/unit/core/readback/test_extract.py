"""Extracting tar layers: the entries refused, and layers applied in order with OCI whiteouts (pure logic).

The layers are crafted with Python's tarfile (tests/image_builders.py), parsed as a pull parses
them, checked and applied; nothing here talks to ECR.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tracemalloc

import pytest

from airflow_ecr_layers.core.engine.reader import Part
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.readback.extract import (
    Entry,
    Extraction,
    GunzipStream,
    PartStream,
    apply_layer,
    check_entries,
    entry_of,
    image_root,
    is_tar_image,
)
from image_builders import TarEntry, tar_bytes


def entries(*crafted: TarEntry) -> list[Entry]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(list(crafted))), mode="r|") as tar:
        return [entry_of(info, "layer 1") for info in tar]


def extract(root: str, *layers: list[Entry]) -> dict[str, tuple[int, int]]:
    """The files the layers give under ``root``: title -> (layer, size)."""
    extraction = Extraction(image_root(root))
    dirs: set[str] = set()
    for index, layer in enumerate(layers):
        check_entries(layer, extraction, f"layer {index + 1}")
        apply_layer(extraction, index, layer, dirs)
    found = {}
    for placed in extraction.files.values():
        title = extraction.title_of(placed.name)
        assert title
        found[title] = (placed.layer, placed.size)
    return found


@pytest.mark.parametrize(
    ("crafted", "message"),
    [
        (TarEntry("/etc/passwd", b"x"), "absolute path"),
        (TarEntry("models/../../escape", b"x"), r"escapes the archive with '\.\.'"),
        (TarEntry("../escape", b"x"), r"'\.\.'"),
        (TarEntry("models/link", kind="symlink", target="/etc/passwd"), "symlink to '/etc/passwd', which leaves"),
        (TarEntry("models/link", kind="symlink", target="../../etc"), "which leaves the destination"),
        (TarEntry("models/link", kind="symlink", target="config.json"), "symlink to 'config.json', which is a link"),
        (TarEntry("models/hard", kind="hardlink", target="etc/shadow"), "hardlink to 'etc/shadow', which leaves"),
        (TarEntry("models/hard", kind="hardlink", target="models/config.json"), "hardlink .* is a link"),
        (TarEntry("models/null", kind="device"), "is a device node"),
        (TarEntry("models/pipe", kind="fifo"), "is a fifo"),
        (TarEntry("models/.wh..wh.plnk", b""), "reserved whiteout"),
    ],
)
def test_hostile_entries_are_refused(crafted: TarEntry, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        extract("/models", entries(TarEntry("models", kind="dir"), TarEntry("models/config.json", b"{}"), crafted))


def test_two_entries_at_one_path_in_a_layer_are_refused() -> None:
    layer = entries(TarEntry("models/a.bin", b"one"), TarEntry("./models//a.bin", b"two"))
    with pytest.raises(InvalidInputError, match="'models/a.bin' is in the layer twice"):
        extract("/models", layer)


def test_a_link_on_the_way_to_the_folder_extracted_is_refused() -> None:
    layer = entries(TarEntry("srv", kind="symlink", target="/etc"), TarEntry("other.txt", b"x"))
    with pytest.raises(InvalidInputError, match="makes 'srv' a symlink .* on the way to /srv/models"):
        extract("/srv/models", layer)
    with pytest.raises(InvalidInputError, match="'srv' is a symlink to '/etc', which leaves the destination"):
        extract("/srv", layer)


def test_outside_the_folder_links_and_devices_are_left_alone() -> None:
    base = entries(
        TarEntry("bin", kind="dir"),
        TarEntry("bin/busybox", b"ELF"),
        TarEntry("bin/sh", kind="symlink", target="busybox"),
        TarEntry("dev/null", kind="device"),
    )
    ours = entries(TarEntry("models/config.json", b"{}"), TarEntry("models/empty", b""))
    assert extract("/models", base, ours) == {"config.json": (1, 2), "empty": (1, 0)}
    with pytest.raises(InvalidInputError, match="'bin/sh' is a symlink"):
        extract("/", base, ours)  # the whole image: the link is refused


def test_a_file_where_the_folder_is_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="is a file, where the folder to extract is"):
        extract("/models", entries(TarEntry("models", b"not a folder")))


def test_later_layers_replace_earlier_files_and_whiteouts_remove_them() -> None:
    lower = entries(
        TarEntry("m/a", b"a1"),
        TarEntry("m/b", b"b1"),
        TarEntry("m/d/x", b"x1"),
        TarEntry("m/e/y", b"y1"),
        TarEntry("m/f", b"f1"),
        TarEntry("m/g/z", b"z1"),
    )
    upper = entries(
        TarEntry("m/.wh.a", b""),  # a is deleted
        TarEntry("m/b", b"b2!"),  # b is replaced
        TarEntry("m/d/.wh..wh..opq", b""),  # d is emptied of the layers below...
        TarEntry("m/d/new", b"n"),  # ...but keeps what this layer puts there
        TarEntry("m/.wh.e", b""),  # the folder e and all below go
        TarEntry("m/f/inside", b"i"),  # a folder replaces the file f
        TarEntry("m/g", b"gfile"),  # a file replaces the folder g
    )
    assert extract("/m", lower, upper) == {
        "b": (1, 3),
        "d/new": (1, 1),
        "f/inside": (1, 1),
        "g": (1, 5),
    }


def test_a_whiteout_of_the_folder_extracted_or_above_it_empties_it() -> None:
    lower = entries(TarEntry("srv/m/a", b"a"), TarEntry("srv/m/b", b"b"))
    assert extract("/srv/m", lower, entries(TarEntry("srv/.wh.m", b""))) == {}
    assert extract("/srv/m", lower, entries(TarEntry(".wh.srv", b""))) == {}
    assert extract("/srv/m", lower, entries(TarEntry("srv/m/.wh..wh..opq", b""), TarEntry("srv/m/c", b"c"))) == {
        "c": (1, 1)
    }
    assert extract("/", lower, entries(TarEntry(".wh..wh..opq", b""))) == {}


def test_the_folder_to_extract_must_be_absolute_and_stay_in_the_image() -> None:
    assert image_root("/") == "" and image_root("/models/") == "models" and image_root("//a/./b") == "a/b"
    with pytest.raises(InvalidInputError, match="absolute"):
        image_root("models")
    with pytest.raises(InvalidInputError, match=r"'\.\.'"):
        image_root("/models/../..")


def test_tar_images_are_told_from_artifacts() -> None:
    assert is_tar_image({"layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}]})
    assert is_tar_image({"layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}]})
    assert not is_tar_image({"layers": [{"mediaType": "application/octet-stream"}]})
    assert not is_tar_image({"manifests": []})


class _Parts:
    """A stand-in for the part reader: ``data`` in parts of ``size`` bytes."""

    def __init__(self, data: bytes, size: int) -> None:
        self._data, self._size, self._at = data, size, 0

    def next_part(self) -> Part | None:
        if self._at >= len(self._data):
            return None
        part = Part(self._at, bytearray(self._data[self._at : self._at + self._size]))
        self._at += self._size
        return part


def test_a_gzip_layer_is_read_in_bounded_memory_and_its_diff_id_hashed_on_the_way() -> None:
    """64 MiB of tar from 64 KiB of gzip (two members): memory stays a few MiB, the bytes all pass."""
    big = 64 * 1024 * 1024
    tar = tarfile.TarInfo("models/zeros.bin")
    tar.size = big
    header = tar.tobuf(tarfile.PAX_FORMAT)
    whole = header + bytes(big) + bytes(1024)
    compressed = gzip.compress(whole[: 10 * 1024 * 1024], mtime=0) + gzip.compress(whole[10 * 1024 * 1024 :], mtime=0)
    del whole
    stream = GunzipStream(PartStream(_Parts(compressed, 1 << 20)), "layer 1")  # type: ignore[arg-type]
    seen = 0
    tracemalloc.start()
    try:
        with tarfile.open(fileobj=io.BufferedReader(stream, 1 << 20), mode="r|") as archive:
            for info in archive:
                handle = archive.extractfile(info)
                assert handle is not None
                while chunk := handle.read(1 << 20):
                    seen += len(chunk)
        while stream.readinto(bytearray(1 << 20)):
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == big
    assert peak < 16 * 1024 * 1024, peak  # a few 1 MiB buffers, whatever the layer weighs
    expected = hashlib.sha256(header + bytes(big) + bytes(1024)).hexdigest()
    assert stream.hash.hexdigest() == expected
