"""Airflow's side of the run: the environment all its processes share (nothing in airflow.cfg),
``airflow db migrate``, then api-server, scheduler and dag-processor, and on Celery two workers
that tell themselves apart by node name and load the spread barrier; waits for them to be ready."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from distributed_run.constants import (
    AIRFLOW,
    CELERY_PLUGINS_FOLDER,
    CELERY_WORKERS,
    DAG_ID,
    DAGS_FOLDER,
    HOST,
    REGION,
    SCRIPTS,
    SPREAD_BARRIER_TIMEOUT,
    UPLOAD_TASK,
    VENV_BIN,
)
from distributed_run.processes import Service, run_checked, stop_together, wait_for
from distributed_run.progress import say
from distributed_run.servers import Broker, Postgres
from distributed_run.spread_barrier import barrier_environment


def airflow_env(
    home: Path, pg: Postgres, endpoint_url: str, api_port: int, parallelism: int, broker: Broker | None = None
) -> dict[str, str]:
    """The environment every Airflow process of this run shares (nothing is written to
    airflow.cfg; the same variables would go to each worker of a real deployment).
    With a ``broker``, CeleryExecutor: Redis carries the tasks, PostgreSQL the results."""
    base_url = f"http://{HOST}:{api_port}"
    env = dict(os.environ)
    if broker is not None:
        env.update(
            {
                "AIRFLOW__CELERY__BROKER_URL": broker.url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + pg.sqlalchemy_url,
                # A worker holds at most --worker-concurrency tasks (prefetch 1, acknowledged
                # only when done): what makes the spread barrier certain.
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
            }
        )
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.sqlalchemy_url,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor" if broker is None else "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(max(16, parallelism)),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Task processes parse the DAG file again; 30 s (the default) ran out on a loaded 2-core machine.
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {
                    "conn_type": "aws",
                    "login": "demo",
                    "password": "demo",
                    "extra": {"endpoint_url": endpoint_url, "region_name": REGION},
                }
            ),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "PYTHONUNBUFFERED": "1",
            "NO_COLOR": "1",
        }
    )
    return env


def start_airflow(
    home: Path,
    env: dict[str, str],
    api_port: int,
    stack: contextlib.ExitStack,
    workers: Sequence[tuple[str, list[str], dict[str, str]]] = (),
) -> list[Service]:
    """``airflow db migrate``, then scheduler, dag-processor and api-server in the background,
    and the ``workers`` (name, argv, environment) with them, so they start up meanwhile."""
    say("airflow db migrate (PostgreSQL)")
    run_checked("airflow db migrate", [AIRFLOW, "db", "migrate"], env, cwd=home, timeout=300)
    say("metadata database migrated")
    services: list[Service] = []
    stack.callback(stop_together, services)  # the Airflow processes and workers, all at once
    for name, argv, service_env in (
        ("api-server", [AIRFLOW, "api-server", "--host", HOST, "--port", str(api_port)], env),
        # No log server: it binds every interface, and the api-server reads task logs
        # from this machine's disk anyway.
        ("scheduler", [AIRFLOW, "scheduler", "--skip-serve-logs"], env),
        ("dag-processor", [AIRFLOW, "dag-processor"], env),
        *workers,
    ):
        service = Service.start(f"airflow {name}", argv, home / "logs" / f"{name}.log", service_env, cwd=home)
        services.append(service)
        say(f"started airflow {name} (pid {service.popen.pid}), log {service.log_path}")

    def healthy() -> bool:
        try:
            # The first request loads the app, which can take a while on a busy machine.
            with urllib.request.urlopen(f"http://{HOST}:{api_port}/execution/health", timeout=60) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    # Generous bounds: on a loaded 2-core machine the first request (the app loading) and an
    # airflow CLI start each took over two minutes; they bound a failure, not the run.
    wait_for("the api-server's execution API", healthy, timeout=300, interval=1, alive=services)
    say(f"api-server answers on http://{HOST}:{api_port}/execution/health")
    return services


def celery_workers(
    env: dict[str, str], concurrency: int, barrier_dir: Path
) -> list[tuple[str, list[str], dict[str, str]]]:
    """(name, argv, environment) of two ``airflow celery worker`` processes with distinct
    Celery hostnames, each with ``concurrency`` pool processes.

    Each records its node name as the task instances' ``hostname`` (``celery_node_name``):
    on one machine, that is what tells the workers apart. Both load the spread barrier
    (``spread_barrier``, through ``worker_plugins/``), which holds each upload until both
    workers hold one, keeping its arrivals in ``barrier_dir``."""
    worker_env = {
        **env,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "distributed_run.celery_node_name.celery_node_name",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SCRIPTS), env.get("PYTHONPATH")])),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(CELERY_PLUGINS_FOLDER),
        **barrier_environment(barrier_dir, f"{DAG_ID}.{UPLOAD_TASK}", CELERY_WORKERS, SPREAD_BARRIER_TIMEOUT),
    }
    # No log server (it binds every interface; the api-server reads task logs from this
    # machine's disk), no gossip or mingle (start-up chatter a two-worker run does not need).
    options = ["--concurrency", str(concurrency), "--skip-serve-logs", "--without-gossip", "--without-mingle"]
    return [
        (f"celery-{name}", [AIRFLOW, "celery", "worker", "--celery-hostname", f"{name}@%h", *options], worker_env)
        for name in CELERY_WORKERS
    ]


def wait_for_celery_workers(broker: Broker, services: Sequence[Service]) -> None:
    """Until both Celery workers answer a ping through the broker."""
    from celery import Celery

    app = Celery(broker=broker.url)

    def both_answer() -> list[str] | None:
        replies = app.control.ping(timeout=1.0)
        names = sorted(node for reply in replies for node in reply)
        return names if {n.split("@", 1)[0] for n in names} >= set(CELERY_WORKERS) else None

    nodes = wait_for("both Celery workers to answer a ping", both_answer, timeout=180, interval=1, alive=services)
    app.close()
    say(f"Celery workers ready: {', '.join(nodes)}")
