"""Publishing on a schedule: prefix sources, reuse by source identity, S3 checksums, hash-first, chunks.

Every case counts, on the strict embedded server, the GetObject requests each source
got (what was read) and the UploadLayerPart calls (what was sent).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.errors import InvalidInputError, SourceError
from airflow_ecr_layers.core.sources.identity import (
    CHUNK_FILE_SIZE,
    CHUNK_OF,
    CHUNK_OFFSET,
    IDENTITY,
    SOURCE_FIELDS,
)
from airflow_ecr_layers.object_storage import list_prefix
from airflow_ecr_layers.operators import PushArtifactOperator
from airflow_ecr_layers.testing.s3_reads import S3_READS
from airflow_ecr_layers.testing.strict_ecr import forget_layer
from helpers import MiB, pattern_bytes, sha256

PART = 5 * MiB
PREFIX = "models/run-42/"
OBJECTS = {
    "config.json": b'{"layers": 12}',
    "tokenizer.json": pattern_bytes(300_000, seed=1),
    "weights/a.bin": pattern_bytes(6 * MiB + 11, seed=2),
    "weights/b.bin": pattern_bytes(6 * MiB + 22, seed=3),
}
TITLES = sorted(OBJECTS)


@pytest.fixture
def prefix(put_object: Callable[[str, bytes], str]) -> str:
    for name, data in OBJECTS.items():
        put_object(PREFIX + name, data)
    put_object("models/run-43/other.bin", b"not under the prefix")
    put_object(PREFIX.rstrip("/"), b"")  # a "directory marker" some tools write: not a layer
    return f"s3://artifacts/{PREFIX}"


def push(source: Any, repo: str, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("tags", ["v1"])
    operator = PushArtifactOperator(
        task_id="push", source=source, repository_name=repo, part_size=PART, aws_conn_id="aws_default", **kwargs
    )
    result: dict[str, Any] = operator.execute({})
    return result


def manifest_of(ecr: Any, repo: str, tag: str = "v1") -> dict[str, Any]:
    image = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": tag}])["images"][0]
    body: dict[str, Any] = json.loads(image["imageManifest"])
    return body


def reads_under(prefix: str = "models/") -> dict[str, int]:
    return {name.split("/", 1)[1]: count for name, count in S3_READS.under("artifacts", prefix).items()}


def parts(size: int) -> int:
    return -(-size // PART)


def test_a_prefix_is_one_layer_per_object_titled_relative_to_it(prefix: str, repo: str, ecr: Any, stats: Any) -> None:
    result = push(prefix, repo)
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in result["layers"]] == TITLES
    assert [layer["digest"] for layer in result["layers"]] == [sha256(OBJECTS[t]) for t in TITLES]
    read = reads_under()
    assert set(read) == {PREFIX + name for name in OBJECTS}  # run-43 and the marker were not read
    assert all(read[PREFIX + name] == parts(len(data)) for name, data in OBJECTS.items())  # one GET a part
    sent = stats.repository(repo)
    assert sent.upload_layer_part_calls == sum(parts(len(d)) for d in OBJECTS.values()) + 1  # + the empty config
    assert result["totals"] == {
        "layers": 4,
        "reused": 0,
        "skipped": 0,
        "bytes_read": sum(map(len, OBJECTS.values())),
        "bytes_sent": sum(map(len, OBJECTS.values())),
    }
    manifest = manifest_of(ecr, repo)
    assert [layer["digest"] for layer in manifest["layers"]] == [sha256(OBJECTS[t]) for t in TITLES]
    assert all(layer["annotations"][IDENTITY].startswith("sha256:") for layer in manifest["layers"])


def test_a_repush_of_an_unchanged_prefix_reads_and_sends_nothing(
    prefix: str, repo: str, ecr: Any, stats: Any, caplog: pytest.LogCaptureFixture
) -> None:
    first = push(prefix, repo)
    S3_READS.reset()
    stats.reset()
    with caplog.at_level(logging.INFO, logger="airflow_ecr_layers"):
        second = push(prefix, repo)
    assert S3_READS.total() == 0
    assert stats.repository(repo).upload_layer_part_calls == 0
    assert all(layer["reused"] and layer["skipped"] for layer in second["layers"])
    assert all(layer["bytes_read"] == layer["bytes_sent"] == 0 for layer in second["layers"])
    assert second["totals"] == {"layers": 4, "reused": 4, "skipped": 4, "bytes_read": 0, "bytes_sent": 0}
    assert second["image_digest"] == first["image_digest"]  # the same manifest, byte for byte
    assert "reused 4 of 4 layers; read 0.0 MiB, sent 0.0 MiB" in caplog.text


def test_one_object_overwritten_with_the_same_size_is_the_only_one_read_and_sent(
    prefix: str, repo: str, ecr: Any, stats: Any, put_object: Callable[[str, bytes], str]
) -> None:
    push(prefix, repo)
    changed = pattern_bytes(len(OBJECTS["weights/a.bin"]), seed=99)
    put_object(PREFIX + "weights/a.bin", changed)
    S3_READS.reset()
    stats.reset()
    result = push(prefix, repo)
    assert reads_under() == {PREFIX + "weights/a.bin": parts(len(changed))}
    assert stats.repository(repo).upload_layer_part_calls == parts(len(changed))
    by_title = {layer["annotations"]["org.opencontainers.image.title"]: layer for layer in result["layers"]}
    assert by_title["weights/a.bin"]["digest"] == sha256(changed)
    assert (by_title["weights/a.bin"]["reused"], by_title["weights/a.bin"]["bytes_sent"]) == (False, len(changed))
    assert [by_title[t]["reused"] for t in TITLES if t != "weights/a.bin"] == [True, True, True]
    assert result["totals"]["reused"] == 3
    assert result["totals"]["bytes_read"] == result["totals"]["bytes_sent"] == len(changed)


def test_a_recorded_layer_ecr_no_longer_holds_is_read_and_uploaded(
    prefix: str, repo: str, ecr: Any, stats: Any, caplog: pytest.LogCaptureFixture
) -> None:
    push(prefix, repo)
    gone = sha256(OBJECTS["weights/b.bin"])
    forget_layer(repo, gone)
    S3_READS.reset()
    stats.reset()
    with caplog.at_level(logging.INFO, logger="airflow_ecr_layers"):
        result = push(prefix, repo)
    assert reads_under() == {PREFIX + "weights/b.bin": parts(len(OBJECTS["weights/b.bin"]))}
    assert stats.repository(repo).layers_completed == 1
    assert f"the digest recorded last time, {gone}, is not usable in ECR" in caplog.text
    assert result["totals"]["reused"] == 3
    available = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[gone])["layers"]
    assert available[0]["layerAvailability"] == "AVAILABLE"


def test_reuse_off_and_reuse_from_another_tag(prefix: str, repo: str, stats: Any) -> None:
    push(prefix, repo, tags=["nightly"])
    S3_READS.reset()
    fresh = push(prefix, repo, tags=["v2"], reuse=False)  # reads all, uploads nothing new (LayerAlreadyExists)
    assert set(reads_under()) == {PREFIX + name for name in OBJECTS}
    assert fresh["totals"]["reused"] == 0
    S3_READS.reset()
    first_of_v3 = push(prefix, repo, tags=["v3"])  # its first tag names no image yet: nothing to reuse
    assert first_of_v3["totals"]["reused"] == 0
    S3_READS.reset()
    from_nightly = push(prefix, repo, tags=["v4"], reuse_from="nightly")
    assert S3_READS.total() == 0 and from_nightly["totals"]["reused"] == 4


def test_annotations_recorded_for_another_repository_are_not_trusted(
    prefix: str, repo: str, ecr: Any, put_object: Callable[[str, bytes], str]
) -> None:
    """A manifest copied from another repository carries that repository's tokens: no match."""
    ecr.create_repository(repositoryName="team/copy")
    push(prefix, repo)
    push(prefix, "team/copy", tags=["own"])  # the blobs are in team/copy too
    copied = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"][0]["imageManifest"]
    ecr.put_image(
        repositoryName="team/copy", imageManifest=copied, imageTag="copied", imageDigest=sha256(copied.encode())
    )
    S3_READS.reset()
    result = push(prefix, "team/copy", tags=["next"], reuse_from="copied")
    assert result["totals"]["reused"] == 0
    assert set(reads_under()) == {PREFIX + name for name in OBJECTS}


