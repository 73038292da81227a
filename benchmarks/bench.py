"""Throughput, memory, parallel layers and CPU of the upload path, side by side with their floors.

    python benchmarks/bench.py [--quick] [--only SECTIONS] [--repush-only]

The driver: starts moto's server and the two sinks (``bench_processes.py``), seeds S3 with what
the chosen sections read (``bench_common.py``), runs them in the order of :data:`SECTIONS`, one
module of ``sections/`` each, and prints the summary lines: one ``bench: ...`` line with the
fields of the sections run, then ``repush: ...``, ``copy: ...`` and ``build: ...``. benchmarks/README.md tells
what each figure means.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its modules, also when loaded by path

from bench_common import FULL, PART_SIZE, QUICK, TINY, WARMUP_SIZE, Sizes, Summary, seed_artifacts
from bench_processes import Servers, machine, services
from sections import build_image, copy, cpu, memory, parallel_layers, repush, small_files, throughput

__all__ = ["PART_SIZE", "SECTIONS", "cpu_floor", "main", "parse_sections", "run"]
"""Besides its own, the names the test suite reaches through this script."""
cpu_floor = cpu.cpu_floor


@dataclass(frozen=True)
class Section:
    reads: Callable[[Sizes], tuple[int, ...]]
    """The sizes of the seeded S3 objects it reads."""
    run: Callable[[Sizes, dict[int, str], Servers], Summary]
    """Measure, print the table, return the fields of the summary lines."""


RUNS = {
    "throughput": Section(throughput.reads, throughput.run),
    "rss": Section(memory.reads, memory.run),
    "parallel": Section(parallel_layers.reads, parallel_layers.run_parallel),
    "rtt": Section(parallel_layers.reads, parallel_layers.run_rtt),
    "cpu": Section(cpu.reads, cpu.run),
    "repush": Section(repush.reads, repush.run),
    "copy": Section(copy.reads, copy.run),
    "small": Section(small_files.reads, small_files.run),
    "build": Section(build_image.reads, build_image.run),
}
SECTIONS = tuple(RUNS)
"""What ``--only`` can choose, in the order they run."""


def run(sizes: Sizes, sections: frozenset[str] = frozenset(SECTIONS)) -> str:
    """Measure and print the ``sections`` (each table as soon as it is measured); return the
    summary lines (``bench:``, ``repush:``, ``copy:``, ``build:``) with the fields of those sections."""
    started = time.perf_counter()
    print(f"machine: {machine()}", flush=True)
    chosen = [name for name in SECTIONS if name in sections]
    summaries: list[Summary] = []
    with services() as servers:
        print(f"seeding S3 on {servers.moto.url} ...", flush=True)
        keys = seed_artifacts(servers.moto.url, {WARMUP_SIZE}.union(*(RUNS[name].reads(sizes) for name in chosen)))
        print(f"seeded in {time.perf_counter() - started:.0f}s; measuring: {', '.join(chosen)}", flush=True)
        for name in chosen:
            summaries.append(RUNS[name].run(sizes, keys, servers))
    print(f"\ntotal {time.perf_counter() - started:.0f}s; machine after: {machine()}")
    fields = [field for summary in summaries for field in summary.fields]
    lines = [summary.line for summary in summaries if summary.line]
    return "\n".join(([f"bench: {' '.join(fields)}"] if fields else []) + lines)


def parse_sections(text: str) -> frozenset[str]:
    """``--only``'s comma-separated section names, checked."""
    chosen = frozenset(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(chosen - set(SECTIONS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(SECTIONS)}"
        )
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and one run each (under 2 minutes)")
    parser.add_argument(
        "--only",
        type=parse_sections,
        metavar="SECTIONS",
        help=f"run only these sections, comma-separated: {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--repush-only", action="store_true", help="only the re-push, chunk and copy figures")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test suite's sizes
    parser.add_argument("--rss-child", nargs=2, metavar=("URL", "WARMUP_URL"), help=argparse.SUPPRESS)
    parser.add_argument("--copy-child", metavar="WARMUP_TAG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        print(json.dumps(memory.child(*args.rss_child)))
        return 0
    if args.copy_child:
        print(json.dumps(copy.child(args.copy_child)))
        return 0
    sizes = TINY if args.tiny else QUICK if args.quick else FULL
    sections = frozenset({"repush", "copy"}) if args.repush_only else args.only or frozenset(SECTIONS)
    print(run(sizes, sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
