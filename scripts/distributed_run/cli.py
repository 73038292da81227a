"""Run the mapped fan-out example DAG under a real scheduler and check that uploads overlap.

Everything is started here, on 127.0.0.1 only, and stopped again at the end
(also on failure or Ctrl-C):

1. a throwaway PostgreSQL server (Debian's packages; ``initdb`` into a temp dir,
   run as the ``postgres`` user when we are root, since PostgreSQL refuses root),
   with a database for Airflow's metadata;
2. the embedded strict ECR+S3 (``python -m airflow_ecr_layers.testing.server``) in
   its own process, seeded with N sources of ~24 MiB each (multipart uploads to S3),
   and the target repository;
3. an ``AIRFLOW_HOME`` in the temp dir: LocalExecutor (or, with ``--executor celery``,
   CeleryExecutor with a throwaway ``redis-server`` as its broker and PostgreSQL as its
   result backend), PostgreSQL, the project's ``example_dags`` folder, no examples, DAGs
   unpaused at creation; ``airflow db migrate``; then what ``airflow standalone`` runs,
   minus the triggerer (the fan-out DAG defers nothing): ``airflow scheduler``,
   ``airflow dag-processor`` and ``airflow api-server`` (task processes report to its
   execution API), plus, on Celery, two ``airflow celery worker`` processes with the
   Celery hostnames ``worker-a@...`` and ``worker-b@...`` and ``--worker-concurrency`` pool
   processes each; each in its own process group with its log in the temp dir. The Celery
   workers load the spread barrier (``spread_barrier``, a listener plugin):
   each upload waits, once running, until both workers hold one. A worker holds at most
   ``--worker-concurrency`` tasks (prefetch multiplier 1, late acks), so with more sources
   than that some upload must go to the other worker: both run uploads, at the same time,
   for certain. Hence ``--executor celery`` needs ``--sources`` > ``--worker-concurrency``;
4. ``airflow dags trigger example_ecr_layers_fanout --conf {...}`` once the DAG is
   parsed, and a bounded wait for the run to finish;
5. the mapped ``layer.upload_parts`` task instances read from the metadata DB: a
   timeline of their start/end per map index and the highest number of uploads
   observed running at once; the transfer window of each upload from its task log;
   the image read back from ECR (BatchGetImage): each layer digest must be the
   sha256 of its source and the image digest the sha256 of the manifest; on Celery,
   which worker ran each upload (the task instances' ``hostname``), and that the spread
   barrier let each of them through (its line in their task logs).

Exit status 0 only when the DAG run succeeded, at least two uploads overlapped in
time, every digest checks out and, on Celery, both workers ran uploads. The last line is
``distributed run: ok (max overlapping uploads = N; tasks=N...)`` (LocalExecutor),
``distributed run: ok (executor=CeleryExecutor, workers=2, uploads per worker=A/B,
max overlapping uploads=N)`` (CeleryExecutor), or ``distributed run: FAILED (...)``.

    scripts/distributed-run.sh [--executor local|celery] [--worker-concurrency 2]
                               [--sources 4] [--size-mib 24] [--parallelism 8]
                               [--timeout 600] [--keep] [--throttle SHARE] [--same-tag]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from distributed_run.progress import STARTED, RunFailed, say
from distributed_run.run import Options, run


def parse_options(argv: list[str] | None = None) -> tuple[Options, bool]:
    """The run's options from the command line, and whether to keep the temp dir (``--keep``)."""
    parser = argparse.ArgumentParser(
        prog="scripts/distributed-run.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--executor",
        choices=("local", "celery"),
        default="local",
        help="LocalExecutor, or CeleryExecutor with a Redis broker and two Celery workers",
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=2,
        help="pool processes per Celery worker (--executor celery; must be below --sources)",
    )
    parser.add_argument("--sources", type=int, default=4, help="number of sources (mapped layers)")
    parser.add_argument("--size-mib", type=int, default=24, help="approximate size of each source in MiB")
    parser.add_argument("--parallelism", type=int, default=8, help="[core] parallelism (at least 4)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the DAG run")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data) after a success")
    parser.add_argument(
        "--throttle",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="answer this share of ECR calls with ThrottlingException (e.g. 0.3)",
    )
    parser.add_argument(
        "--same-tag",
        action="store_true",
        help="then run the one-step push DAG twice at once, pushing two sources to one tag",
    )
    args = parser.parse_args(argv)
    if args.parallelism < 4 or args.sources < 2:
        parser.error("--parallelism must be >= 4 and --sources >= 2 for overlap to be possible")
    if args.worker_concurrency < 1:
        parser.error("--worker-concurrency must be at least 1")
    if args.executor == "celery" and args.sources <= args.worker_concurrency:
        parser.error(
            "--executor celery needs --sources > --worker-concurrency: with no more uploads than one "
            "worker's pool processes, the spread barrier cannot force uploads onto both workers"
        )
    options = Options(
        celery=args.executor == "celery",
        worker_concurrency=args.worker_concurrency,
        sources=args.sources,
        size_mib=args.size_mib,
        parallelism=args.parallelism,
        timeout=args.timeout,
        throttle=args.throttle,
        same_tag=args.same_tag,
    )
    return options, args.keep


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    """A temp dir for the run's data and logs, removed after a success unless ``keep``."""
    work = Path(tempfile.mkdtemp(prefix="ecr-layers-distributed-"))
    work.chmod(0o755)  # the postgres user must reach work/pg
    (work / "logs").mkdir()
    ok = False
    try:
        yield work
        ok = True
    finally:
        if keep or not ok:
            print(f"logs and data kept in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run, and end with the last line: ``distributed run: ok (...)`` (0) or ``FAILED (...)``."""
    options, keep = parse_options(argv)
    try:
        import asyncpg  # noqa: F401
        import psycopg2  # noqa: F401
    except ImportError:
        print(
            "distributed run: FAILED (no PostgreSQL driver: psycopg2-binary and asyncpg must be installed)", flush=True
        )
        return 1

    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        with workspace(keep) as work:
            say(f"working in {work}")
            failures, figures = run(options, work)
            if failures:
                raise RunFailed("; ".join(failures))
    except RunFailed as exc:
        message = str(exc)
        print(f"\nerror: {message}", flush=True)
        print(f"distributed run: FAILED ({message.splitlines()[0]})", flush=True)
        return 1
    except KeyboardInterrupt as exc:
        print(f"distributed run: FAILED (interrupted{': ' + str(exc) if str(exc) else ''})", flush=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - anything else still ends in the FAILED line
        import traceback

        traceback.print_exc()
        print(f"distributed run: FAILED ({type(exc).__name__}: {exc})", flush=True)
        return 1
    say(f"done in {time.monotonic() - STARTED:.0f}s")
    print(f"distributed run: ok ({figures})", flush=True)
    return 0
