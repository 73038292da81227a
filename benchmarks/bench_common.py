"""The bench's sizes and names, and the steps several of its sections take.

The sizes of a full, ``--quick`` and ``--tiny`` run; the bucket, repositories and Airflow
connections the driver sets up; and the shared steps: seed S3, make a client or the hook, time
ours (the operator's upload path), push objects with ``push_artifact``, pick the median run.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
PART_SIZE = 20 * MiB
"""20971520 bytes: ECR's largest part, the part size every section pushes with."""
REGION = "us-east-1"
BUCKET = "bench"
REPOSITORY = "bench/layers"
S3_CONN_ID = "aws_default"
SINK_CONN_ID = "ecr_sink"
SLOW_SINK_CONN_ID = "ecr_sink_slow"
PART_DELAY_MS = 50
"""The slow sink's wait before answering each part: a stand-in for a real registry's round trip."""
MOTO_ECR_CONN_ID = "ecr_moto"
WARMUP_SIZE = 1 * MiB


@dataclass(frozen=True)
class Sizes:
    throughput: int
    """Bytes per floor/ours run to the sink."""
    moto: int
    """Bytes per run through moto's ECR (about 26 MiB/s)."""
    rss_small: int
    rss_large: int
    layer: int
    """Each of the four parallel layers."""
    repeats: int
    """Runs of each sink throughput figure; the median is reported."""
    repush_object: int
    """Each of the eight objects of the re-push prefix."""
    chunked_file: int
    """The one file pushed with and without chunk_size (chunks of a quarter of it)."""
    copy_layer: int
    """The one layer copied from moto's ECR to the sink."""
    small_files: int
    """How many 4 KiB objects the small-files section pushes."""
    build_small_files: int
    """How many 1 KiB objects the build section builds into an image."""
    build_big_file: int
    """The one object the build section builds as a tar layer and pushes as an artifact layer."""


FULL = Sizes(
    throughput=512 * MiB,
    moto=120 * MiB,
    rss_small=256 * MiB,
    rss_large=2048 * MiB,
    layer=256 * MiB,
    repeats=3,
    repush_object=64 * MiB,
    chunked_file=1024 * MiB,
    copy_layer=1024 * MiB,
    small_files=300,
    build_small_files=10_000,
    build_big_file=1024 * MiB,
)
QUICK = Sizes(
    throughput=160 * MiB,
    moto=40 * MiB,
    rss_small=64 * MiB,
    rss_large=512 * MiB,
    layer=64 * MiB,
    repeats=1,
    repush_object=16 * MiB,
    chunked_file=256 * MiB,
    copy_layer=256 * MiB,
    small_files=300,
    build_small_files=2_000,
    build_big_file=256 * MiB,
)
TINY = Sizes(
    throughput=2 * MiB,
    moto=1 * MiB,
    rss_small=1 * MiB,
    rss_large=2 * MiB,
    layer=1 * MiB,
    repeats=1,
    repush_object=1 * MiB,
    chunked_file=20 * MiB,  # four chunks of ECR's smallest part
    copy_layer=2 * MiB,
    small_files=12,
    build_small_files=50,  # file 42 is the one changed
    build_big_file=2 * MiB,
)
"""For the test suite: every code path, no meaningful figure."""


@dataclass(frozen=True)
class Summary:
    """What a section adds to the run's last lines."""

    fields: tuple[str, ...] = ()
    """``name=value`` pairs for the one ``bench:`` line."""
    line: str | None = None
    """A line of its own (``repush: ...``, ``copy: ...``)."""


# -- clients, hooks, artifacts in S3 --------------------------------------------------------
def boto_client(service_name: str, endpoint_url: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service_name, endpoint_url=endpoint_url, region_name=REGION, config=Config(**config) if config else None
    )


def seeding_s3(moto_url: str) -> Any:
    """An S3 client to seed moto with: moto joins a multipart upload in memory (a 2 GiB one can
    take a minute), so a long read timeout and no retry (a retried completion would fail)."""
    return boto_client("s3", moto_url, read_timeout=900, retries={"total_max_attempts": 1})


def seed(s3: Any, key: str, size: int, salt: str = "") -> str:
    """Put ``size`` pseudo-random bytes (the same for the same ``salt``) at ``s3://BUCKET/key``,
    a piece at a time (multipart: never all in memory); return the URL."""
    from airflow_ecr_layers.testing.seeding import seed_object

    seed_object(s3, BUCKET, key, size, salt=salt)
    return f"s3://{BUCKET}/{key}"


def seed_artifacts(moto_url: str, sizes: Iterable[int]) -> dict[int, str]:
    """The bucket, the moto repository, and one S3 object of each of ``sizes``: their URLs by size."""
    s3 = seeding_s3(moto_url)
    s3.create_bucket(Bucket=BUCKET)
    boto_client("ecr", moto_url).create_repository(repositoryName=REPOSITORY)
    return {size: seed(s3, f"artifact-{size}", size) for size in sorted(set(sizes))}


def pattern_bytes(index: int, size: int) -> bytes:
    """``size`` incompressible-looking bytes in memory, different for each ``index`` (one shake_256 call)."""
    return hashlib.shake_256(index.to_bytes(8, "big")).digest(size)


def ecr_hook(conn_id: str, fast_upload: bool) -> Any:
    from airflow_ecr_layers.hooks import EcrLayersHook

    return EcrLayersHook(aws_conn_id=conn_id, fast_upload=fast_upload)


# -- what several sections measure ----------------------------------------------------------
def ours(hook: Any, url: str) -> float:
    """Seconds for ``UploadLayerPartsOperator.execute``'s two steps: open the source, upload the parts."""
    from airflow_ecr_layers.object_storage import open_source

    session = hook.calls.initiate_layer_upload(REPOSITORY)
    started = time.perf_counter()
    source = open_source(url, S3_CONN_ID)
    uploaded = hook.engine.upload_parts(session, source, part_size=PART_SIZE)
    elapsed = time.perf_counter() - started
    hook.engine.complete_upload(uploaded.session, uploaded.digest, uploaded.size)
    return elapsed


@dataclass(frozen=True)
class Push:
    label: str
    seconds: float
    totals: dict[str, int]


def push_objects(
    label: str,
    conn_id: str,
    url: str,
    repository: str,
    tags: list[str],
    *,
    chunk_size: int | None = None,
    max_concurrency: int = 2,
) -> Push:
    """One ``push_artifact`` of what ``url`` (a prefix or an object) stands for, as the operator does it."""
    from airflow_ecr_layers.core.oci.layers import layers_of
    from airflow_ecr_layers.core.push.artifact import push_artifact
    from airflow_ecr_layers.object_storage import open_sources

    engine = ecr_hook(conn_id, fast_upload=True).engine
    started = time.perf_counter()
    layers = layers_of(open_sources(url, S3_CONN_ID), "application/octet-stream", chunk_size=chunk_size)
    result = push_artifact(engine, repository, layers, tags=tags, part_size=PART_SIZE, max_concurrency=max_concurrency)
    return Push(label, time.perf_counter() - started, result.totals)


# -- small helpers --------------------------------------------------------------------------
def mib_per_s(size: int, seconds: float) -> float:
    return size / MiB / seconds


Run = TypeVar("Run")


def median_run(runs: Sequence[Run], key: Callable[[Run], float]) -> Run:
    """The median of ``runs`` by ``key`` (the upper one of an even count), whole: the figures
    taken during that run come with it."""
    return sorted(runs, key=key)[len(runs) // 2]
