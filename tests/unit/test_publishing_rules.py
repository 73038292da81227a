"""The rules of publishing only what changed: identity tokens, recorded layers, chunks, S3 checksums."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.oci.layers import chunk_title, layers_of, validate_chunk_size
from airflow_ecr_layers.core.sources.blobs import BytesSource
from airflow_ecr_layers.core.sources.identity import (
    CHUNK_FILE_SIZE,
    CHUNK_OF,
    CHUNK_OFFSET,
    IDENTITY,
    KEYING_FIELDS,
    SOURCE_FIELDS,
    RecordedLayer,
    SourceIdentity,
    Target,
    recorded_layers,
)
from helpers import MiB

S3 = SourceIdentity("s3://bucket/models/a.bin", 100, '"etag-1"', "v1")
DIGEST = "sha256:" + "a" * 64
HOME = Target("123456789012", "us-east-1", "team/models")


def test_the_token_changes_with_every_field_the_registry_region_repository_and_the_range() -> None:
    token = S3.token(HOME, 0, 100)
    assert token.startswith("sha256:") and token == S3.token(HOME, 0, 100)
    others = [
        replace(S3, url="s3://bucket/models/b.bin").token(HOME, 0, 100),
        replace(S3, size=101).token(HOME, 0, 100),
        replace(S3, etag='"etag-2"').token(HOME, 0, 100),
        replace(S3, version_id="v2").token(HOME, 0, 100),
        replace(S3, mtime_ns=1).token(HOME, 0, 100),
        replace(S3, inode=1).token(HOME, 0, 100),
        replace(S3, device=1).token(HOME, 0, 100),
        replace(S3, ctime_ns=1).token(HOME, 0, 100),
        S3.token(replace(HOME, registry_id="210987654321"), 0, 100),  # another registry
        S3.token(replace(HOME, region="eu-west-1"), 0, 100),  # the same-named repository in another region
        S3.token(replace(HOME, repository_name="team/other"), 0, 100),  # another repository
        S3.token(HOME, 50, 50),  # another range
    ]
    assert token not in others and len(set(others)) == len(others)


def test_the_fields_are_recorded_in_clear_only_when_asked_and_never_those_that_key_the_token() -> None:
    hidden = S3.annotations(HOME, 0, 100)
    assert set(hidden) == {IDENTITY}
    assert "bucket" not in json.dumps(hidden)
    local = SourceIdentity("file:///data/a.bin", 100, mtime_ns=5, inode=7, device=9, ctime_ns=11)
    clear = {**S3.annotations(HOME, 0, 100, in_clear=True), **local.annotations(HOME, 0, 100, in_clear=True)}
    assert clear[SOURCE_FIELDS["url"]] == "file:///data/a.bin" and clear[SOURCE_FIELDS["mtime_ns"]] == "5"
    in_clear = {key: value for key, value in clear.items() if key != IDENTITY}
    assert in_clear == {
        SOURCE_FIELDS["url"]: "file:///data/a.bin",
        SOURCE_FIELDS["size"]: "100",
        SOURCE_FIELDS["mtime_ns"]: "5",
    }
    assert set(KEYING_FIELDS) == {"etag", "version_id", "inode", "device", "ctime_ns"}
    assert not set(KEYING_FIELDS) & set(SOURCE_FIELDS)


def manifest(*layers: Any) -> bytes:
    return json.dumps({"schemaVersion": 2, "layers": list(layers)}).encode()


def test_recorded_layers_are_read_from_well_formed_descriptors_only() -> None:
    good = {"digest": DIGEST, "size": 100, "annotations": {IDENTITY: "sha256:" + "1" * 64}}
    found = recorded_layers(
        manifest(
            good,
            {"digest": DIGEST, "size": 1},  # no token
            {"digest": "md5:x", "size": 1, "annotations": {IDENTITY: "t2"}},  # not a sha256 digest
            {"digest": DIGEST, "size": True, "annotations": {IDENTITY: "t3"}},  # not a size
            "not a descriptor",
        )
    )
    assert found == {"sha256:" + "1" * 64: RecordedLayer(DIGEST, 100)}
    assert recorded_layers(b"not json") == {} and recorded_layers(b'{"manifests": []}') == {}
    assert recorded_layers(b"[1, 2]") == {}


class Named(BytesSource):
    @property
    def title(self) -> str:
        return self.name

    def identity(self) -> SourceIdentity:
        return SourceIdentity(f"s3://b/{self.name}", self.size, '"e"')

    def stored_sha256(self) -> None:
        return None


def test_a_file_larger_than_the_chunk_size_becomes_consecutive_titled_chunks() -> None:
    data = b"x" * (12 * MiB + 5)
    layers = layers_of([Named(data, "model.bin"), Named(b"small", "small.txt")], "application/x", chunk_size=5 * MiB)
    assert [layer.title for layer in layers] == [
        "model.bin.chunk-0000",
        "model.bin.chunk-0001",
        "model.bin.chunk-0002",
        "small.txt",
    ]
    assert [(layer.offset, layer.source.size) for layer in layers[:3]] == [
        (0, 5 * MiB),
        (5 * MiB, 5 * MiB),
        (10 * MiB, 2 * MiB + 5),
    ]
    assert layers[1].annotations == {CHUNK_OF: "model.bin", CHUNK_OFFSET: str(5 * MiB), CHUNK_FILE_SIZE: str(len(data))}
    assert all(layer.identity == layers[0].identity for layer in layers[:3])
    assert not layers[1].whole_object and layers[3].whole_object
    with layers[2].source.open_at(0, MiB) as handle:
        assert handle.read() == data[10 * MiB :]


def test_chunk_titles_sort_in_file_order() -> None:
    titles = [chunk_title("f", index, 12_345) for index in range(12_345)]
    assert titles == sorted(titles) and titles[0] == "f.chunk-00000"
    assert chunk_title("f", 3, 10) == "f.chunk-0003"


@pytest.mark.parametrize("bad", [0, MiB, 5 * MiB - 1, 52_001 * MiB, "big", 5.5, True])
def test_bad_chunk_sizes_are_refused(bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="chunk_size"):
        validate_chunk_size(bad)
    assert validate_chunk_size(None) is None and validate_chunk_size(5 * MiB) == 5 * MiB


def test_expected_digest_applies_to_one_whole_source_only() -> None:
    with pytest.raises(InvalidInputError, match="single source; 2 sources"):
        layers_of([Named(b"a", "a"), Named(b"b", "b")], "application/x", expected_digest=DIGEST)
    with pytest.raises(InvalidInputError, match="cannot check chunks"):
        layers_of([Named(b"a" * (6 * MiB), "a")], "application/x", chunk_size=5 * MiB, expected_digest=DIGEST)


def head(value: bytes | str, *, etag: str = '"e"', kind: str | None = None) -> dict[str, Any]:
    checksum = value if isinstance(value, str) else base64.b64encode(hashlib.sha256(value).digest()).decode()
    answer = {"ChecksumSHA256": checksum, "ETag": etag}
    if kind:
        answer["ChecksumType"] = kind
    return answer


def test_only_a_full_object_checksum_of_the_object_listed_is_taken() -> None:
    from airflow_ecr_layers.storage import full_object_sha256

    digest = "sha256:" + hashlib.sha256(b"data").hexdigest()
    assert full_object_sha256(head(b"data"), '"e"') == digest  # single-part upload, older answer
    assert full_object_sha256(head(b"data", kind="FULL_OBJECT", etag='"m-3"'), '"m-3"') == digest
    assert full_object_sha256(head(b"data", kind="COMPOSITE", etag='"m-3"'), '"m-3"') is None
    assert full_object_sha256(head(b"data", etag='"m-3"'), '"m-3"') is None  # multipart, no type: composite
    assert full_object_sha256(head("abc-3"), '"e"') is None
    assert full_object_sha256(head(b"data", etag='"other"'), '"e"') is None  # overwritten since listed
    assert full_object_sha256(head("not base64!"), '"e"') is None
    assert full_object_sha256({"ETag": '"e"'}, '"e"') is None


def test_prefixes_and_globs() -> None:
    from airflow_ecr_layers.storage import _static_part, is_prefix

    assert is_prefix("s3://b/models/") and is_prefix("s3://b/m/*.bin") and is_prefix("file:///tmp/**/x")
    assert not is_prefix("s3://b/models/model.bin")
    assert _static_part("b/models/*.bin") == "b/models/"
    assert _static_part("b/models/**/x/*.bin") == "b/models/"
    assert _static_part("b/m?dels/x") == "b/"
