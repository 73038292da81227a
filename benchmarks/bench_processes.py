"""The processes a run measures, and the meters it measures them with.

``services()`` starts moto's server, the sink and the sink that holds each answer, and points
Airflow connections at them; ``run_child`` runs the driver in a fresh interpreter for a figure
that needs one; ``CpuMeter`` and ``RssSampler`` measure a ``with`` block; ``machine()`` names
the cores and the load that every figure shares.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench_common import (
    MOTO_ECR_CONN_ID,
    PART_DELAY_MS,
    PART_SIZE,
    REGION,
    ROOT,
    S3_CONN_ID,
    SINK_CONN_ID,
    SLOW_SINK_CONN_ID,
)

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "bench.py"
"""What a child process runs (with one of its hidden ``--...-child`` options)."""
RSS_SAMPLE_SECONDS = 0.005


# -- the servers ----------------------------------------------------------------------------
def aws_connection(endpoint_url: str) -> str:
    """An Airflow AWS connection (JSON) pointing at a loopback endpoint with dummy keys."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": endpoint_url, "region_name": REGION},
        }
    )


def configure_environment(moto_url: str, sink_url: str, slow_sink_url: str) -> None:
    """Airflow without a metadata DB: connections come from ``AIRFLOW_CONN_*`` variables.

    Child processes inherit all of it.
    """
    os.environ.update(
        {
            "AIRFLOW_HOME": tempfile.mkdtemp(prefix="ecr-layers-bench-"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",  # progress and connection lines would drown the table
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            f"AIRFLOW_CONN_{S3_CONN_ID.upper()}": aws_connection(moto_url),
            f"AIRFLOW_CONN_{MOTO_ECR_CONN_ID.upper()}": aws_connection(moto_url),
            f"AIRFLOW_CONN_{SINK_CONN_ID.upper()}": aws_connection(sink_url),
            f"AIRFLOW_CONN_{SLOW_SINK_CONN_ID.upper()}": aws_connection(slow_sink_url),
        }
    )


@dataclass(frozen=True)
class Service:
    url: str
    pid: int


@dataclass(frozen=True)
class Servers:
    moto: Service
    """moto's server (``moto_server.py``): S3 holding the artifacts, and the strict ECR."""
    sink: Service
    """``sink.py``: an ECR that reads and discards every body."""
    slow_sink: Service
    """The sink that answers each part ``PART_DELAY_MS`` after reading it."""


@contextmanager
def service(*command: str, timeout: float = 60.0) -> Iterator[Service]:
    """Run a server that prints ``ENDPOINT <url>`` first; yield it, stop it after."""
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("ENDPOINT "):
            raise RuntimeError(f"{' '.join(command)} did not start (said {line!r})")
        yield Service(line.split()[1], proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def services() -> Iterator[Servers]:
    """moto (S3 and the strict ECR), the sink, and the sink that waits before each answer;
    Airflow connections pointing at each."""
    sink_script = str(HERE / "sink.py")
    with (
        service(sys.executable, str(HERE / "moto_server.py")) as moto,
        service(sys.executable, sink_script, "--part-size", str(PART_SIZE)) as sink,
        service(
            sys.executable, sink_script, "--part-size", str(PART_SIZE), "--part-delay-ms", str(PART_DELAY_MS)
        ) as slow_sink,
    ):
        configure_environment(moto.url, sink.url, slow_sink.url)
        yield Servers(moto, sink, slow_sink)


def run_child(what: str, *args: str) -> dict[str, float]:
    """The driver run with ``args`` in a fresh interpreter (same environment): the JSON of its last line."""
    done = subprocess.run([sys.executable, str(DRIVER), *args], check=False, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-4000:]}")
    found: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def machine() -> str:
    """Cores, CPU model and load: other work on the machine shows in every figure."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{os.cpu_count()} cores, {model}, load average {load}"


# -- the meters -----------------------------------------------------------------------------
class CpuMeter:
    """Cores kept busy, on average, by this process and the servers while in the ``with`` block."""

    def __init__(self, **pids: int) -> None:
        import psutil

        self._processes = {"client": psutil.Process(), **{name: psutil.Process(pid) for name, pid in pids.items()}}
        self.seconds: dict[str, float] = {}
        """CPU seconds (user + system) each process used in the block."""
        self.cores: dict[str, float] = {}

    def _times(self) -> dict[str, float]:
        return {name: sum(process.cpu_times()[:2]) for name, process in self._processes.items()}

    @staticmethod
    def _machine_busy() -> float:
        """CPU seconds every process on the machine has used since boot (all but idle and iowait)."""
        import psutil

        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    def __enter__(self) -> CpuMeter:
        self._started, self._before = time.perf_counter(), self._times()
        self._machine_before = self._machine_busy()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._started
        self.seconds = {name: used - self._before[name] for name, used in self._times().items()}
        self.cores = {name: used / self.wall for name, used in self.seconds.items()}
        self.machine = (self._machine_busy() - self._machine_before) / self.wall
        """Cores busy on the whole machine, ours and everyone else's."""

    @property
    def busy(self) -> float:
        """Cores kept busy by all the processes together."""
        return sum(self.cores.values())

    def __str__(self) -> str:
        each = ", ".join(f"{name} {cores:.2f}" for name, cores in self.cores.items())
        return f"{each}; total {self.busy:.2f} (machine {self.machine:.2f})"


class RssSampler:
    """Peak resident set size of this process while in the ``with`` block.

    Two witnesses: psutil samples on a thread, and the kernel's high-water mark
    (``VmHWM``, reset on entry through ``/proc/self/clear_refs``), which also sees
    peaks between samples. ``ru_maxrss`` is not used: after fork and exec it still
    holds the parent's size.
    """

    def __init__(self, interval: float = RSS_SAMPLE_SECONDS) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.baseline = self.peak = 0

    def rss(self) -> int:
        return int(self._process.memory_info().rss)

    @staticmethod
    def high_water_mark(reset: bool = False) -> int:
        """The kernel's peak RSS of this process (0 where /proc does not tell)."""
        try:
            if reset:
                Path("/proc/self/clear_refs").write_text("5")
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> RssSampler:
        self.high_water_mark(reset=True)
        self.baseline = self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss(), self.high_water_mark())

    def figures(self, seconds: float) -> dict[str, float]:
        """What a child process reports to the parent: the block's RSS and ``seconds``."""
        return {"baseline": self.baseline, "peak": self.peak, "growth": self.peak - self.baseline, "seconds": seconds}