def test_the_identity_is_a_digest_unless_recorded_in_clear(prefix: str, repo: str, ecr: Any) -> None:
    push(prefix, repo)
    text = json.dumps(manifest_of(ecr, repo))
    assert "artifacts" not in text and "run-42" not in text.replace("weights/", "")
    push(prefix, repo, tags=["clear"], record_source=True)
    layer = manifest_of(ecr, repo, "clear")["layers"][0]["annotations"]
    assert layer[SOURCE_FIELDS["url"]] == f"s3://artifacts/{PREFIX}config.json"
    assert layer[SOURCE_FIELDS["size"]] == str(len(OBJECTS["config.json"]))
    etag = hashlib.md5(OBJECTS["config.json"]).hexdigest()
    assert etag not in json.dumps(layer)  # the ETag keys the identity's digest: never in clear


# -- S3's own full-object SHA-256, and hash-first ------------------------------------------------


def put_with_checksum(s3: Any, key: str, data: bytes) -> str:
    s3.put_object(Bucket="artifacts", Key=key, Body=data, ChecksumAlgorithm="SHA256")
    return f"s3://artifacts/{key}"


def test_s3_full_object_checksum_skips_a_blob_ecr_holds_without_reading(
    s3: Any, bucket: str, repo: str, stats: Any
) -> None:
    data = pattern_bytes(6 * MiB + 5, seed=7)
    push(put_with_checksum(s3, "a/model.bin", data), repo, tags=["a"], reuse=False)
    copy = put_with_checksum(s3, "b/model.bin", data)  # another object: no recorded identity matches
    S3_READS.reset()
    stats.reset()
    result = push(copy, repo, tags=["b"])
    assert S3_READS.of("artifacts", "b/model.bin") == 0
    assert stats.repository(repo).upload_layer_part_calls == 0
    layer = result["layers"][0]
    assert (layer["digest"], layer["skipped"], layer["reused"], layer["bytes_read"]) == (sha256(data), True, False, 0)


