"""The ``throughput`` section: MiB/s of the upload path beside its floor.

**floor**: a plain boto3 loop calling UploadLayerPart on one part already in memory (no S3, no
hashing), to the sink, with and without the fast request; **ours**: ``UploadLayerPartsOperator``'s
path (``open_source`` on an ``s3://`` path read through s3fs from moto, then
``EcrLayersHook.upload_parts``), to the sink, with the fast request on and off; the floor loop and
ours against moto's ECR (server-bound, for reference). ``ours_vs_floor``: ours (fast request) over
the floor in MiB/s to the sink.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
)
from bench_processes import Servers


@dataclass
class Row:
    name: str
    target: str
    size: int
    seconds: float

    @property
    def rate(self) -> float:
        return mib_per_s(self.size, self.seconds)


def floor_loop(ecr: Any, size: int, part: bytes) -> float:
    """Seconds for a plain boto3 UploadLayerPart loop over ``size`` bytes of one in-memory part."""
    upload_id = ecr.initiate_layer_upload(repositoryName=REPOSITORY)["uploadId"]
    started = time.perf_counter()
    for first in range(0, size, len(part)):
        blob = part if first + len(part) <= size else part[: size - first]
        ecr.upload_layer_part(
            repositoryName=REPOSITORY,
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=first + len(blob) - 1,
            layerPartBlob=blob,
        )
    elapsed = time.perf_counter() - started
    ecr.complete_layer_upload(repositoryName=REPOSITORY, uploadId=upload_id, layerDigests=[repeated_digest(part, size)])
    return elapsed


def repeated_digest(part: bytes, size: int) -> str:
    """sha256 of ``part`` repeated up to ``size`` bytes: what the floor loop sent."""
    hasher = hashlib.sha256()
    for first in range(0, size, len(part)):
        hasher.update(memoryview(part)[: min(len(part), size - first)])
    return "sha256:" + hasher.hexdigest()


def measure_sink(sizes: Sizes, sink_url: str, keys: dict[int, str]) -> list[Row]:
    """Floor and ours to the sink, interleaved ``repeats`` times (so drifts hit all alike); medians."""
    from airflow_ecr_layers.core.ecr import fast_request

    part = pattern_bytes(0, PART_SIZE)
    floor_client = boto_client("ecr", sink_url)
    floor_fast_client = boto_client("ecr", sink_url)
    fast_request.install(floor_fast_client)
    hook_fast = ecr_hook(SINK_CONN_ID, fast_upload=True)
    hook_stock = ecr_hook(SINK_CONN_ID, fast_upload=False)
    for hook in (hook_fast, hook_stock):
        ours(hook, keys[WARMUP_SIZE])  # imports and connections before any timing
    url, size = keys[sizes.throughput], sizes.throughput
    measured: dict[str, tuple[str, Callable[[], float]]] = {
        "floor": ("floor: boto3 loop, part in memory", lambda: floor_loop(floor_client, size, part)),
        "floor_fast": ("floor + fast request", lambda: floor_loop(floor_fast_client, size, part)),
        "ours": ("ours: S3 -> sha256 -> fast request", lambda: ours(hook_fast, url)),
        "ours_stock": ("ours, fast request off", lambda: ours(hook_stock, url)),
    }
    times: dict[str, list[float]] = {name: [] for name in measured}
    for _ in range(sizes.repeats):
        for name, (_, fn) in measured.items():
            times[name].append(fn())
    return [Row(label, "sink", size, statistics.median(times[name])) for name, (label, _) in measured.items()]


def measure_moto(sizes: Sizes, moto_url: str, keys: dict[int, str]) -> list[Row]:
    """The floor loop and ours against moto's ECR: server-bound, for reference."""
    part = pattern_bytes(0, PART_SIZE)
    hook = ecr_hook(MOTO_ECR_CONN_ID, fast_upload=True)
    ours(hook, keys[WARMUP_SIZE])
    return [
        Row(
            "floor: boto3 loop, part in memory",
            "moto ECR",
            sizes.moto,
            floor_loop(boto_client("ecr", moto_url), sizes.moto, part),
        ),
        Row("ours: S3 -> sha256 -> fast request", "moto ECR", sizes.moto, ours(hook, keys[sizes.moto])),
    ]


def print_table(rows: list[Row], repeats: int) -> None:
    print(f"\nthroughput, {PART_SIZE // MiB} MiB parts (sink rows: median of {repeats})")
    print(f"{'path':<38} {'target':<9} {'MiB':>6} {'s':>7} {'MiB/s':>8}")
    for row in rows:
        print(f"{row.name:<38} {row.target:<9} {row.size // MiB:>6} {row.seconds:>7.2f} {row.rate:>8.1f}")


def reads(sizes: Sizes) -> tuple[int, ...]:
    return (sizes.throughput, sizes.moto)


def run(sizes: Sizes, keys: dict[int, str], servers: Servers) -> Summary:
    rows = measure_sink(sizes, servers.sink.url, keys) + measure_moto(sizes, servers.moto.url, keys)
    print_table(rows, sizes.repeats)
    return Summary((f"ours_vs_floor={rows[2].rate / rows[0].rate:.2f}",))
