"""Throughput, memory, parallel layers and CPU of the upload path, side by side with their floors.

    python benchmarks/bench.py [--quick] [--only SECTIONS]

Starts three processes on loopback: moto's server (``benchmarks/moto_server.py``:
S3 holding the artifacts, with ranged GETs that read only the range, and the
strict ECR for the server-bound reference runs), ``benchmarks/sink.py`` (an ECR
that reads and discards every body) and a second sink that answers each part
``PART_DELAY_MS`` after reading it. Then measures, by section (``--only`` takes a
comma-separated list of them; all by default):

- ``throughput``: **floor**, a plain boto3 loop calling UploadLayerPart on one part
  already in memory (no S3, no hashing), to the sink; **ours**,
  ``UploadLayerPartsOperator``'s path (``open_source`` on an ``s3://``
  ``ObjectStoragePath`` read through s3fs from moto, then ``EcrLayersHook.upload_parts``:
  pipelined reads, sha256, fast request), to the sink, with the fast request on and
  off; the floor loop and ours against moto's ECR (server-bound, for reference);
- ``rss``: peak RSS growth of ours for a small and a large artifact, each in a fresh process;
- ``parallel``: four layers through ``push_layers`` with ``max_concurrency`` 1 and 2, to the sink;
- ``rtt``: the same four layers at ``max_concurrency`` 1, 2 and 4 to the sink that holds
  each answer (a stand-in for a real registry's round trip: what parallel layers are for),
  each speedup beside its ceiling and what ran out;
- ``cpu``: the client process's CPU seconds per GiB of ours, against the floor measured
  in the same process: sha256 of the bytes, base64 into the body, sha256 of the body;
- ``repush``: re-pushing a prefix unchanged and with one object changed; one file as one
  layer and as four chunks to the slow sink;
- ``copy``: a layer copied from moto's ECR to the sink, against a push of the same bytes.

It ends with summary lines::

    bench: ours_vs_floor=<x.xx> rss_growth_parts=<y.y> rss_2g_vs_256m=<z.zz> parallel_speedup=<w.ww>
           parallel_speedup_rtt=<a.aa> parallel_speedup_rtt4=<b.bb> rtt4_ceiling=<c.cc>
           cpu_s_per_gib=<d.dd> cpu_floor_s_per_gib=<e.ee>
    repush: ...
    copy: ...

(one ``bench:`` line; only the fields of the sections run). ``ours_vs_floor`` is ours
(fast request) over the floor in MiB/s to the sink; ``rss_growth_parts`` the large run's
peak RSS growth over the part size; ``rss_2g_vs_256m`` the large run's peak RSS over the
small run's (the table also shows the ratio of the growths, which leaves out the ~170 MiB
Airflow brings); ``parallel_speedup`` the four layers' time at concurrency 1 over
concurrency 2, to the sink that answers at once; ``parallel_speedup_rtt`` and
``parallel_speedup_rtt4`` the same at concurrency 2 and 4 to the sink that holds each
answer, ``rtt4_ceiling`` the most concurrency 4 can gain there: the smaller of the layers
in flight and the cores over the cores busy (client and servers) at concurrency 1;
``cpu_s_per_gib`` the client's user + system seconds per GiB of ours, and
``cpu_floor_s_per_gib`` the sum of the three steps no client can skip.
``--quick`` scales every size down (the memory pair becomes 64 MiB and 512 MiB).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
PART_SIZE = 20 * MiB
"""20971520 bytes: ECR's largest part, the size the floor figures in DESIGN.md use."""
REGION = "us-east-1"
BUCKET = "bench"
REPOSITORY = "bench/layers"
S3_CONN_ID = "aws_default"
SINK_CONN_ID = "ecr_sink"
SLOW_SINK_CONN_ID = "ecr_sink_slow"
PART_DELAY_MS = 50
"""The slow sink's wait before answering each part: a stand-in for a real registry's round trip."""
MOTO_ECR_CONN_ID = "ecr_moto"
SEED_CHUNK = 32 * MiB
WARMUP_SIZE = 1 * MiB
RSS_SAMPLE_SECONDS = 0.005


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
)
SECTIONS = ("throughput", "rss", "parallel", "rtt", "cpu", "repush", "copy")
"""What ``--only`` can choose, in the order they run."""
RTT_CONCURRENCIES = (1, 2, 4)
"""The ``max_concurrency`` values of the run against the sink that holds each answer."""
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
)
"""For the test suite: every code path, no meaningful figure."""
REPUSH_OBJECTS = 8
REPUSH_PREFIX = "repush/"
REPUSH_REPOSITORY = "bench/repush"


# -- processes and environment ------------------------------------------------------------
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
def services() -> Iterator[tuple[Service, Service, Service]]:
    """moto (S3 and the strict ECR), the sink, and the sink that waits before each answer;
    Airflow connections pointing at each."""
    sink_script = str(ROOT / "benchmarks" / "sink.py")
    with (
        service(sys.executable, str(ROOT / "benchmarks" / "moto_server.py")) as moto,
        service(sys.executable, sink_script, "--part-size", str(PART_SIZE)) as sink,
        service(
            sys.executable, sink_script, "--part-size", str(PART_SIZE), "--part-delay-ms", str(PART_DELAY_MS)
        ) as slow_sink,
    ):
        configure_environment(moto.url, sink.url, slow_sink.url)
        yield moto, sink, slow_sink


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


def boto_client(service_name: str, endpoint_url: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service_name, endpoint_url=endpoint_url, region_name=REGION, config=Config(**config) if config else None
    )


def mib_per_s(size: int, seconds: float) -> float:
    return size / MiB / seconds


# -- artifacts in S3 ----------------------------------------------------------------------
def pattern_chunk(index: int, size: int, salt: bytes = b"") -> bytes:
    """Incompressible-looking bytes that differ per chunk (cheap: one shake_256 call)."""
    return hashlib.shake_256(salt + index.to_bytes(8, "big")).digest(size)


def seed_object(s3: Any, key: str, size: int, salt: bytes = b"") -> str:
    """Put ``size`` bytes at ``s3://BUCKET/key`` a chunk at a time (multipart); return the URL."""
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    parts = []
    for number, offset in enumerate(range(0, size, SEED_CHUNK), start=1):
        body = pattern_chunk(number, min(SEED_CHUNK, size - offset), salt)
        etag = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=body)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    return f"s3://{BUCKET}/{key}"


# -- what is measured -----------------------------------------------------------------------
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


def ecr_hook(conn_id: str, fast_upload: bool) -> Any:
    from airflow_ecr_layers.hooks import EcrLayersHook

    return EcrLayersHook(aws_conn_id=conn_id, fast_upload=fast_upload)


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


# -- memory, in a fresh process -------------------------------------------------------------
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


def rss_child(url: str, warmup_url: str) -> dict[str, float]:
    """In a fresh process: warm up on a tiny object, then upload ``url`` to the sink
    while sampling RSS. Printed as JSON for the parent."""
    hook = ecr_hook(SINK_CONN_ID, fast_upload=True)
    ours(hook, warmup_url)  # imports, connections, botocore's model cache, s3fs's session
    with RssSampler() as sampler:
        seconds = ours(hook, url)
    return {
        "baseline": sampler.baseline,
        "peak": sampler.peak,
        "growth": sampler.peak - sampler.baseline,
        "seconds": seconds,
    }