def test_s3_checksum_of_a_blob_ecr_lacks_is_the_uploads_expected_digest(s3: Any, bucket: str, repo: str) -> None:
    data = pattern_bytes(6 * MiB + 5, seed=8)
    result = push(put_with_checksum(s3, "c/model.bin", data), repo)
    assert result["layers"][0]["digest"] == sha256(data)
    assert S3_READS.of("artifacts", "c/model.bin") == parts(len(data))


def test_a_composite_multipart_checksum_is_not_taken_for_the_digest(s3: Any, bucket: str, repo: str) -> None:
    data = pattern_bytes(11 * MiB, seed=9)
    push(put_with_checksum(s3, "d/one.bin", data), repo, tags=["one"], reuse=False)
    upload = s3.create_multipart_upload(Bucket="artifacts", Key="d/multi.bin", ChecksumAlgorithm="SHA256")
    pieces = []
    for number, start in enumerate(range(0, len(data), 6 * MiB), start=1):
        answer = s3.upload_part(
            Bucket="artifacts",
            Key="d/multi.bin",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data[start : start + 6 * MiB],
            ChecksumAlgorithm="SHA256",
        )
        pieces.append({"ETag": answer["ETag"], "PartNumber": number, "ChecksumSHA256": answer["ChecksumSHA256"]})
    s3.complete_multipart_upload(
        Bucket="artifacts", Key="d/multi.bin", UploadId=upload["UploadId"], MultipartUpload={"Parts": pieces}
    )
    head = s3.head_object(Bucket="artifacts", Key="d/multi.bin", ChecksumMode="ENABLED")
    assert base64.b64decode(head["ChecksumSHA256"]) != hashlib.sha256(data).digest()  # composite
    S3_READS.reset()
    result = push("s3://artifacts/d/multi.bin", repo, tags=["multi"])
    assert S3_READS.of("artifacts", "d/multi.bin") == parts(len(data))  # read: the checksum told nothing
    assert result["layers"][0]["digest"] == sha256(data)


