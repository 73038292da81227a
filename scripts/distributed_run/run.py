"""The run itself: start everything in order, trigger the fan-out DAG and wait for it, check what
it did, then (``--same-tag``) two push runs that meet on one tag; through the throttling proxy
with ``--throttle``. Returns the failures and the figures of the last line."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow_ecr_layers.testing.fault_proxy import FaultProxy
from distributed_run.airflow_services import airflow_env, celery_workers, start_airflow, wait_for_celery_workers
from distributed_run.constants import AIRFLOW, DAG_ID, DAGS_FOLDER, ECR_OPERATIONS, PUSH_DAG_ID, REPOSITORY, UPLOAD_TASK
from distributed_run.processes import Service, check_loopback_only, free_port, run_checked, wait_for
from distributed_run.progress import RunFailed, say, section
from distributed_run.report import Throttling, check_pushed_image, check_uploads, last_line_figures, retries_in_logs
from distributed_run.servers import (
    Postgres,
    Source,
    aws_clients,
    seed_sources,
    start_embedded_aws,
    start_postgres,
    start_redis,
    start_throttling,
)


@dataclass(frozen=True)
class Options:
    """What the command line asked for (``cli`` checks the combinations)."""

    celery: bool = False
    worker_concurrency: int = 2
    sources: int = 4
    size_mib: int = 24
    parallelism: int = 8
    timeout: float = 600
    throttle: float = 0.0
    same_tag: bool = False


def run(options: Options, work: Path) -> tuple[list[str], str]:
    """Everything from PostgreSQL to the checks, in ``work``; returns (failures, the figures
    for the last line). Whatever was started is stopped on the way out."""
    failures: list[str] = []
    executor = "CeleryExecutor" if options.celery else "LocalExecutor"
    tag = f"distributed-{datetime.now():%Y%m%d%H%M%S}"
    run_id = f"distributed__{tag}"
    with contextlib.ExitStack() as stack:
        section("PostgreSQL")
        pg = start_postgres(work, stack)

        section("Embedded ECR+S3")
        aws, endpoint_url = start_embedded_aws(work, dict(os.environ), stack)
        s3, ecr = aws_clients(endpoint_url)
        sources = seed_sources(s3, options.sources, options.size_mib)
        ecr.create_repository(repositoryName=REPOSITORY)
        say(f"created ECR repository {REPOSITORY}")

        section(f"Airflow ({executor}, PostgreSQL)")
        broker = start_redis(work, stack) if options.celery else None
        home = work / "airflow-home"
        (home / "logs").mkdir(parents=True)
        api_port = free_port()
        throttler = start_throttling(endpoint_url, options.throttle, stack) if options.throttle else None
        env = airflow_env(
            home, pg, throttler.endpoint_url if throttler else endpoint_url, api_port, options.parallelism, broker
        )
        say(f"AIRFLOW_HOME={home}; executor {executor}, parallelism {options.parallelism}; dags folder {DAGS_FOLDER}")
        workers = celery_workers(env, options.worker_concurrency, work / "spread-barrier") if broker else []
        services = start_airflow(home, env, api_port, stack, workers)
        if broker is not None:
            wait_for_celery_workers(broker, services)
        wait_for_dag(pg, services, timeout=180)
        check_loopback_only([pg.service, aws, *([broker.service] if broker else []), *services])

        section(f"DAG run of {DAG_ID}")
        trigger(env, home, run_id, {"sources": [s.url for s in sources], "repository": REPOSITORY, "tag": tag})
        state = wait_for_run(pg, run_id, services, timeout=options.timeout)
        say(f"DAG run {run_id} finished: {state}")
        if state != "success":
            failures.append(f"DAG run ended {state}")
        uploads = check_uploads(pg, home, run_id, sources, options.celery)
        failures += uploads.failures
        if state == "success":
            failures += check_pushed_image(ecr, tag, sources)

        winner = None
        if options.same_tag:
            section(f"Two runs of {PUSH_DAG_ID} pushing to one tag at once")
            found, holder = same_tag_runs(pg, env, home, services, ecr, sources, options.timeout)
            failures += found
            winner = None if found else holder

        tries = task_tries(pg, DAG_ID, run_id)
        throttling = count_throttling(throttler, home, run_id, tries) if throttler else None
        tasks = sum(1 for task_id, *_ in tries if task_id == UPLOAD_TASK)
        figures = last_line_figures(uploads, tasks, options.celery, winner, throttling)

        section("Stopping everything this run started")
    return failures, figures


def wait_for_dag(pg: Postgres, services: Sequence[Service], timeout: float) -> None:
    """Until the dag-processor has serialized the DAG into the DB (import errors fail fast)."""

    def parsed() -> bool:
        if pg.query("SELECT count(*) FROM serialized_dag WHERE dag_id = %s", (DAG_ID,))[0][0]:
            return True
        errors = pg.query("SELECT filename, stacktrace FROM import_error WHERE filename LIKE %s", (f"%{DAG_ID}.py",))
        if errors:
            raise RunFailed(f"{errors[0][0]} failed to import:\n{errors[0][1]}")
        return False

    wait_for(f"the dag-processor to parse {DAG_ID}", parsed, timeout=timeout, interval=1, alive=services)
    dags = pg.query("SELECT dag_id, is_paused FROM dag ORDER BY dag_id")
    say(f"{DAG_ID} is parsed; DAGs in the DB: " + ", ".join(f"{d}{' (paused)' if p else ''}" for d, p in dags))


def trigger(env: dict[str, str], home: Path, run_id: str, conf: dict[str, Any], dag_id: str = DAG_ID) -> None:
    say(f"airflow dags trigger {dag_id} --run-id {run_id} --conf '{json.dumps(conf)}'")
    run_checked(
        "airflow dags trigger",
        [AIRFLOW, "dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(conf), "--output", "json"],
        env,
        cwd=home,
        timeout=300,
    )
    say("DAG run created")


def wait_for_run(pg: Postgres, run_id: str, services: Sequence[Service], timeout: float, dag_id: str = DAG_ID) -> str:
    """Poll the DAG run until it is no longer queued/running; print task states as they change."""
    deadline = time.monotonic() + timeout
    last_summary = ""
    while True:
        for service in services:
            service.ensure_running()
        runs = pg.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
        tis = pg.query(
            "SELECT task_id, map_index, coalesce(state, 'none') FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index",
            (dag_id, run_id),
        )
        state = runs[0][0] if runs else "missing"
        summary = summarise_states(tis)
        if summary != last_summary:
            say(f"run {state}: {summary}")
            last_summary = summary
        if state not in ("queued", "running", "missing"):
            return state
        if time.monotonic() > deadline:
            raise RunFailed(f"DAG run still {state} after {timeout:.0f}s: {summary}")
        time.sleep(1)


def summarise_states(tis: Sequence[tuple[str, int, str]]) -> str:
    """``initiate 4x success | upload_parts 2x running 2x queued | ...`` in task order."""
    order: dict[str, dict[str, int]] = {}
    for task_id, _map_index, state in tis:
        counts = order.setdefault(task_id, {})
        counts[state] = counts.get(state, 0) + 1
    parts = []
    for task_id, counts in order.items():
        states = " ".join(f"{n}x {s}" if n > 1 else s for s, n in sorted(counts.items()))
        parts.append(f"{task_id.split('.')[-1]} {states}")
    return " | ".join(parts) or "no task instances yet"


def same_tag_runs(
    pg: Postgres,
    env: dict[str, str],
    home: Path,
    services: Sequence[Service],
    ecr: Any,
    sources: Sequence[Source],
    timeout: float,
) -> tuple[list[str], str]:
    """Two runs of the one-step push DAG, triggered together, push different sources to one tag.

    Both must succeed, each with its own verified digest, and the tag must end on one of the
    two. Returns (failures, which run's digest the tag holds)."""
    tag = f"same-tag-{datetime.now():%H%M%S}"
    runs = [f"same_tag__{tag}__{n}" for n in (1, 2)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # created together, so both pushes run at once
        list(
            pool.map(
                lambda pair: trigger(
                    env, home, pair[0], {"source": pair[1].url, "repository": REPOSITORY, "tag": tag}, PUSH_DAG_ID
                ),
                zip(runs, sources[:2], strict=True),
            )
        )
    states = [wait_for_run(pg, run_id, services, timeout, PUSH_DAG_ID) for run_id in runs]
    failures = [
        f"same-tag run {run_id} ended {state}" for run_id, state in zip(runs, states, strict=True) if state != "success"
    ]
    digests = [pushed_digest(pg, run_id) for run_id in runs]
    image = ecr.batch_get_image(repositoryName=REPOSITORY, imageIds=[{"imageTag": tag}])["images"]
    holder = image[0]["imageId"]["imageDigest"] if image else None
    if holder not in digests:
        failures.append(f"tag {tag} holds {holder}, neither run's digest {digests}")
    for digest, source in zip(digests, sources[:2], strict=True):
        if digest is None:
            failures.append(f"a same-tag run returned no image digest ({source.url})")
            continue
        found = ecr.batch_get_image(repositoryName=REPOSITORY, imageIds=[{"imageDigest": digest}])["images"]
        manifest = json.loads(found[0]["imageManifest"]) if found else {}
        if not found or hashlib.sha256(found[0]["imageManifest"].encode()).hexdigest() != str(digest)[7:]:
            failures.append(f"run digest {digest} is not an image whose manifest hashes to it")
        elif manifest["layers"][0]["digest"] != source.digest:
            failures.append(f"image {digest} does not hold {source.url}'s bytes")
    winner = runs[digests.index(holder)] if holder in digests else "neither"
    say(f"same-tag runs: {states}; digests {digests}; the tag holds {winner}'s")
    return failures, winner


def task_tries(pg: Postgres, dag_id: str, run_id: str) -> list[tuple[str, int, str, int]]:
    """(task_id, map_index, state, try_number) of each task instance of a DAG run."""
    return [
        (task_id, map_index, state, try_number)
        for task_id, map_index, state, try_number in pg.query(
            "SELECT task_id, map_index, state, try_number FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index",
            (dag_id, run_id),
        )
    ]


def pushed_digest(pg: Postgres, run_id: str) -> str | None:
    """The image digest the push task of ``run_id`` returned (its XCom ``image_digest``)."""
    rows = pg.query(
        "SELECT value FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = 'push' AND key = 'image_digest'",
        (PUSH_DAG_ID, run_id),
    )
    return str(rows[0][0]).strip('"') if rows else None  # a JSON string, decoded by the driver or not


def count_throttling(
    throttler: FaultProxy, home: Path, run_id: str, tries: Sequence[tuple[str, int, str, int]]
) -> Throttling:
    """How the throttled ECR calls of the fan-out run were absorbed, and say so."""
    counted = Throttling(
        throttled=len(throttler.fired),
        calls=sum(throttler.calls(op) for op in ECR_OPERATIONS),
        our_retries=retries_in_logs(home, [run_id]),
        task_retries=sum(max(try_number - 1, 0) for *_, try_number in tries),
    )
    say(
        f"throttling: {counted.throttled} of {counted.calls} ECR calls answered ThrottlingException; "
        f"{counted.our_retries} retries by the hook (botocore retried the rest); {counted.task_retries} task retries"
    )
    return counted
