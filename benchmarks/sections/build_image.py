"""The ``build`` section: images built from files in S3, first, again unchanged, again with one
small file changed, and one big file as a tar layer beside the same file as an artifact layer.

``build_small_files`` objects of 1 KiB in nested folders under one S3 prefix, built with
``build_image`` (as ``BuildImageOperator`` does: listed, grouped into tar layers, streamed) into
moto's strict ECR: a first build into a new repository (``files_per_s``, the median of
``repeats`` runs), the same files again under the same tag (``unchanged_read_ratio`` and
``unchanged_sent_ratio``: bytes read and sent over the layers' total, as the engine counts them;
the build record of the first build lets it reuse every layer), then with one small file
overwritten (``one_small_changed_sent_ratio``). Then one object of ``build_big_file`` bytes
built alone as a tar layer (``big_file_mib_s``) and pushed as an artifact layer with
``push_artifact`` (``big_artifact_mib_s``), each into a new repository of moto's ECR,
interleaved ``repeats`` times (medians), and their ratio (``big_tar_vs_artifact``). moto's ECR
is the ceiling of both there, so the same tar layer and the same file go to the sink too, with
``push_layers`` alone (no manifest: the sink keeps nothing), for the client's own ratio
(``big_tar_vs_raw_sink``).

Its line: ``build: files_per_s=... unchanged_read_ratio=... unchanged_sent_ratio=...
one_small_changed_sent_ratio=... big_file_mib_s=... big_artifact_mib_s=... big_tar_vs_artifact=...
big_tar_vs_raw_sink=...``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench_common import (
    BUCKET,
    MOTO_ECR_CONN_ID,
    PART_SIZE,
    S3_CONN_ID,
    SINK_CONN_ID,
    KiB,
    MiB,
    Push,
    Sizes,
    Summary,
    boto_client,
    ecr_hook,
    median_run,
    mib_per_s,
    push_objects,
    seeding_s3,
)
from bench_processes import Servers

SMALL_SIZE = 1 * KiB
SMALL_PREFIX = "build/small/"
MAX_CONCURRENCY = 4
"""Layers (and small layers beside them) at once: the operator's default."""


@dataclass(frozen=True)
class Built:
    label: str
    seconds: float
    totals: dict[str, int]


def small_key(index: int) -> str:
    return f"{SMALL_PREFIX}d{index % 20:02d}/file-{index:05d}.txt"


CHANGED = 42
"""The small file the third build finds overwritten."""


def seed_small_files(s3: Any, count: int) -> str:
    def put(index: int) -> None:
        body = f"small file {index}\n".encode().ljust(SMALL_SIZE, b".")
        s3.put_object(Bucket=BUCKET, Key=small_key(index), Body=body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(count)))
    return f"s3://{BUCKET}/{SMALL_PREFIX}"


def build(label: str, conn_id: str, url: str, repository: str, tags: list[str]) -> Built:
    """One ``build_image`` of what ``url`` stands for, timed from the listing on, as the operator does it."""
    from airflow_ecr_layers.core.build.image import build_image, files_of
    from airflow_ecr_layers.object_storage import open_sources

    engine = ecr_hook(conn_id, fast_upload=True).engine
    started = time.perf_counter()
    files = files_of(open_sources(url, S3_CONN_ID, allow_empty=True))
    result = build_image(
        engine, repository, files, path="/data", tags=tags, part_size=PART_SIZE, max_concurrency=MAX_CONCURRENCY
    )
    return Built(label, time.perf_counter() - started, result.totals)


def measure_small(sizes: Sizes, moto_url: str) -> list[Built]:
    """First builds into new repositories (the median), then again unchanged, then one file changed."""
    s3 = seeding_s3(moto_url)
    url = seed_small_files(s3, sizes.build_small_files)
    ecr = boto_client("ecr", moto_url)
    firsts: list[Built] = []
    for run in range(sizes.repeats):
        repository = f"bench/build-small-{run}"
        ecr.create_repository(repositoryName=repository)
        firsts.append(build("first build", MOTO_ECR_CONN_ID, url, repository, ["latest"]))
    first = median_run(firsts, key=lambda b: b.seconds)
    unchanged = build("again, unchanged", MOTO_ECR_CONN_ID, url, repository, ["latest"])
    s3.put_object(Bucket=BUCKET, Key=small_key(CHANGED), Body=b"changed\n".ljust(SMALL_SIZE, b"!"))
    changed = build("again, 1 file changed", MOTO_ECR_CONN_ID, url, repository, ["latest"])
    return [first, unchanged, changed]


