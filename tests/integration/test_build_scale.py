"""100,000 files of 1 KiB against the embedded strict ECR: built, they make one image of a few dozen
tar layers and a small manifest, re-built they are neither read nor sent; pushed as an ORAS-style
artifact (one layer per file) they are refused before anything is written, with a message that
points at ``build``."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, BinaryIO

import pytest

from airflow_ecr_layers.core.build.image import build_image, files_of
from airflow_ecr_layers.core.build.records import record_tag
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import MAX_LAYERS, MiB
from airflow_ecr_layers.core.oci.layers import LayerSpec
from airflow_ecr_layers.core.oci.manifest import DEFAULT_LAYER_MEDIA_TYPE
from airflow_ecr_layers.core.push.artifact import push_artifact
from airflow_ecr_layers.core.sources.identity import SourceIdentity

FILES = 100_000
FILE_SIZE = 1024
MAX_MANIFEST = 4 * MiB
"""ECR refuses an image manifest over 4 MiB."""


@dataclass(frozen=True)
class Generated:
    """A 1 KiB file made on demand (its number, then filler): 100,000 of them hold no memory."""

    index: int

    @property
    def title(self) -> str:
        return f"shard-{self.index % 50:02d}/part-{self.index // 50 % 20:02d}/file-{self.index:06d}.bin"

    @property
    def name(self) -> str:
        return f"mem://{self.title}"

    @property
    def size(self) -> int:
        return FILE_SIZE

    def identity(self) -> SourceIdentity:
        return SourceIdentity(self.name, FILE_SIZE, etag=f'"{self.index:032x}"')

    def stored_sha256(self) -> str | None:
        return None

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        data = (b"%06d\n" % self.index).ljust(FILE_SIZE, b".")
        handle = io.BytesIO(data)
        handle.seek(offset)
        return handle


@pytest.fixture(scope="module")
def sources() -> list[Generated]:
    return [Generated(i) for i in range(FILES)]


def test_100_000_small_files_build_into_one_image_far_under_ecr_s_limits(
    hook: Any, repo: str, ecr: Any, stats: Any, sources: list[Generated]
) -> None:
    built = build_image(hook.engine, repo, files_of(sources), path="/data", tags=["v1"], max_concurrency=4)
    assert built.totals["files"] == FILES
    assert 10 <= len(built.layers) <= 200 < MAX_LAYERS  # no base: ECR's ~500 leaves room for one
    (image,) = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"]
    assert image["imageId"]["imageDigest"] == built.image_digest
    assert len(json.loads(image["imageManifest"])["layers"]) == len(built.layers)
    assert built.manifest_size == len(image["imageManifest"].encode()) < MAX_MANIFEST // 100
    (record,) = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": record_tag(built.image_digest)}])[
        "images"
    ]
    assert len(record["imageManifest"].encode()) < MAX_MANIFEST // 20

    stats.reset()
    again = build_image(hook.engine, repo, files_of(sources), path="/data", tags=["v1"], max_concurrency=4)
    assert again.image_digest == built.image_digest and again.totals["reused"] == len(again.layers)
    assert again.totals["bytes_read"] == 0 and stats.repository(repo).upload_layer_part_calls == 0


def test_the_same_files_as_an_artifact_are_refused_before_anything_is_written(
    hook: Any, repo: str, ecr: Any, stats: Any, sources: list[Generated]
) -> None:
    layers = [LayerSpec(source, DEFAULT_LAYER_MEDIA_TYPE, title=source.title) for source in sources]
    with pytest.raises(InvalidInputError, match=r"at most 500.*`airflow-ecr-layers build`"):
        push_artifact(hook.engine, repo, layers, tags=["v1"])
    counts = stats.repository(repo)
    assert counts.initiate_layer_upload_calls == counts.put_image_calls == 0
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []
