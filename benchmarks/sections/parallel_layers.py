"""The ``parallel`` and ``rtt`` sections: four layers through ``push_layers`` at several ``max_concurrency``.

``parallel``: at 1 and 2, to the sink that answers at once (``parallel_speedup``: the time at 1
over the time at 2). ``rtt``: at 1, 2 and 4, to the sink that holds each answer, a stand-in for a
real registry's round trip (``parallel_speedup_rtt``, ``parallel_speedup_rtt4``); ``rtt4_ceiling``
is the most 4 can gain there: the smaller of the layers in flight and the cores over the cores
busy (client and servers) at 1. Each table prints each speedup beside its ceiling and what ran out.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench_common import (
    PART_DELAY_MS,
    PART_SIZE,
    REPOSITORY,
    S3_CONN_ID,
    SINK_CONN_ID,
    SLOW_SINK_CONN_ID,
    MiB,
    Sizes,
    Summary,
    ecr_hook,
    median_run,
    mib_per_s,
)
from bench_processes import CpuMeter, Servers

LAYERS = 4
"""Layers in each parallel run."""
RTT_CONCURRENCIES = (1, 2, 4)
"""The ``max_concurrency`` values of the run against the sink that holds each answer."""


def parallel_layers(hook: Any, url: str, count: int, concurrency: int) -> float:
    """Seconds to push ``count`` layers read from ``url`` with ``push_layers``."""
    from airflow_ecr_layers.core.oci.layers import LayerSpec
    from airflow_ecr_layers.core.oci.manifest import DEFAULT_LAYER_MEDIA_TYPE
    from airflow_ecr_layers.core.push.artifact import push_layers
    from airflow_ecr_layers.object_storage import open_source

    layers = [LayerSpec(open_source(url, S3_CONN_ID), DEFAULT_LAYER_MEDIA_TYPE) for _ in range(count)]
    started = time.perf_counter()
    push_layers(hook.engine, REPOSITORY, layers, part_size=PART_SIZE, max_concurrency=concurrency)
    return time.perf_counter() - started


def measure(
    sizes: Sizes,
    keys: dict[int, str],
    servers: dict[str, int],
    conn_id: str = SINK_CONN_ID,
    concurrencies: tuple[int, ...] = (1, 2),
) -> dict[int, tuple[float, CpuMeter]]:
    """:data:`LAYERS` layers at each ``max_concurrency``, interleaved ``repeats`` times: median
    seconds and the cores busy during the median run."""
    hook = ecr_hook(conn_id, fast_upload=True)
    found: dict[int, list[tuple[float, CpuMeter]]] = {concurrency: [] for concurrency in concurrencies}
    for _ in range(sizes.repeats):
        for concurrency, runs in found.items():
            with CpuMeter(**servers) as meter:
                seconds = parallel_layers(hook, keys[sizes.layer], LAYERS, concurrency)
            runs.append((seconds, meter))
    return {c: median_run(runs, key=lambda run: run[0]) for c, runs in found.items()}


def speedup(parallel: dict[int, tuple[float, CpuMeter]], concurrency: int) -> float:
    """Time at concurrency 1 over time at ``concurrency``."""
    return parallel[1][0] / parallel[concurrency][0]


def ceiling(parallel: dict[int, tuple[float, CpuMeter]], concurrency: int) -> float:
    """The most ``concurrency`` can gain over 1: the layers in flight, or the cores over the
    cores busy (client and servers) at concurrency 1, whichever is smaller (the same work
    cannot go faster than all the cores doing it)."""
    cores = os.cpu_count() or 1
    return min(float(min(concurrency, LAYERS)), cores / parallel[1][1].busy)


def limit(meter: CpuMeter, cores: int) -> str:
    """What a parallel run ran out of: the cores (ours, or taken by other work on the
    machine), or neither (then the layers waited on the servers' answers)."""
    if meter.busy >= 0.9 * cores:
        return f"the cores ran out: {meter.busy:.2f} of {cores} busy with the client and servers"
    if meter.machine >= 0.9 * cores:
        others = meter.machine - meter.busy
        return f"the cores ran out: {meter.machine:.2f} of {cores} busy, {others:.2f} of them with other work"
    return f"no core ran out ({meter.machine:.2f} of {cores} busy): the layers waited on the servers"


def print_table(sizes: Sizes, parallel: dict[int, tuple[float, CpuMeter]], target: str) -> None:
    print(f"\n{LAYERS} {sizes.layer // MiB} MiB layers, push_layers to {target} (median of {sizes.repeats})")
    print(f"{'max_concurrency':>15} {'s':>7} {'MiB/s':>8}   cores busy")
    for concurrency, (seconds, meter) in parallel.items():
        print(f"{concurrency:>15} {seconds:>7.2f} {mib_per_s(LAYERS * sizes.layer, seconds):>8.1f}   {meter}")
    cores = os.cpu_count() or 1
    busy = parallel[1][1].busy
    for concurrency in [c for c in parallel if c > 1]:
        gained, most = speedup(parallel, concurrency), ceiling(parallel, concurrency)
        in_flight = min(concurrency, LAYERS)
        print(
            f"speedup, concurrency {concurrency} over 1: {gained:.2f} (ceiling: min({in_flight} layers, "
            f"{cores} cores / {busy:.2f} busy at 1) = {most:.2f}; {gained / most:.2f} of it; "
            f"{limit(parallel[concurrency][1], cores)})"
        )


def reads(sizes: Sizes) -> tuple[int, ...]:
    return (sizes.layer,)


def run_parallel(sizes: Sizes, keys: dict[int, str], servers: Servers) -> Summary:
    """The ``parallel`` section: to the sink that answers at once."""
    parallel = measure(sizes, keys, {"moto": servers.moto.pid, "sink": servers.sink.pid})
    print_table(sizes, parallel, "the sink")
    return Summary((f"parallel_speedup={speedup(parallel, 2):.2f}",))


def run_rtt(sizes: Sizes, keys: dict[int, str], servers: Servers) -> Summary:
    """The ``rtt`` section: to the sink that holds each answer ``PART_DELAY_MS``."""
    waiting = measure(
        sizes, keys, {"moto": servers.moto.pid, "sink": servers.slow_sink.pid}, SLOW_SINK_CONN_ID, RTT_CONCURRENCIES
    )
    print_table(sizes, waiting, f"a sink that answers each part {PART_DELAY_MS} ms after reading it")
    return Summary(
        (
            f"parallel_speedup_rtt={speedup(waiting, 2):.2f}",
            f"parallel_speedup_rtt4={speedup(waiting, 4):.2f}",
            f"rtt4_ceiling={ceiling(waiting, 4):.2f}",
        )
    )