def test_hash_first_reads_once_and_sends_only_what_ecr_lacks(prefix: str, repo: str, stats: Any) -> None:
    push(prefix, repo)
    stats.reset()
    S3_READS.reset()
    result = push(prefix, repo, tags=["v2"], reuse=False, hash_first=True)
    assert stats.repository(repo).upload_layer_part_calls == 0
    assert set(reads_under()) == {PREFIX + name for name in OBJECTS}
    assert result["totals"] == {
        "layers": 4,
        "reused": 0,
        "skipped": 4,
        "bytes_read": sum(map(len, OBJECTS.values())),
        "bytes_sent": 0,
    }


# -- chunked layers --------------------------------------------------------------------------------


@pytest.fixture
def overlaps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[float, float]]]:
    """The (start, end) of every blob push, to see that chunks went up side by side."""
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()
    real = EcrTransfer.push_blob

    def timed(self: EcrTransfer, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return real(self, *args, **kwargs)
        finally:
            with lock:
                spans.append((started, time.monotonic()))

    monkeypatch.setattr(EcrTransfer, "push_blob", timed)
    yield spans


def test_a_three_chunk_file_goes_up_in_parallel_and_its_chunks_put_it_back_together(
    put_object: Callable[[str, bytes], str], repo: str, ecr: Any, overlaps: list[tuple[float, float]]
) -> None:
    data = pattern_bytes(16 * MiB + 3, seed=5)
    url = put_object("big/model.bin", data)
    chunk = 6 * MiB
    result = push(url, repo, chunk_size=chunk, max_concurrency=3)
    layers = manifest_of(ecr, repo)["layers"]
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in layers] == [
        "model.bin.chunk-0000",
        "model.bin.chunk-0001",
        "model.bin.chunk-0002",
    ]
    assert {layer["annotations"][CHUNK_OF] for layer in layers} == {"model.bin"}
    assert {layer["annotations"][CHUNK_FILE_SIZE] for layer in layers} == {str(len(data))}
    # put back together: each chunk's digest is the sha256 of its range; the ranges tile the file
    rebuilt = b""
    for layer in sorted(layers, key=lambda layer: int(layer["annotations"][CHUNK_OFFSET])):
        offset = int(layer["annotations"][CHUNK_OFFSET])
        assert offset == len(rebuilt)
        piece = data[offset : offset + layer["size"]]
        assert layer["digest"] == sha256(piece)
        rebuilt += piece
    assert rebuilt == data
    chunk_spans = sorted(overlaps)[:3]  # the empty config's push comes after them
    assert max(s for s, _ in chunk_spans) < min(e for _, e in chunk_spans), "the chunks did not overlap"
    S3_READS.reset()
    again = push(url, repo, chunk_size=chunk, max_concurrency=3)
    assert S3_READS.total() == 0 and again["totals"]["reused"] == 3
    assert again["image_digest"] == result["image_digest"]


def test_chunking_lifts_the_cap_on_one_layer(put_object: Callable[[str, bytes], str], repo: str, stats: Any) -> None:
    """Without chunk_size a file over ECR's 52,000 MiB layer cap is refused; with it, its chunks
    are planned under the cap (refused here only for want of a real 51 GiB object)."""
    from airflow_ecr_layers.core.engine.planning import plan_parts
    from airflow_ecr_layers.core.limits import MAX_LAYER_SIZE
    from airflow_ecr_layers.core.oci.layers import layers_of

    class Huge:
        name = title = "huge.bin"
        size = MAX_LAYER_SIZE + 1

        def identity(self) -> None:
            return None

        def stored_sha256(self) -> None:
            return None

        def open_at(self, offset: int, block_size: int) -> Any:
            raise AssertionError("nothing may be read while planning")

    with pytest.raises(SourceError, match="maximum layer size"):
        plan_parts(Huge.size)
    chunks = layers_of([Huge()], "application/octet-stream", chunk_size=1024 * MiB)
    assert len(chunks) == 51 and sum(layer.source.size for layer in chunks) == Huge.size
    for layer in chunks:
        plan_parts(layer.source.size)


