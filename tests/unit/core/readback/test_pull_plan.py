"""What a pull writes: files from titled layers, chunks put back in order, hostile titles refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.readback.pull import Piece, plan_files, safe_title
from airflow_ecr_layers.core.sources.identity import CHUNK_FILE_SIZE, CHUNK_OF, CHUNK_OFFSET


def digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def layer(n: int, size: int, **annotations: str) -> dict[str, Any]:
    return {"mediaType": "application/octet-stream", "digest": digest(n), "size": size, "annotations": annotations}


def titled(n: int, title: str, size: int = 10) -> dict[str, Any]:
    return layer(n, size, **{"org.opencontainers.image.title": title})


def chunk(n: int, of: str, offset: int, size: int, file_size: int) -> dict[str, Any]:
    return layer(
        n,
        size,
        **{
            CHUNK_OF: of,
            CHUNK_OFFSET: str(offset),
            CHUNK_FILE_SIZE: str(file_size),
            "org.opencontainers.image.title": f"{of}.chunk-{offset}",
        },
    )


def manifest(*layers: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"schemaVersion": 2, "layers": list(layers), **extra}).encode()


def test_titled_layers_become_files_and_untitled_ones_are_left_out() -> None:
    files = plan_files(manifest(titled(1, "b/weights.bin", 7), titled(2, "a.json", 3), layer(3, 2)))
    assert [(f.title, f.size, f.pieces) for f in files] == [
        ("a.json", 3, [Piece(digest(2), 3)]),
        ("b/weights.bin", 7, [Piece(digest(1), 7)]),
    ]


def test_chunks_are_put_back_in_offset_order_whatever_the_manifest_order() -> None:
    files = plan_files(manifest(chunk(3, "m.bin", 10, 4, 14), chunk(1, "m.bin", 0, 5, 14), chunk(2, "m.bin", 5, 5, 14)))
    assert len(files) == 1 and files[0].title == "m.bin" and files[0].size == 14 and files[0].chunked
    assert [p.offset for p in files[0].pieces] == [0, 5, 10]


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([chunk(1, "m", 0, 5, 14), chunk(2, "m", 6, 8, 14)], "do not tile"),
        ([chunk(1, "m", 0, 5, 14), chunk(2, "m", 5, 5, 14)], "make 10 bytes; the file has 14"),
        ([chunk(1, "m", 0, 5, 10), chunk(2, "m", 5, 5, 11)], "disagree on the file's size"),
        ([layer(1, 5, **{CHUNK_OF: "m", CHUNK_OFFSET: "x", CHUNK_FILE_SIZE: "5"})], "malformed offset"),
    ],
)
def test_chunks_that_do_not_make_their_file_are_refused(layers: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        plan_files(manifest(*layers))


@pytest.mark.parametrize(
    "title",
    ["../escape.bin", "a/../../b", "/etc/passwd", "a//b", "./a", "a\\b", "C:/x", "nul\x00byte", ""],
)
def test_hostile_titles_are_refused(title: str) -> None:
    with pytest.raises(InvalidInputError, match="Refusing the layer title"):
        plan_files(manifest(titled(1, "fine.bin"), titled(2, title)))


def test_collisions_are_refused_including_a_file_that_is_also_a_folder() -> None:
    with pytest.raises(InvalidInputError, match="Two layers are titled 'x'"):
        plan_files(manifest(titled(1, "x"), titled(2, "x")))
    with pytest.raises(InvalidInputError, match="Two files are named 'm.bin'"):
        plan_files(manifest(titled(1, "m.bin"), chunk(2, "m.bin", 0, 10, 10)))
    with pytest.raises(InvalidInputError, match="'a' is both a file and a folder"):
        plan_files(manifest(titled(1, "a"), titled(2, "a/b")))


def test_include_keeps_matching_titles_and_must_match_something() -> None:
    found = plan_files(manifest(titled(1, "w/a.safetensors"), titled(2, "config.json")), "*.safetensors")
    assert [f.title for f in found] == ["w/a.safetensors"]
    with pytest.raises(InvalidInputError, match="No file of the artifact matches"):
        plan_files(manifest(titled(1, "a.bin")), "*.json")


def test_an_index_or_a_manifest_without_layers_is_not_pulled() -> None:
    with pytest.raises(InvalidInputError, match="image index"):
        plan_files(json.dumps({"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}).encode())
    with pytest.raises(InvalidInputError, match="no layers"):
        plan_files(manifest())
    assert safe_title("deep/er/file.txt") == "deep/er/file.txt"
