"""The benchmark's round-trip and CPU sections (benchmarks/bench.py ``--only rtt,cpu``) run end
to end on tiny sizes against their real servers, and print their fields. No timing is asserted:
the figures of a tiny run mean nothing."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from helpers import ROOT, load_script

BENCH_PATH = ROOT / "benchmarks" / "bench.py"


bench = load_script(BENCH_PATH, "bench_main")


def test_only_takes_known_sections_and_names_the_unknown_ones() -> None:
    assert bench.parse_sections("rtt, cpu") == frozenset({"rtt", "cpu"})
    with pytest.raises(argparse.ArgumentTypeError, match="unknown section.*rtts.*choose from throughput"):
        bench.parse_sections("rtts,cpu")
    with pytest.raises(argparse.ArgumentTypeError, match="none given"):
        bench.parse_sections(",")


def test_the_cpu_floor_times_each_step_of_a_part() -> None:
    floor = bench.cpu_floor(bench.PART_SIZE)
    assert list(floor) == ["sha256 of the bytes", "base64 into the body", "sha256 of the body"]
    assert all(seconds > 0 for seconds in floor.values())


def test_the_rtt_and_cpu_sections_run_end_to_end_and_print_their_fields() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH_PATH), "--tiny", "--only", "rtt,cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    for concurrency in (1, 2, 4):
        assert re.search(rf"^ +{concurrency} +[\d.]+ +[\d.]+ +client [\d.]+, moto [\d.]+, sink [\d.]+", out, re.M)
    assert "speedup, concurrency 4 over 1" in out
    assert "floor: sha256 of the body" in out
    summary = out.strip().splitlines()[-1]
    fields = dict(item.split("=") for item in summary.removeprefix("bench: ").split())
    assert set(fields) == {
        "parallel_speedup_rtt",
        "parallel_speedup_rtt4",
        "rtt4_ceiling",
        "cpu_s_per_gib",
        "cpu_floor_s_per_gib",
    }
    assert all(float(value) > 0 for value in fields.values())
    assert float(fields["rtt4_ceiling"]) <= 4


def test_the_small_files_section_runs_end_to_end_and_prints_its_fields() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH_PATH), "--tiny", "--only", "small"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    assert re.search(r"^first push +[\d.]+ +[\d.]+ +0 +48\.0 +client [\d.]+, moto [\d.]+", out, re.M), out
    summary = out.strip().splitlines()[-1]
    fields = dict(item.split("=") for item in summary.removeprefix("bench: ").split())
    assert set(fields) == {"small_files_per_s", "small_new_tag_per_s", "small_new_tag_sent_ratio"}
    assert float(fields["small_new_tag_sent_ratio"]) == 0  # nothing ECR holds is uploaded again
    assert float(fields["small_files_per_s"]) > 0 and float(fields["small_new_tag_per_s"]) > 0


def test_the_build_section_runs_end_to_end_and_prints_its_line() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH_PATH), "--tiny", "--only", "build"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    assert re.search(r"^again, unchanged +[\d.]+ +[\d.]+ +(\d+) +\1 +0\.0 +0\.0$", out, re.M), out
    assert re.search(r"^a tar layer \(build_image\) +moto ECR +[\d.]+ +[\d.]+$", out, re.M), out
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("build: ")
    fields = dict(item.split("=") for item in summary.removeprefix("build: ").split())
    assert set(fields) == {
        "files_per_s",
        "unchanged_read_ratio",
        "unchanged_sent_ratio",
        "one_small_changed_sent_ratio",
        "big_file_mib_s",
        "big_artifact_mib_s",
        "big_tar_vs_artifact",
        "big_tar_vs_raw_sink",
    }
    assert float(fields["unchanged_read_ratio"]) == float(fields["unchanged_sent_ratio"]) == 0
    assert 0 < float(fields["one_small_changed_sent_ratio"]) <= 1  # 30 files make a layer or two: no figure
    assert float(fields["files_per_s"]) > 0 and float(fields["big_file_mib_s"]) > 0
