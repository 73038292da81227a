"""How soon the command line gets to work: ``plan`` of a local file, and ``push`` of a local
file to the loopback sink, split into start-up and upload.

Each run starts ``airflow-ecr-layers`` in a fresh process on the plain AWS chain (no
``--conn-id``, so Airflow is never imported). The sink runs in this process and notes the
arrival of every request on the machine's monotonic clock, so a push's time splits into:

- ``startup``: from the process's start to the arrival of its first ECR request (interpreter,
  imports, the source opened, the botocore client made);
- ``upload``: from the first ECR request to the last (the layer's parts, the manifest);
- ``wall``: from the start to the process's exit (the JSON printed, the interpreter gone).

The package's own modules are compiled to bytecode first, as installing a wheel does (an
editable checkout under ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile them in every
run). Also printed, as the floor that start-up cannot go under while the command uses botocore:
a process that only imports botocore and makes an ECR client. Every figure is the median of
``--runs`` (default 9) after one run not counted.

    .venv/bin/python benchmarks/cli_startup.py [--runs N] [--size-mib M]

The last line is ``cli: plan_s=... push_startup_s=... push_upload_s=... push_wall_s=...
botocore_client_s=...``.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sink import EcrSinkServer  # noqa: E402

T = TypeVar("T")
CLI = [sys.executable, "-m", "airflow_ecr_layers.cli"]
BOTOCORE_CLIENT = (
    "import botocore.session; botocore.session.get_session()"
    ".create_client('ecr', region_name='us-east-1', endpoint_url='http://127.0.0.1:9')"
)


def plain_env() -> dict[str, str]:
    """The plain AWS chain with made-up keys: the sink checks no signature."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIRFLOW"))}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    return env


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(start, exit) of one process on the monotonic clock; its output is thrown away."""
    start = time.monotonic()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return start, time.monotonic()


def push_once(server: EcrSinkServer, source: Path, run: int, env: dict[str, str]) -> tuple[float, float, float]:
    """(startup, upload, wall) seconds of one push."""
    server.arrivals.clear()
    argv = [*CLI, "push", source.as_uri(), f"bench/cli:run{run}", "--endpoint-url", server.endpoint_url, "--no-resume"]
    start, end = timed(argv, env)
    first, last = server.arrivals[0][0], server.arrivals[-1][0]
    return first - start, last - first, end - start


def runs_of(runs: int, measure: Callable[[], T]) -> list[T]:
    """``runs`` results of ``measure`` after one that is not counted (page cache, bytecode)."""
    measure()
    return [measure() for _ in range(runs)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=9, help="runs counted per figure (default 9)")
    parser.add_argument("--size-mib", type=int, default=256, help="size of the local file (default 256)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.size_mib < 1:
        parser.error("--runs and --size-mib must be at least 1")
    env = plain_env()
    compileall.compile_dir(str(HERE.parent / "airflow_ecr_layers"), quiet=1)
    server = EcrSinkServer(0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with tempfile.TemporaryDirectory(prefix="cli-startup-") as work:
            source = Path(work) / "artifact.bin"
            with source.open("wb") as out:
                block = os.urandom(1024 * 1024)
                for _ in range(args.size_mib):
                    out.write(block)
            plan_argv = [*CLI, "plan", source.as_uri()]

            def plan() -> float:
                start, end = timed(plan_argv, env)
                return end - start

            def client() -> float:
                start, end = timed([sys.executable, "-c", BOTOCORE_CLIENT], env)
                return end - start

            counter = iter(range(10**6))
            plans = runs_of(args.runs, plan)
            pushes = runs_of(args.runs, lambda: push_once(server, source, next(counter), env))
            clients = runs_of(args.runs, client)
    finally:
        server.shutdown()
        server.server_close()
    startup = statistics.median(p[0] for p in pushes)
    upload = statistics.median(p[1] for p in pushes)
    wall = statistics.median(p[2] for p in pushes)
    load = os.getloadavg()[0]
    print(f"command line, medians of {args.runs} runs (load average {load:.2f} at the end)")
    print(f"{'what':52} {'median s':>9} {'min s':>7} {'max s':>7}")
    rows = [
        (f"plan of a {args.size_mib} MiB local file", plans),
        ("push: start to its first ECR request", [p[0] for p in pushes]),
        ("push: first ECR request to the last", [p[1] for p in pushes]),
        (f"push of {args.size_mib} MiB: start to exit", [p[2] for p in pushes]),
        ("floor: a process that imports botocore, makes a client", clients),
    ]
    for name, values in rows:
        print(f"{name:52} {statistics.median(values):9.3f} {min(values):7.3f} {max(values):7.3f}")
    print(
        f"cli: plan_s={statistics.median(plans):.3f} push_startup_s={startup:.3f} push_upload_s={upload:.3f} "
        f"push_wall_s={wall:.3f} botocore_client_s={statistics.median(clients):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