def measure_big(sizes: Sizes, url: str, moto_url: str) -> tuple[Built, Push]:
    """The big object as a tar layer and as an artifact layer, each into a new repository of moto's
    ECR, interleaved ``repeats`` times; the medians."""
    ecr = boto_client("ecr", moto_url)
    tars: list[Built] = []
    artifacts: list[Push] = []
    for run in range(sizes.repeats):
        for kind in ("tar", "artifact"):
            ecr.create_repository(repositoryName=f"bench/build-big-{kind}-{run}")
        tars.append(build("as a tar layer", MOTO_ECR_CONN_ID, url, f"bench/build-big-tar-{run}", ["v1"]))
        artifacts.append(
            push_objects("as an artifact layer", MOTO_ECR_CONN_ID, url, f"bench/build-big-artifact-{run}", ["v1"])
        )
    return median_run(tars, key=lambda b: b.seconds), median_run(artifacts, key=lambda p: p.seconds)


def measure_big_sink(sizes: Sizes, url: str) -> tuple[float, float]:
    """Seconds to send the big object to the sink as a tar layer and as itself (``push_layers``
    alone: no manifest), interleaved ``repeats`` times; the medians."""
    from airflow_ecr_layers.core.build.image import files_of, plan_build
    from airflow_ecr_layers.core.oci.layers import LayerSpec
    from airflow_ecr_layers.core.oci.manifest import DEFAULT_LAYER_MEDIA_TYPE, OCI_LAYER_TAR
    from airflow_ecr_layers.core.push.artifact import push_layers
    from airflow_ecr_layers.object_storage import open_sources

    engine = ecr_hook(SINK_CONN_ID, fast_upload=True).engine
    sources = open_sources(url, S3_CONN_ID)
    (layer,) = plan_build(files_of(sources), path="/data").layers
    timed: dict[str, list[float]] = {"tar": [], "raw": []}
    for _ in range(sizes.repeats):
        for kind, spec in (
            ("tar", LayerSpec(layer, OCI_LAYER_TAR)),
            ("raw", LayerSpec(sources[0], DEFAULT_LAYER_MEDIA_TYPE)),
        ):
            started = time.perf_counter()
            push_layers(engine, "sink", [spec], part_size=PART_SIZE, check_first=False)
            timed[kind].append(time.perf_counter() - started)
    return median_run(timed["tar"], key=float), median_run(timed["raw"], key=float)


def ratio(part: int, whole: int) -> float:
    return part / max(whole, 1)


def run(sizes: Sizes, keys: dict[int, str], servers: Servers) -> Summary:
    small = measure_small(sizes, servers.moto.url)
    url = keys[sizes.build_big_file]
    tar, artifact = measure_big(sizes, url, servers.moto.url)
    tar_sink, raw_sink = measure_big_sink(sizes, url)
    count = sizes.build_small_files
    print(
        f"\n{count} objects of {SMALL_SIZE // KiB} KiB in 20 folders under a prefix, build_image to moto's strict "
        f"ECR (first build: median of {sizes.repeats}; bytes as the engine counts them)"
    )
    print(f"{'build':<24} {'s':>7} {'files/s':>8} {'layers':>7} {'reused':>7} {'KiB read':>9} {'KiB sent':>9}")
    for built in small:
        t = built.totals
        print(
            f"{built.label:<24} {built.seconds:>7.2f} {count / built.seconds:>8.1f} {t['layers']:>7} "
            f"{t['reused']:>7} {t['bytes_read'] / KiB:>9.1f} {t['bytes_sent'] / KiB:>9.1f}"
        )
    big = sizes.build_big_file
    print(f"\none object of {big // MiB} MiB, 20 MiB parts (median of {sizes.repeats})")
    print(f"{'as':<34} {'target':<9} {'s':>7} {'MiB/s':>8}")
    for label, target, seconds in (
        ("a tar layer (build_image)", "moto ECR", tar.seconds),
        ("an artifact layer (push_artifact)", "moto ECR", artifact.seconds),
        ("a tar layer (push_layers)", "sink", tar_sink),
        ("itself (push_layers)", "sink", raw_sink),
    ):
        print(f"{label:<34} {target:<9} {seconds:>7.2f} {mib_per_s(big, seconds):>8.1f}")
    first, unchanged, changed = (b.totals for b in small)
    total = first["bytes"]
    return Summary(
        line=(
            f"build: files_per_s={count / small[0].seconds:.1f} "
            f"unchanged_read_ratio={ratio(unchanged['bytes_read'], total):.3f} "
            f"unchanged_sent_ratio={ratio(unchanged['bytes_sent'], total):.3f} "
            f"one_small_changed_sent_ratio={ratio(changed['bytes_sent'], total):.3f} "
            f"big_file_mib_s={mib_per_s(big, tar.seconds):.1f} "
            f"big_artifact_mib_s={mib_per_s(big, artifact.seconds):.1f} "
            f"big_tar_vs_artifact={artifact.seconds / tar.seconds:.2f} "
            f"big_tar_vs_raw_sink={raw_sink / tar_sink:.2f}"
        )
    )


def reads(sizes: Sizes) -> tuple[int, ...]:
    return (sizes.build_big_file,)  # and its own small files
