"""The ``copy`` section: a layer copied from moto's ECR to the sink, against a push of the same bytes.

The copy runs in a fresh process with its RSS sampled, after a warm-up copy of a small image; the
push goes from S3 to the sink. Its line: ``copy: mib_s=... vs_push=... rss_growth_parts=...``
(the copy's MiB/s, that over the push's, and the copy's peak RSS growth over the part size).
"""

from __future__ import annotations

import time

from bench_common import (
    MOTO_ECR_CONN_ID,
    PART_SIZE,
    REPOSITORY,
    SINK_CONN_ID,
    WARMUP_SIZE,
    MiB,
    Sizes,
    Summary,
    boto_client,
    ecr_hook,
    mib_per_s,
    ours,
    pattern_bytes,
    push_objects,
    seed,
    seeding_s3,
)
from bench_processes import RssSampler, Servers, run_child

COPY_REPOSITORY = "bench/copy-source"


def seed_source(sizes: Sizes, moto_url: str) -> str:
    """A ``copy_layer``-byte artifact in moto's ECR (pushed from its S3) tagged ``v1``, and a
    small one tagged ``warmup``; returns the S3 URL of the large one."""
    from airflow_ecr_layers.core.oci.layers import LayerSpec
    from airflow_ecr_layers.core.push.artifact import push_artifact
    from airflow_ecr_layers.core.sources.blobs import BytesSource

    url = seed(seeding_s3(moto_url), "copy/layer.bin", sizes.copy_layer, salt="copy-")
    boto_client("ecr", moto_url).create_repository(repositoryName=COPY_REPOSITORY)
    push_objects("copy source", MOTO_ECR_CONN_ID, url, COPY_REPOSITORY, ["v1"])
    engine = ecr_hook(MOTO_ECR_CONN_ID, fast_upload=True).engine
    small = BytesSource(pattern_bytes(7, WARMUP_SIZE), "warm-up")
    push_artifact(engine, COPY_REPOSITORY, [LayerSpec(small, "application/octet-stream")], tags=["warmup"])
    return url


def child(warmup: str) -> dict[str, float]:
    """In a fresh process: copy the seeded image from moto's ECR to the sink while sampling
    RSS, after a warm-up copy of ``warmup`` (a tag of a small image). JSON for the parent."""
    from airflow_ecr_layers.core.ecr.references import ImageReference
    from airflow_ecr_layers.core.readback.copy import copy_image

    source = ecr_hook(MOTO_ECR_CONN_ID, fast_upload=True).engine
    target = ecr_hook(SINK_CONN_ID, fast_upload=True).engine
    copy_image(source, ImageReference(COPY_REPOSITORY, tag=warmup), target, REPOSITORY, part_size=PART_SIZE)
    with RssSampler() as sampler:
        started = time.perf_counter()
        copy_image(source, ImageReference(COPY_REPOSITORY, tag="v1"), target, REPOSITORY, part_size=PART_SIZE)
        seconds = time.perf_counter() - started
    return sampler.figures(seconds)


def measure(sizes: Sizes, moto_url: str) -> tuple[dict[str, float], float]:
    """The copy (fresh process, RSS sampled) and a push of the same bytes from S3 to the sink."""
    url = seed_source(sizes, moto_url)
    copied = run_child("the copy run", "--copy-child", "warmup")
    pushed = ours(ecr_hook(SINK_CONN_ID, fast_upload=True), url)
    return copied, pushed


def print_table(sizes: Sizes, copied: dict[str, float], pushed: float) -> None:
    print(
        f"\none {sizes.copy_layer // MiB} MiB layer: copied from moto's ECR (its download URL) to the sink, "
        "against a push of the same bytes from S3 to the sink"
    )
    print(f"{'path':<30} {'s':>7} {'MiB/s':>8} {'RSS growth MiB':>15} {'parts':>6}")
    print(
        f"{'copy (fresh process)':<30} {copied['seconds']:>7.2f} "
        f"{mib_per_s(sizes.copy_layer, copied['seconds']):>8.1f} "
        f"{copied['growth'] / MiB:>15.1f} {copied['growth'] / PART_SIZE:>6.2f}"
    )
    print(f"{'push (from S3)':<30} {pushed:>7.2f} {mib_per_s(sizes.copy_layer, pushed):>8.1f}")


def copy_line(sizes: Sizes, copied: dict[str, float], pushed: float) -> str:
    rate = mib_per_s(sizes.copy_layer, copied["seconds"])
    return (
        f"copy: mib_s={rate:.1f} vs_push={rate / mib_per_s(sizes.copy_layer, pushed):.2f} "
        f"rss_growth_parts={copied['growth'] / PART_SIZE:.1f}"
    )


def reads(sizes: Sizes) -> tuple[int, ...]:
    return ()  # seeds its own object


def run(sizes: Sizes, keys: dict[int, str], servers: Servers) -> Summary:
    copied, pushed = measure(sizes, servers.moto.url)
    print_table(sizes, copied, pushed)
    return Summary(line=copy_line(sizes, copied, pushed))
