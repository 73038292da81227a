"""Gzip layers of a build, against the embedded strict ECR: resumed where a killed build left the
upload, not sent again when ECR holds them, and a file that changes between the measuring pass
and the upload fails the layer with nothing tagged."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from airflow_ecr_layers.core.build.gzip_layer import GzipLayer
from airflow_ecr_layers.core.build.image import build_image, files_of, plan_build
from airflow_ecr_layers.core.engine.resume import MemoryResumeStore, ResumePoint
from airflow_ecr_layers.core.errors import DigestMismatchError, InvalidInputError, SourceChangedError
from airflow_ecr_layers.core.sources.identity import Target
from airflow_ecr_layers.operators import BuildImageOperator
from airflow_ecr_layers.storage import PlainStorage, open_sources
from helpers import MiB

PART = 5 * MiB


def write_folder(root: Path, files: dict[str, bytes]) -> str:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return f"file://{root}/"


def test_a_gzip_layer_left_half_uploaded_is_continued_and_a_rebuild_sends_nothing(
    hook: Any, repo: str, stats: Any, tmp_path: Path
) -> None:
    noise = random.Random(4).randbytes(12 * MiB)  # incompressible: the gzip layer is 12 MiB too
    url = write_folder(tmp_path, {"model.bin": noise, "small.txt": b"s" * 1000})
    files = files_of(open_sources(url, PlainStorage(), allow_empty=True))
    (tar,) = [layer for layer in plan_build(files, big_file_size=MiB).layers if layer.files == 1 and layer.size > MiB]
    layer = GzipLayer(tar)
    identity = layer.identity()
    assert identity is not None and layer.size > 2 * PART
    session = hook.calls.initiate_layer_upload(repo)
    with layer.open_at(0, PART) as handle:
        hook.calls.upload_layer_part(session, 0, handle.read(PART))
    store = MemoryResumeStore()
    registry_id = hook.calls.repository_registry_id(repo)
    resume = ResumePoint.of(store, identity, layer.digest, Target(registry_id, hook.calls.region, repo), 0, layer.size)
    assert resume is not None
    resume.save(resume.record(registry_id, repo, session.upload_id, PART, layer.size, PART), force=True)

    result = build_image(
        hook.engine, repo, files, tags=["v1"], big_file_size=MiB, part_size=PART, resume=store, compress="gzip"
    )
    big = next(built for built in result.layers if built.digest == layer.digest)
    assert big.bytes_sent == layer.size - PART  # the first part was not sent again
    assert store.records == {}

    stats.reset()
    again = build_image(hook.engine, repo, files, tags=["v2"], big_file_size=MiB, part_size=PART, compress="gzip")
    assert again.image_digest == result.image_digest
    assert all(built.skipped and built.bytes_sent == 0 for built in again.layers)
    assert stats.repository(repo).initiate_layer_upload_calls == 0


def test_a_file_rewritten_between_measuring_and_uploading_fails_with_nothing_tagged(
    hook: Any, repo: str, ecr: Any, stats: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = write_folder(tmp_path, {f"f{i}.txt": b"%04d" % i for i in range(20)})
    files = files_of(open_sources(url, PlainStorage(), allow_empty=True))
    measured = GzipLayer.measured

    def measure_then_rewrite(self: GzipLayer) -> Any:
        found = measured(self)
        (tmp_path / "f7.txt").write_bytes(b"7777")  # same size, new bytes
        return found

    monkeypatch.setattr(GzipLayer, "measured", measure_then_rewrite)
    with pytest.raises((SourceChangedError, DigestMismatchError)):
        build_image(hook.engine, repo, files, tags=["v1"], compress="gzip")
    assert stats.repository(repo).put_image_calls == 0
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []


def test_the_operator_builds_gzip_layers_and_refuses_another_compression_before_writing(
    s3: Any, bucket: str, ecr: Any
) -> None:
    s3.put_object(Bucket=bucket, Key="data/a.txt", Body=b"a" * 5000)
    url = f"s3://{bucket}/data/"
    with pytest.raises(InvalidInputError, match="compress must be None or 'gzip'"):
        BuildImageOperator(
            task_id="build", source=url, repository_name="build/new", compress="zstd", create_repository=True
        ).execute({})
    assert ecr.describe_repositories()["repositories"] == []
    result = BuildImageOperator(
        task_id="build", source=url, repository_name="build/new", compress="gzip", create_repository=True
    ).execute({})
    (image,) = ecr.batch_get_image(
        repositoryName="build/new",
        imageIds=[{"imageDigest": result["image_digest"]}],
        acceptedMediaTypes=["application/vnd.oci.image.manifest.v1+json"],
    )["images"]
    (layer,) = json.loads(image["imageManifest"])["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip" and layer["size"] < 5000
