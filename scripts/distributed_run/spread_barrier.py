"""The spread barrier: holds each upload of the Celery run until both workers hold one.

A worker holds at most ``--worker-concurrency`` tasks (``worker_prefetch_multiplier=1``, tasks
acknowledged only when done), and while its uploads wait here it takes no more. With more
uploads than that, some upload can only go to the other worker, whose arrival lets everyone
through: every worker runs an upload, and uploads of both run at the same time. Airflow-free:
``worker_plugins/spread_barrier_plugin.py`` calls it from the task process; the driver sets
its environment (``barrier_environment``) and looks for ``PASSED`` in the task logs.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("airflow.task.spread_barrier")

PASSED = "spread barrier: open, every worker has held an upload"
"""What an upload's task log says once the barrier has let it through."""
POLL_SECONDS = 0.5


def barrier_environment(arrivals: Path, task: str, workers: Sequence[str], timeout: float) -> dict[str, str]:
    """The Celery workers' environment for the barrier: hold ``task`` (``dag_id.task_id``)
    until each of ``workers`` has arrived, recording arrivals under ``arrivals``, for at
    most ``timeout`` seconds."""
    return {
        "SPREAD_BARRIER_DIR": str(arrivals),
        "SPREAD_BARRIER_TASK": task,
        "SPREAD_BARRIER_WORKERS": ",".join(workers),
        "SPREAD_BARRIER_TIMEOUT": str(timeout),
    }


def arrivals_per_worker(run_dir: Path) -> dict[str, int]:
    """Uploads that arrived, per worker (arrival files are ``<worker>.<map index>``)."""
    counts: dict[str, int] = {}
    for path in run_dir.iterdir():
        worker = path.name.rsplit(".", 1)[0]
        counts[worker] = counts.get(worker, 0) + 1
    return counts


def hold_until_every_worker_arrives(task_instance: Any, environ: Mapping[str, str] = os.environ) -> None:
    """Record this upload's arrival (its worker from the task instance's ``hostname``,
    ``worker-a@host``), then wait until every worker has one, or give up at the deadline
    and say so (the run's spread check then fails with its own message)."""
    if f"{task_instance.dag_id}.{task_instance.task_id}" != environ.get("SPREAD_BARRIER_TASK"):
        return
    workers = [w for w in environ.get("SPREAD_BARRIER_WORKERS", "").split(",") if w]
    timeout = float(environ.get("SPREAD_BARRIER_TIMEOUT", "300"))
    worker = str(task_instance.hostname or "").split("@", 1)[0]
    if worker not in workers:
        log.error("spread barrier: hostname %r is none of the workers %s; not waiting", task_instance.hostname, workers)
        return
    run_dir = Path(environ["SPREAD_BARRIER_DIR"]) / re.sub(r"[^A-Za-z0-9_.-]", "_", task_instance.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{worker}.{task_instance.map_index}").touch()
    log.info(
        "spread barrier: %s holds upload %s; waiting until every worker holds one", worker, task_instance.map_index
    )
    started = time.monotonic()
    while True:
        arrivals = arrivals_per_worker(run_dir)
        if all(arrivals.get(w) for w in workers):
            log.info(
                "%s (%s so far); upload %s waited %.1f s",
                PASSED,
                ", ".join(f"{w} {arrivals[w]}" for w in workers),
                task_instance.map_index,
                time.monotonic() - started,
            )
            return
        if time.monotonic() - started > timeout:
            log.error(
                "spread barrier: gave up after %.0f s: no upload arrived from %s; going on",
                timeout,
                ", ".join(w for w in workers if not arrivals.get(w)),
            )
            return
        time.sleep(POLL_SECONDS)
