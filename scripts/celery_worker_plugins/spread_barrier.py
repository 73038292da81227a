"""The spread barrier: an Airflow listener plugin the distributed run's Celery workers load.

``scripts/distributed-run.sh --executor celery`` points ``[core] plugins_folder`` of its two
Celery workers (and nothing else) at this folder. In the task process, after the task
instance is marked running, ``on_task_instance_running`` holds each upload of the watched
task (``SPREAD_BARRIER_TASK``, ``dag_id.task_id``) until uploads from every worker named in
``SPREAD_BARRIER_WORKERS`` have arrived: each arrival is a file in ``SPREAD_BARRIER_DIR``
named by the run, the worker (the task instance's ``hostname``, ``worker-a@host``) and the
map index.

With ``task_acks_late`` and ``worker_prefetch_multiplier=1`` a worker of concurrency C holds
at most C tasks, and while C uploads wait here it takes no more. With more uploads than C,
some upload can only go to the other worker, whose arrival releases everyone: every worker
runs an upload, and uploads of both run at the same time. After ``SPREAD_BARRIER_TIMEOUT``
seconds (300 by default) the barrier logs that it gave up and lets the task go on, so the
run fails with its own message. Airflow swallows a listener's exceptions; this one logs them.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger("airflow.task.spread_barrier")

POLL_SECONDS = 0.5
PASSED = "spread barrier: open, every worker has held an upload"
"""What an upload's task log says once the barrier let it through (the run looks for it)."""


def _arrivals(run_dir: Path) -> dict[str, int]:
    """Uploads that arrived, per worker (arrival files are ``<worker>.<map index>``)."""
    counts: dict[str, int] = {}
    for path in run_dir.iterdir():
        worker = path.name.rsplit(".", 1)[0]
        counts[worker] = counts.get(worker, 0) + 1
    return counts


def hold_until_every_worker_arrives(task_instance: Any) -> None:
    """Record this upload's arrival, then wait until every worker has one (or the deadline)."""
    watched = os.environ.get("SPREAD_BARRIER_TASK", "")
    if f"{task_instance.dag_id}.{task_instance.task_id}" != watched:
        return
    workers = [w for w in os.environ.get("SPREAD_BARRIER_WORKERS", "").split(",") if w]
    timeout = float(os.environ.get("SPREAD_BARRIER_TIMEOUT", "300"))
    worker = str(task_instance.hostname or "").split("@", 1)[0]
    if worker not in workers:
        log.error("spread barrier: hostname %r is none of the workers %s; not waiting", task_instance.hostname, workers)
        return
    run_dir = Path(os.environ["SPREAD_BARRIER_DIR"]) / re.sub(r"[^A-Za-z0-9_.-]", "_", task_instance.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{worker}.{task_instance.map_index}").touch()
    log.info(
        "spread barrier: %s holds upload %s; waiting until every worker holds one", worker, task_instance.map_index
    )
    started = time.monotonic()
    while True:
        arrivals = _arrivals(run_dir)
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


class SpreadBarrier:
    """The listener: pluggy calls ``on_task_instance_running`` in the task process."""

    @hookimpl
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        try:
            hold_until_every_worker_arrives(task_instance)
        except Exception:
            log.exception("spread barrier: failed; the task goes on without it")


class SpreadBarrierPlugin(AirflowPlugin):
    name = "distributed_run_spread_barrier"
    listeners = [SpreadBarrier()]