# -- refused before anything is written ------------------------------------------------------------


def test_an_empty_prefix_and_a_glob_matching_nothing_are_refused(bucket: str, repo: str, ecr: Any, stats: Any) -> None:
    with pytest.raises(SourceError, match="matches no objects"):
        push("s3://artifacts/nothing/here/", repo)
    with pytest.raises(SourceError, match="matches no objects"):
        push("s3://artifacts/models/*.safetensors", repo)
    assert stats.total().initiate_layer_upload_calls == 0
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []


def test_too_many_layers_and_colliding_titles_are_refused(
    prefix: str,
    repo: str,
    ecr: Any,
    stats: Any,
    monkeypatch: pytest.MonkeyPatch,
    put_object: Callable[[str, bytes], str],
) -> None:
    monkeypatch.setattr("airflow_ecr_layers.core.oci.layers.MAX_LAYERS", 3)
    with pytest.raises(InvalidInputError, match="4 layers: an artifact may have at most 3.*build"):
        push(prefix, repo)
    monkeypatch.undo()
    other = put_object("elsewhere/config.json", b"{}")
    with pytest.raises(InvalidInputError, match="titles collide: 'config.json'"):
        push([prefix, other], repo)
    with pytest.raises(InvalidInputError, match="titles collide"):  # a file named like a chunk
        put_object("c/x.bin.chunk-0000", b"y")
        push(
            ["s3://artifacts/c/x.bin.chunk-0000", put_object("c/x.bin", pattern_bytes(11 * MiB))], repo, chunk_size=PART
        )
    assert stats.total().initiate_layer_upload_calls == 0
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []


def test_empty_objects_under_a_prefix_are_refused_naming_them(
    put_object: Callable[[str, bytes], str], repo: str, stats: Any
) -> None:
    put_object("p/data.bin", b"data")
    put_object("p/empty.txt", b"")
    with pytest.raises(SourceError, match="empty objects.*p/empty.txt"):
        push("s3://artifacts/p/", repo)
    assert stats.total().initiate_layer_upload_calls == 0


def test_globs_and_the_fan_out_helper(prefix: str, repo: str) -> None:
    result = push(f"s3://artifacts/{PREFIX}**/*.bin", repo)
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in result["layers"]] == [
        "weights/a.bin",
        "weights/b.bin",
    ]
    result = push(f"s3://artifacts/{PREFIX}*.json", repo, tags=["json"])
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in result["layers"]] == [
        "config.json",
        "tokenizer.json",
    ]
    assert list_prefix(prefix, "aws_default") == [f"s3://artifacts/{PREFIX}{name}" for name in TITLES]


def test_a_local_directory_prefix_is_reused_by_path_size_and_mtime(tmp_path: Any, repo: str, stats: Any) -> None:
    folder = tmp_path / "bundle"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(pattern_bytes(6 * MiB, seed=1))
    (folder / "sub" / "b.txt").write_bytes(b"hello")
    first = push(f"file://{folder}/", repo)
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in first["layers"]] == [
        "a.bin",
        "sub/b.txt",
    ]
    stats.reset()
    again = push(f"file://{folder}/", repo)
    assert again["totals"]["reused"] == 2 and stats.repository(repo).upload_layer_part_calls == 0
    (folder / "sub" / "b.txt").write_bytes(b"HELLO")  # same size, new mtime_ns
    changed = push(f"file://{folder}/", repo)
    assert changed["totals"]["reused"] == 1 and changed["layers"][1]["digest"] == sha256(b"HELLO")