def measure_rss(url: str, warmup_url: str) -> dict[str, float]:
    """:func:`rss_child` in a fresh interpreter (same environment)."""
    done = subprocess.run(
        [sys.executable, __file__, "--rss-child", url, warmup_url],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"the RSS run of {url} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the run -------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    target: str
    size: int
    seconds: float

    @property
    def rate(self) -> float:
        return mib_per_s(self.size, self.seconds)


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


def seed_all(moto_url: str, sizes: Sizes, sections: frozenset[str] = frozenset(SECTIONS)) -> dict[int, str]:
    """The bucket, the moto repository, and one S3 object per size the ``sections`` use."""
    # moto joins a multipart upload in memory: a 2 GiB one can take a minute, and a retry would fail
    s3 = boto_client("s3", moto_url, read_timeout=900, retries={"total_max_attempts": 1})
    s3.create_bucket(Bucket=BUCKET)
    boto_client("ecr", moto_url).create_repository(repositoryName=REPOSITORY)
    used = {
        "throughput": (sizes.throughput, sizes.moto),
        "rss": (sizes.rss_small, sizes.rss_large),
        "parallel": (sizes.layer,),
        "rtt": (sizes.layer,),
        "cpu": (sizes.throughput,),
    }
    wanted = {WARMUP_SIZE}.union(*(used.get(section, ()) for section in sections))
    return {size: seed_object(s3, f"artifact-{size}", size) for size in sorted(wanted)}


def measure_sink_throughput(sizes: Sizes, sink_url: str, keys: dict[int, str]) -> list[Row]:
    """Floor and ours to the sink, interleaved ``repeats`` times (so drifts hit all alike); medians."""
    from airflow_ecr_layers.core.ecr import fast_request

    part = pattern_chunk(0, PART_SIZE)
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


def measure_moto_throughput(sizes: Sizes, moto_url: str, keys: dict[int, str]) -> list[Row]:
    """The floor loop and ours against moto's ECR: server-bound, for reference."""
    part = pattern_chunk(0, PART_SIZE)
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


LAYERS = 4
"""Layers in each parallel run."""


def measure_parallel(
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
    return {c: sorted(runs, key=lambda run: run[0])[len(runs) // 2] for c, runs in found.items()}


def speedup(parallel: dict[int, tuple[float, CpuMeter]], concurrency: int) -> float:
    """Time at concurrency 1 over time at ``concurrency``."""
    return parallel[1][0] / parallel[concurrency][0]


def ceiling(parallel: dict[int, tuple[float, CpuMeter]], concurrency: int) -> float:
    """The most ``concurrency`` can gain over 1: the layers in flight, or the cores over the
    cores busy (client and servers) at concurrency 1, whichever is smaller (the same work
    cannot go faster than all the cores doing it)."""
    cores = os.cpu_count() or 1
    return min(float(min(concurrency, LAYERS)), cores / parallel[1][1].busy)


# -- CPU per GiB ------------------------------------------------------------------------------
GiB = 1024 * MiB
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

    part = pattern_chunk(1, PART_SIZE)
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


def measure_cpu(sizes: Sizes, keys: dict[int, str], servers: dict[str, int]) -> CpuFigures:
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
    median = sorted(runs, key=lambda run: run.seconds["client"])[len(runs) // 2]
    return CpuFigures(
        ours=median.seconds["client"] / gib,
        ours_runs=[run.seconds["client"] / gib for run in runs],
        floor=cpu_floor(sizes.throughput),
        servers={name: used / gib for name, used in median.seconds.items() if name != "client"},
    )


def print_cpu(sizes: Sizes, cpu: CpuFigures) -> None:
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


# -- publishing what changed -----------------------------------------------------------------
@dataclass(frozen=True)
class Push:
    label: str
    seconds: float
    totals: dict[str, int]


def push_prefix(
    conn_id: str, url: str, repository: str, tags: list[str], chunk_size: int | None = None, max_concurrency: int = 2
) -> Push:
    """One ``push_artifact`` of what ``url`` (a prefix or an object) stands for, as the operator does it."""
    from airflow_ecr_layers.core.oci.layers import layers_of
    from airflow_ecr_layers.core.push.artifact import push_artifact
    from airflow_ecr_layers.object_storage import open_sources

    engine = ecr_hook(conn_id, fast_upload=True).engine
    started = time.perf_counter()
    layers = layers_of(open_sources(url, S3_CONN_ID), "application/octet-stream", chunk_size=chunk_size)
    result = push_artifact(engine, repository, layers, tags=tags, part_size=PART_SIZE, max_concurrency=max_concurrency)
    return Push("", time.perf_counter() - started, result.totals)


def measure_repush(sizes: Sizes, moto_url: str) -> list[Push]:
    """Eight objects under a prefix to moto's strict ECR: pushed, pushed again unchanged, then
    again after one object is overwritten with new bytes of the same size."""
    s3 = boto_client("s3", moto_url, read_timeout=900, retries={"total_max_attempts": 1})
    boto_client("ecr", moto_url).create_repository(repositoryName=REPUSH_REPOSITORY)
    for index in range(REPUSH_OBJECTS):
        seed_object(s3, f"{REPUSH_PREFIX}object-{index}.bin", sizes.repush_object, salt=bytes([index]))
    url = f"s3://{BUCKET}/{REPUSH_PREFIX}"
    first = push_prefix(MOTO_ECR_CONN_ID, url, REPUSH_REPOSITORY, ["latest"])
    unchanged = push_prefix(MOTO_ECR_CONN_ID, url, REPUSH_REPOSITORY, ["latest"])
    seed_object(s3, f"{REPUSH_PREFIX}object-3.bin", sizes.repush_object, salt=b"changed")
    one_changed = push_prefix(MOTO_ECR_CONN_ID, url, REPUSH_REPOSITORY, ["latest"])
    labels = ("first push", "again, unchanged", "again, 1 of 8 changed")
    return [Push(label, p.seconds, p.totals) for label, p in zip(labels, (first, unchanged, one_changed), strict=True)]


def measure_chunked(sizes: Sizes, moto_url: str) -> tuple[Push, Push]:
    """One file to the slow sink, as one layer and as four chunks, at ``max_concurrency`` 2;
    the two interleaved ``repeats`` times, medians."""
    s3 = boto_client("s3", moto_url, read_timeout=900, retries={"total_max_attempts": 1})
    url = seed_object(s3, "chunked/model.bin", sizes.chunked_file, salt=b"chunked")
    runs: dict[str, list[Push]] = {"one layer": [], "4 chunks": []}
    for _ in range(sizes.repeats):
        runs["one layer"].append(push_prefix(SLOW_SINK_CONN_ID, url, REPOSITORY, [], max_concurrency=2))
        runs["4 chunks"].append(
            push_prefix(SLOW_SINK_CONN_ID, url, REPOSITORY, [], chunk_size=sizes.chunked_file // 4, max_concurrency=2)
        )
    whole, chunked = (sorted(found, key=lambda p: p.seconds)[len(found) // 2] for found in runs.values())
    return Push("one layer", whole.seconds, whole.totals), Push("4 chunks", chunked.seconds, chunked.totals)


def print_repush(sizes: Sizes, pushes: list[Push], chunks: tuple[Push, Push]) -> None:
    print(
        f"\n{REPUSH_OBJECTS} objects of {sizes.repush_object // MiB} MiB under a prefix, push_artifact to moto's "
        "strict ECR (bytes as the engine counts them: read from S3, sent in UploadLayerPart)"
    )
    print(f"{'push':<24} {'s':>7} {'reused':>7} {'skipped':>8} {'MiB read':>9} {'MiB sent':>9}")
    for push in pushes:
        t = push.totals
        print(
            f"{push.label:<24} {push.seconds:>7.2f} {t['reused']:>4}/{t['layers']:<2} {t['skipped']:>8} "
            f"{t['bytes_read'] / MiB:>9.1f} {t['bytes_sent'] / MiB:>9.1f}"
        )
    print(
        f"\none {sizes.chunked_file // MiB} MiB file to a sink that answers each part {PART_DELAY_MS} ms after "
        f"reading it, max_concurrency 2 (median of {sizes.repeats})"
    )
    print(f"{'layers':<24} {'s':>7} {'MiB/s':>8}")
    for push in chunks:
        print(f"{push.label:<24} {push.seconds:>7.2f} {mib_per_s(sizes.chunked_file, push.seconds):>8.1f}")


def repush_line(pushes: list[Push], chunks: tuple[Push, Push]) -> str:
    first, unchanged, changed = (p.totals for p in pushes)
    whole, chunked = chunks
    return (
        f"repush: unchanged_read_ratio={unchanged['bytes_read'] / first['bytes_read']:.3f} "
        f"unchanged_sent_ratio={unchanged['bytes_sent'] / first['bytes_sent']:.3f} "
        f"one_changed_read_ratio={changed['bytes_read'] / first['bytes_read']:.3f} "
        f"one_changed_sent_ratio={changed['bytes_sent'] / first['bytes_sent']:.3f} "
        f"chunked_speedup={whole.seconds / chunked.seconds:.2f}"
    )


# -- copying out of ECR ----------------------------------------------------------------------
COPY_REPOSITORY = "bench/copy-source"


def seed_copy_source(sizes: Sizes, moto_url: str) -> str:
    """A ``copy_layer``-byte artifact in moto's ECR (pushed from its S3); returns the S3 URL."""
    from airflow_ecr_layers.core.oci.layers import layers_of
    from airflow_ecr_layers.core.push.artifact import push_artifact
    from airflow_ecr_layers.object_storage import open_sources

    s3 = boto_client("s3", moto_url, read_timeout=900, retries={"total_max_attempts": 1})
    url = seed_object(s3, "copy/layer.bin", sizes.copy_layer, salt=b"copy")
    boto_client("ecr", moto_url).create_repository(repositoryName=COPY_REPOSITORY)
    engine = ecr_hook(MOTO_ECR_CONN_ID, fast_upload=True).engine
    layers = layers_of(open_sources(url, S3_CONN_ID), "application/octet-stream")
    push_artifact(engine, COPY_REPOSITORY, layers, tags=["v1"], part_size=PART_SIZE)
    return url


def copy_child(warmup: str) -> dict[str, float]:
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
    return {
        "baseline": sampler.baseline,
        "peak": sampler.peak,
        "growth": sampler.peak - sampler.baseline,
        "seconds": seconds,
    }


def measure_copy(sizes: Sizes, moto_url: str) -> tuple[dict[str, float], float]:
    """The copy (fresh process, RSS sampled) and a push of the same bytes from S3 to the sink."""
    from airflow_ecr_layers.core.oci.layers import LayerSpec
    from airflow_ecr_layers.core.push.artifact import push_artifact
    from airflow_ecr_layers.core.sources.blobs import BytesSource

    url = seed_copy_source(sizes, moto_url)
    engine = ecr_hook(MOTO_ECR_CONN_ID, fast_upload=True).engine
    small = BytesSource(pattern_chunk(7, WARMUP_SIZE), "warm-up")
    push_artifact(engine, COPY_REPOSITORY, [LayerSpec(small, "application/octet-stream")], tags=["warmup"])
    done = subprocess.run(
        [sys.executable, __file__, "--copy-child", "warmup"], check=False, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"the copy run failed:\n{done.stderr[-4000:]}")
    copied = json.loads(done.stdout.strip().splitlines()[-1])
    pushed = ours(ecr_hook(SINK_CONN_ID, fast_upload=True), url)
    return copied, pushed


def print_copy(sizes: Sizes, copied: dict[str, float], pushed: float) -> None:
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


def run(sizes: Sizes, sections: frozenset[str] = frozenset(SECTIONS)) -> str:
    """Measure and print the ``sections`` (each table as soon as it is measured); return the
    summary lines (``bench:``, ``repush:``, ``copy:``) with the fields of those sections."""
    started = time.perf_counter()
    print(f"machine: {machine()}", flush=True)
    bench: list[str] = []
    lines: list[str] = []
    with services() as (moto, sink, slow_sink):
        print(f"seeding S3 on {moto.url} ...", flush=True)
        keys = seed_all(moto.url, sizes, sections)
        chosen = ", ".join(name for name in SECTIONS if name in sections)
        print(f"seeded in {time.perf_counter() - started:.0f}s; measuring: {chosen}", flush=True)
        if "throughput" in sections:
            rows = measure_sink_throughput(sizes, sink.url, keys) + measure_moto_throughput(sizes, moto.url, keys)
            print_throughput(rows, sizes.repeats)
            bench.append(f"ours_vs_floor={rows[2].rate / rows[0].rate:.2f}")
        if "rss" in sections:
            small = measure_rss(keys[sizes.rss_small], keys[WARMUP_SIZE])
            large = measure_rss(keys[sizes.rss_large], keys[WARMUP_SIZE])
            print_memory(sizes, small, large)
            bench.append(f"rss_growth_parts={large['growth'] / PART_SIZE:.1f}")
            bench.append(f"rss_2g_vs_256m={large['peak'] / small['peak']:.2f}")
        if "parallel" in sections:
            parallel = measure_parallel(sizes, keys, {"moto": moto.pid, "sink": sink.pid})
            print_parallel(sizes, parallel, "the sink")
            bench.append(f"parallel_speedup={speedup(parallel, 2):.2f}")
        if "rtt" in sections:
            waiting = measure_parallel(
                sizes, keys, {"moto": moto.pid, "sink": slow_sink.pid}, SLOW_SINK_CONN_ID, RTT_CONCURRENCIES
            )
            print_parallel(sizes, waiting, f"a sink that answers each part {PART_DELAY_MS} ms after reading it")
            bench.append(f"parallel_speedup_rtt={speedup(waiting, 2):.2f}")
            bench.append(f"parallel_speedup_rtt4={speedup(waiting, 4):.2f}")
            bench.append(f"rtt4_ceiling={ceiling(waiting, 4):.2f}")
        if "cpu" in sections:
            cpu = measure_cpu(sizes, keys, {"moto": moto.pid, "sink": sink.pid})
            print_cpu(sizes, cpu)
            bench.append(f"cpu_s_per_gib={cpu.ours:.2f}")
            bench.append(f"cpu_floor_s_per_gib={cpu.floor_total:.2f}")
        if "repush" in sections:
            pushes = measure_repush(sizes, moto.url)
            chunks = measure_chunked(sizes, moto.url)
            print_repush(sizes, pushes, chunks)
            lines.append(repush_line(pushes, chunks))
        if "copy" in sections:
            copied, pushed = measure_copy(sizes, moto.url)
            print_copy(sizes, copied, pushed)
            lines.append(copy_line(sizes, copied, pushed))
    print(f"\ntotal {time.perf_counter() - started:.0f}s; machine after: {machine()}")
    return "\n".join(([f"bench: {' '.join(bench)}"] if bench else []) + lines)


def print_throughput(rows: list[Row], repeats: int) -> None:
    print(f"\nthroughput, {PART_SIZE // MiB} MiB parts (sink rows: median of {repeats})")
    print(f"{'path':<38} {'target':<9} {'MiB':>6} {'s':>7} {'MiB/s':>8}")
    for row in rows:
        print(f"{row.name:<38} {row.target:<9} {row.size // MiB:>6} {row.seconds:>7.2f} {row.rate:>8.1f}")


def print_memory(sizes: Sizes, small: dict[str, float], large: dict[str, float]) -> None:
    print("\npeak RSS of ours to the sink, fresh process each (growth over the warmed-up baseline)")
    print(f"{'artifact MiB':>12} {'baseline MiB':>13} {'peak MiB':>9} {'growth MiB':>11} {'parts':>6} {'MiB/s':>7}")
    for size, found in ((sizes.rss_small, small), (sizes.rss_large, large)):
        print(
            f"{size // MiB:>12} {found['baseline'] / MiB:>13.1f} {found['peak'] / MiB:>9.1f} "
            f"{found['growth'] / MiB:>11.1f} {found['growth'] / PART_SIZE:>6.2f} "
            f"{mib_per_s(size, found['seconds']):>7.1f}"
        )
    print(
        f"peak RSS ratio, large/small: {large['peak'] / small['peak']:.2f} "
        f"(growth ratio {large['growth'] / small['growth']:.2f})"
    )


def print_parallel(sizes: Sizes, parallel: dict[int, tuple[float, CpuMeter]], target: str) -> None:
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


def limit(meter: CpuMeter, cores: int) -> str:
    """What a parallel run ran out of: the cores (ours, or taken by other work on the
    machine), or neither (then the layers waited on the servers' answers)."""
    if meter.busy >= 0.9 * cores:
        return f"the cores ran out: {meter.busy:.2f} of {cores} busy with the client and servers"
    if meter.machine >= 0.9 * cores:
        others = meter.machine - meter.busy
        return f"the cores ran out: {meter.machine:.2f} of {cores} busy, {others:.2f} of them with other work"
    return f"no core ran out ({meter.machine:.2f} of {cores} busy): the layers waited on the servers"


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
        print(json.dumps(rss_child(*args.rss_child)))
        return 0
    if args.copy_child:
        print(json.dumps(copy_child(args.copy_child)))
        return 0
    sizes = TINY if args.tiny else QUICK if args.quick else FULL
    sections = frozenset({"repush", "copy"}) if args.repush_only else args.only or frozenset(SECTIONS)
    print(run(sizes, sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
