"""The ``cpu`` section: the client process's CPU seconds per GiB of ours, beside the floor.

Ours (S3 -> sha256 -> fast request, to the sink) ``repeats`` times, with the client's user + system
seconds per GiB (``cpu_s_per_gib``); then, in the same process, the three steps no client can skip,
each timed on one part: sha256 of the bytes, base64 into the body, sha256 of the body (their sum
is ``cpu_floor_s_per_gib``).
"""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import dataclass

from bench_common import (
    PART_SIZE,
    SINK_CONN_ID,
    WARMUP_SIZE,
    GiB,
    MiB,
    Sizes,
    Summary,
    ecr_hook,
    median_run,
    ours,
    pattern_bytes,
)
from bench_processes import CpuMeter, Servers

FLOOR_TOKEN = b'"AAAAAAAAAAAAAAAAAAAAAAAA"'
"""Stands for the blob in the floor's body, as fast_request's placeholder does in a real one."""
FLOOR_BODY = b'{"layerPartBlob": ' + FLOOR_TOKEN + b', "partFirstByte": 0, "partLastByte": 20971519}'


@dataclass(frozen=True)
class CpuFigures:
    ours: float
    """The client process's user + system seconds per GiB sent (median of the runs)."""
    ours_runs: list[float]
    floor: dict[str, float]
    """Each step no client can skip, in CPU seconds per GiB of layer (median of the parts)."""
    servers: dict[str, float]
    """The servers' CPU seconds per GiB during the median run (for reference: not the client's)."""

    @property
    def floor_total(self) -> float:
        return sum(self.floor.values())


def cpu_floor(size: int) -> dict[str, float]:
    """The CPU seconds per GiB of the three steps a part cannot skip, each timed on this thread
    over ``size`` bytes in 20 MiB parts: sha256 of the bytes (the layer digest), base64 into
    the request body (the engine's own writer, :func:`~airflow_ecr_layers.core.ecr.fast_request.splice_blob`)
    and sha256 of that body (SigV4 signs the payload)."""
    from airflow_ecr_layers.core.ecr import fast_request

    part = pattern_bytes(1, PART_SIZE)
    times: dict[str, list[float]] = {"sha256 of the bytes": [], "base64 into the body": [], "sha256 of the body": []}
    for _ in range(max(1, size // PART_SIZE)):
        started = time.thread_time()
        hashlib.sha256(part).digest()
        hashed = time.thread_time()
        body = fast_request.splice_blob(FLOOR_BODY, FLOOR_TOKEN, part)
        encoded = time.thread_time()
        hashlib.sha256(body).digest()
        signed = time.thread_time()
        for name, seconds in zip(times, (hashed - started, encoded - hashed, signed - encoded), strict=True):
            times[name].append(seconds)
    return {name: statistics.median(found) * GiB / PART_SIZE for name, found in times.items()}


def measure(sizes: Sizes, keys: dict[int, str], servers: dict[str, int]) -> CpuFigures:
    """Ours (S3 -> sha256 -> fast request, to the sink) ``repeats`` times, with the client's
    CPU seconds per GiB; then the floor of the same bytes, in the same process."""
    hook = ecr_hook(SINK_CONN_ID, fast_upload=True)
    ours(hook, keys[WARMUP_SIZE])
    url, gib = keys[sizes.throughput], sizes.throughput / GiB
    runs: list[CpuMeter] = []
    for _ in range(sizes.repeats):
        with CpuMeter(**servers) as meter:
            ours(hook, url)
        runs.append(meter)
    median = median_run(runs, key=lambda run: run.seconds["client"])
    return CpuFigures(
        ours=median.seconds["client"] / gib,
        ours_runs=[run.seconds["client"] / gib for run in runs],
        floor=cpu_floor(sizes.throughput),
        servers={name: used / gib for name, used in median.seconds.items() if name != "client"},
    )


def print_table(sizes: Sizes, cpu: CpuFigures) -> None:
    print(
        f"\nCPU per GiB of ours (S3 -> sha256 -> fast request, to the sink), {sizes.throughput // MiB} MiB "
        f"a run, median of {sizes.repeats}; the floor measured on this thread over the same bytes"
    )
    print(f"{'what':<44} {'s/GiB':>7}")
    runs = ", ".join(f"{found:.2f}" for found in cpu.ours_runs)
    print(f"{'ours: client process, user + system':<44} {cpu.ours:>7.2f}   (runs: {runs})")
    for name, seconds in cpu.floor.items():
        print(f"{'  floor: ' + name:<44} {seconds:>7.2f}")
    print(f"{'floor, all three':<44} {cpu.floor_total:>7.2f}")
    print(f"{'rest (kernel copies, HTTP, Python)':<44} {cpu.ours - cpu.floor_total:>7.2f}")
    for name, seconds in cpu.servers.items():
        print(f"{'(the ' + name + ' process, not counted)':<44} {seconds:>7.2f}")
    print(f"ours / floor: {cpu.ours / cpu.floor_total:.2f}")


def reads(sizes: Sizes) -> tuple[int, ...]:
    return (sizes.throughput,)


def run(sizes: Sizes, keys: dict[int, str], servers: Servers) -> Summary:
    cpu = measure(sizes, keys, {"moto": servers.moto.pid, "sink": servers.sink.pid})
    print_table(sizes, cpu)
    return Summary((f"cpu_s_per_gib={cpu.ours:.2f}", f"cpu_floor_s_per_gib={cpu.floor_total:.2f}"))
