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
   workers load the spread barrier (``scripts/celery_worker_plugins/spread_barrier.py``):
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
import base64
import collections
import contextlib
import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any, TypeVar

import psutil

from airflow_ecr_layers.testing.fault_proxy import FaultProxy, FaultRule
from airflow_ecr_layers.testing.seeding import seed_object

ROOT = Path(__file__).resolve().parent.parent
DAGS_FOLDER = ROOT / "example_dags"
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")

DAG_ID = "example_ecr_layers_fanout"
UPLOAD_TASK = "layer.upload_parts"
ECR_OPERATIONS = (
    "InitiateLayerUpload",
    "UploadLayerPart",
    "CompleteLayerUpload",
    "PutImage",
    "BatchCheckLayerAvailability",
    "DescribeRepositories",
    "BatchGetImage",
)
BUCKET = "artifacts"
REPOSITORY = "demo/bundles"
REGION = "us-east-1"
MiB = 1024 * 1024
HOST = "127.0.0.1"
CELERY_WORKERS = ("worker-a", "worker-b")
"""The Celery workers' node names (before the ``@host``) with ``--executor celery``."""
SPREAD_BARRIER_PLUGINS = ROOT / "scripts" / "celery_worker_plugins"
"""The Celery workers' ``[core] plugins_folder``: the spread barrier listener."""
SPREAD_BARRIER_TIMEOUT = 300
"""Seconds an upload waits at the spread barrier for the other worker before it gives up."""
SPREAD_BARRIER_PASSED = "spread barrier: open, every worker has held an upload"
"""What the barrier logs in each upload it lets through (``PASSED`` in the plugin)."""

_T0 = time.monotonic()
T = TypeVar("T")


class RunFailed(Exception):
    """A step could not be done; the message says which and why."""


def say(message: str = "") -> None:
    """Print one progress line, prefixed with the seconds since the driver started."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}" if message else "", flush=True)


def section(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for(
    what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.5, alive: Sequence[Service] = ()
) -> T:
    """Call ``check()`` until it returns something truthy; fail after ``timeout`` seconds
    or as soon as one of the ``alive`` services has exited."""
    deadline = time.monotonic() + timeout
    while True:
        for service in alive:
            service.ensure_running()
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RunFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- processes ---------------------------------------------------------------------------


@dataclass
class Service:
    """A background process we started, in its own session (process group), logging to a file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    _log: IO[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str],
        *,
        user: str | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> Service:
        log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            **_as_user(user),
        )
        return cls(name, popen, log_path, stop_signal, log)

    def ensure_running(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise RunFailed(
                f"{self.name} exited with status {code}; last lines of {self.log_path}:\n{tail(self.log_path)}"
            )

    def stop(self, grace: float = 15.0) -> None:
        """Signal the process group, wait, then SIGKILL whatever is left, including
        descendants that moved to process groups of their own (task processes do)."""
        try:
            descendants = psutil.Process(self.popen.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, self.stop_signal)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # stragglers left in the group
        for process in descendants:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(descendants, timeout=5)
        if self._log is not None:
            self._log.close()


def _as_user(user: str | None) -> dict[str, Any]:
    """Popen arguments that run a child as ``user`` (only when we are root and it differs)."""
    if user is None or os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def run_checked(
    what: str,
    argv: Sequence[str],
    env: dict[str, str] | None = None,
    *,
    user: str | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> str:
    """Run a command to completion; return its stdout; fail with its output otherwise."""
    result = subprocess.run(
        list(argv),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **_as_user(user),
    )
    if result.returncode != 0:
        raise RunFailed(f"{what} failed (exit {result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return str(result.stdout)


# -- PostgreSQL ----------------------------------------------------------------------------


def postgres_bindir() -> Path:
    """The newest Debian PostgreSQL's bin directory (initdb is not on PATH there)."""
    candidates = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RunFailed("PostgreSQL is not installed (no initdb): apt-get install postgresql")


@dataclass
class Postgres:
    service: Service
    port: int
    user: str
    password: str
    database: str

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@{HOST}:{self.port}/{self.database}"

    def connect(self, database: str | None = None) -> Any:
        import psycopg2

        return psycopg2.connect(
            host=HOST,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
            connect_timeout=5,
        )


def start_postgres(work: Path, stack: contextlib.ExitStack) -> Postgres:
    """initdb a fresh cluster in ``work/pg`` and run it on a free 127.0.0.1 port
    (password auth, no unix socket outside the temp dir); create the ``airflow`` database."""
    import psycopg2

    bindir = postgres_bindir()
    os_user = "postgres" if os.geteuid() == 0 else None
    pg_dir = work / "pg"
    pg_dir.mkdir(mode=0o700)
    if os_user:
        entry = pwd.getpwnam(os_user)
        os.chown(pg_dir, entry.pw_uid, entry.pw_gid)
    password = secrets.token_hex(16)
    pwfile = pg_dir / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if os_user:
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)

    say(f"initdb ({bindir.parent.name}) into {pg_dir / 'data'}" + (f" as user {os_user!r}" if os_user else ""))
    run_checked(
        "initdb",
        [
            str(bindir / "initdb"),
            "-D",
            str(pg_dir / "data"),
            "-U",
            "airflow",
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        user=os_user,
        cwd=pg_dir,
        timeout=120,
    )
    pwfile.unlink()
    port = free_port()
    service = Service.start(
        "postgres",
        [
            str(bindir / "postgres"),
            "-D",
            str(pg_dir / "data"),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            f"port={port}",
            "-c",
            f"unix_socket_directories={pg_dir}",
            "-c",
            "max_connections=200",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ],
        work / "logs" / "postgres.log",
        {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        user=os_user,
        cwd=pg_dir,
        stop_signal=signal.SIGINT,  # "fast" shutdown
    )
    stack.callback(_stop, service)
    pg = Postgres(service, port, "airflow", password, "airflow")

    def accepting() -> bool:
        try:
            pg.connect("postgres").close()
            return True
        except psycopg2.OperationalError:
            return False

    wait_for("PostgreSQL to accept connections", accepting, timeout=60, alive=[service])
    conn = pg.connect("postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE airflow")
        cur.execute("SELECT version()")
        version = cur.fetchone()[0].split(" on ")[0]
    conn.close()
    say(f"{version} listening on {HOST}:{port} (pid {service.popen.pid}); database 'airflow' created")
    return pg


def _stop(service: Service) -> None:
    say(f"stopping {service.name} (pid {service.popen.pid})")
    try:
        service.stop()
    except Exception as exc:  # noqa: BLE001 - keep stopping the others
        say(f"  could not stop {service.name} cleanly: {exc}")


def _stop_together(services: Sequence[Service]) -> None:
    """Stop ``services`` at the same time: each waits out its own grace period, not the sum."""
    if services:
        with ThreadPoolExecutor(max_workers=len(services)) as pool:
            list(pool.map(_stop, services))


# -- embedded ECR+S3 -----------------------------------------------------------------------


@dataclass
class Source:
    url: str
    key: str
    size: int
    digest: str


def start_embedded_aws(work: Path, env: dict[str, str], stack: contextlib.ExitStack) -> tuple[Service, str]:
    """``python -m airflow_ecr_layers.testing.server`` in its own process; its endpoint URL."""
    log_path = work / "logs" / "ecr-s3.log"
    service = Service.start(
        "embedded ECR+S3",
        [sys.executable, "-m", "airflow_ecr_layers.testing.server", "--port", "0"],
        log_path,
        env,
        cwd=ROOT,
    )
    stack.callback(_stop, service)

    def endpoint() -> str | None:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("ENDPOINT "):
                return line.split(" ", 1)[1].strip()
        return None

    url = wait_for("the embedded ECR+S3 to print its endpoint", endpoint, timeout=60, alive=[service])
    say(f"embedded strict ECR+S3 at {url} (pid {service.popen.pid})")
    return service, url


# -- Redis (the Celery broker) --------------------------------------------------------------


@dataclass
class Broker:
    service: Service
    url: str


def start_redis(work: Path, stack: contextlib.ExitStack) -> Broker:
    """A throwaway ``redis-server`` (Debian's package) on a free 127.0.0.1 port: no
    persistence, no unix socket, a random password in a config file only its user reads."""
    import redis

    binary = shutil.which("redis-server")
    if not binary:
        raise RunFailed("the Redis server is not installed (no redis-server): apt-get install redis-server")
    os_user = "redis" if os.geteuid() == 0 and _user_exists("redis") else None
    redis_dir = work / "redis"
    redis_dir.mkdir(mode=0o700)
    port = free_port()
    password = secrets.token_hex(16)
    config = redis_dir / "redis.conf"
    config.write_text(
        f"bind {HOST}\nport {port}\nprotected-mode yes\nrequirepass {password}\n"
        f'dir {redis_dir}\nsave ""\nappendonly no\ndaemonize no\nlogfile ""\n'
    )
    config.chmod(0o600)
    if os_user:
        entry = pwd.getpwnam(os_user)
        for path in (redis_dir, config):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    service = Service.start(
        "redis-server",
        [binary, str(config)],
        work / "logs" / "redis.log",
        {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        user=os_user,
        cwd=redis_dir,
    )
    stack.callback(_stop, service)
    client = redis.Redis(host=HOST, port=port, password=password, socket_connect_timeout=2)

    def answering() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    wait_for("redis-server to answer PING", answering, timeout=30, interval=0.2, alive=[service])
    version = client.info("server")["redis_version"]
    client.close()
    say(f"Redis {version} listening on {HOST}:{port} (pid {service.popen.pid}); the Celery broker")
    return Broker(service, f"redis://:{password}@{HOST}:{port}/0")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def aws_clients(endpoint_url: str) -> tuple[Any, Any]:
    import boto3

    kwargs = {
        "endpoint_url": endpoint_url,
        "region_name": REGION,
        "aws_access_key_id": "demo",
        "aws_secret_access_key": "demo",
    }
    return boto3.client("s3", **kwargs), boto3.client("ecr", **kwargs)


def seed_sources(s3: Any, count: int, size_mib: int) -> list[Source]:
    """Write ``count`` pseudo-random objects of about ``size_mib`` MiB (sizes not a
    multiple of any part size) with S3 multipart uploads of 8 MiB pieces."""
    s3.create_bucket(Bucket=BUCKET)
    sources = []
    for index in range(count):
        key = f"bundle/layer-{index}.bin"
        size = size_mib * MiB + 4099 * (index + 1) + 17
        digest = seed_object(s3, BUCKET, key, size, salt=f"{key}:")
        sources.append(Source(f"s3://{BUCKET}/{key}", key, size, digest))
        say(f"seeded s3://{BUCKET}/{key}: {size} bytes, {digest[:23]}...")
    return sources


# -- Airflow -------------------------------------------------------------------------------


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
    stack.callback(_stop_together, services)  # the Airflow processes and workers, all at once
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
    (``scripts/celery_worker_plugins/spread_barrier.py``), which holds each upload until
    both workers have one, keeping its arrivals in ``barrier_dir``."""
    worker_env = {
        **env,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "celery_node_name.celery_node_name",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "scripts"), env.get("PYTHONPATH")])),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(SPREAD_BARRIER_PLUGINS),
        "SPREAD_BARRIER_DIR": str(barrier_dir),
        "SPREAD_BARRIER_TASK": f"{DAG_ID}.{UPLOAD_TASK}",
        "SPREAD_BARRIER_WORKERS": ",".join(CELERY_WORKERS),
        "SPREAD_BARRIER_TIMEOUT": str(SPREAD_BARRIER_TIMEOUT),
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


def uploads_per_worker(intervals: Sequence[Interval]) -> tuple[dict[str, int], str | None]:
    """Uploads per Celery worker (by the task instances' ``hostname``), and what is wrong
    with the spread, if anything: an upload on no known worker, or a worker with none."""
    counts = collections.Counter(i.hostname.split("@", 1)[0] for i in intervals)
    per_worker = {name: counts.pop(name, 0) for name in CELERY_WORKERS}
    if counts:
        return per_worker, f"uploads ran on hosts that are not this run's Celery workers: {dict(counts)}"
    idle = [name for name, n in per_worker.items() if n == 0]
    if idle:
        ran = ", ".join(f"{name} {n}" for name, n in per_worker.items())
        return per_worker, f"not every Celery worker ran uploads ({ran}): {', '.join(idle)} ran none"
    return per_worker, None


def listening_sockets(services: Sequence[Service]) -> list[tuple[str, str, int]]:
    """(service, address, port) of every TCP socket our processes (and their children) listen on."""
    found = []
    for service in services:
        try:
            root = psutil.Process(service.popen.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for process in processes:
            try:
                connections = process.net_connections(kind="inet")
            except psutil.Error:
                continue
            for conn in connections:
                if conn.status == psutil.CONN_LISTEN and conn.laddr:
                    found.append((service.name, conn.laddr.ip, conn.laddr.port))
    return sorted(set(found))


def check_loopback_only(services: Sequence[Service]) -> None:
    """Fail unless everything we started listens on 127.0.0.1 only."""
    sockets = listening_sockets(services)
    say("listening: " + ", ".join(f"{name} {ip}:{port}" for name, ip, port in sockets))
    outside = [f"{name} on {ip}:{port}" for name, ip, port in sockets if ip != HOST]
    if outside:
        raise RunFailed("listening beyond 127.0.0.1: " + ", ".join(outside))


def wait_for_dag(pg: Postgres, services: Sequence[Service], timeout: float) -> None:
    """Until the dag-processor has serialized the DAG into the DB (import errors fail fast)."""

    def parsed() -> bool:
        conn = pg.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM serialized_dag WHERE dag_id = %s", (DAG_ID,))
                if cur.fetchone()[0]:
                    return True
                cur.execute(
                    "SELECT filename, stacktrace FROM import_error WHERE filename LIKE %s",
                    ("%example_ecr_layers_fanout.py",),
                )
                error = cur.fetchone()
                if error:
                    raise RunFailed(f"{error[0]} failed to import:\n{error[1]}")
                return False
        finally:
            conn.close()

    wait_for(f"the dag-processor to parse {DAG_ID}", parsed, timeout=timeout, interval=1, alive=services)
    conn = pg.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT dag_id, is_paused FROM dag ORDER BY dag_id")
        dags = cur.fetchall()
    conn.close()
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
        conn = pg.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
                row = cur.fetchone()
                cur.execute(
                    "SELECT task_id, map_index, coalesce(state, 'none') FROM task_instance "
                    "WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index",
                    (dag_id, run_id),
                )
                tis = cur.fetchall()
        finally:
            conn.close()
        state = row[0] if row else "missing"
        summary = _summarise(tis)
        if summary != last_summary:
            say(f"run {state}: {summary}")
            last_summary = summary
        if state not in ("queued", "running", "missing"):
            return state
        if time.monotonic() > deadline:
            raise RunFailed(f"DAG run still {state} after {timeout:.0f}s: {summary}")
        time.sleep(1)


def _summarise(tis: Sequence[tuple[str, int, str]]) -> str:
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


# -- report --------------------------------------------------------------------------------


@dataclass
class Interval:
    map_index: int
    state: str
    start: datetime
    end: datetime
    hostname: str
    pid: int | None


def upload_intervals(pg: Postgres, run_id: str) -> list[Interval]:
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT map_index, state, start_date, end_date, hostname, pid FROM task_instance "
                "WHERE dag_id = %s AND run_id = %s AND task_id = %s ORDER BY map_index",
                (DAG_ID, run_id, UPLOAD_TASK),
            )
            rows = cur.fetchall()
    finally:
        conn.close()
    return [
        Interval(m, s or "none", start, end, host or "", pid)
        for m, s, start, end, host, pid in rows
        if start is not None and end is not None
    ]


def max_overlap(windows: Sequence[tuple[datetime, datetime]]) -> int:
    """The largest number of windows open at one instant (an end before a start at a tie)."""
    events = sorted(
        [(start, 1) for start, _ in windows] + [(end, -1) for _, end in windows], key=lambda event: (event[0], event[1])
    )
    current = best = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def upload_log_events(home: Path, run_id: str, map_index: int) -> list[tuple[str, datetime]]:
    """(event, timestamp) of each record in the last attempt's log of one mapped upload."""
    pattern = str(
        home
        / "logs"
        / f"dag_id={DAG_ID}"
        / f"run_id={run_id}"
        / f"task_id={UPLOAD_TASK}"
        / f"map_index={map_index}"
        / "attempt=*.log"
    )
    logs = sorted(glob.glob(pattern))
    if not logs:
        return []
    events = []
    for line in Path(logs[-1]).read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("timestamp"):
            events.append((str(record.get("event", "")), datetime.fromisoformat(record["timestamp"])))
    return events


def transfer_window(home: Path, run_id: str, map_index: int) -> tuple[datetime, datetime] | None:
    """From the task log: when the first part was about to be sent ("Uploading ...") and
    when the last one was acknowledged ("Uploaded ..."); None if the log says otherwise."""
    started = finished = None
    for event, stamp in upload_log_events(home, run_id, map_index):
        if event.startswith("Uploading ") and started is None:
            started = stamp
        elif event.startswith("Uploaded "):
            finished = stamp
    return (started, finished) if started and finished else None


def barrier_report(home: Path, run_id: str, map_indexes: Sequence[int]) -> tuple[str, str | None]:
    """Whether the spread barrier let every upload through, from their task logs: a line to
    print, and a failure naming the uploads it did not (None if it let all through)."""
    released = [
        m
        for m in map_indexes
        if any(event.startswith(SPREAD_BARRIER_PASSED) for event, _ in upload_log_events(home, run_id, m))
    ]
    missing = sorted(set(map_indexes) - set(released))
    line = f"spread barrier: used; it let through {len(released)} of {len(map_indexes)} uploads"
    if not missing:
        return line + f" (each task log says {SPREAD_BARRIER_PASSED!r})", None
    return line, f"the spread barrier did not let through uploads {missing} (see their task logs)"


def print_timeline(
    intervals: Sequence[Interval], transfers: dict[int, tuple[datetime, datetime] | None], sources: Sequence[Source]
) -> None:
    origin = min(i.start for i in intervals)
    horizon = max(i.end for i in intervals)
    span = max((horizon - origin).total_seconds(), 1e-6)
    width = 40
    print(
        f"{'map':>3}  {'source':<28} {'state':<8} {'start':>7} {'end':>7} {'dur':>6}  "
        f"{'transfer':>15}  timeline (0 .. {span:.1f}s; '=' task running, '#' bytes moving)"
    )
    for item in intervals:
        start = (item.start - origin).total_seconds()
        end = (item.end - origin).total_seconds()
        bar = [" "] * width
        for col in range(int(start / span * width), max(int(end / span * width), int(start / span * width) + 1)):
            bar[min(col, width - 1)] = "="
        transfer = transfers.get(item.map_index)
        transfer_text = "-"
        if transfer:
            t0, t1 = ((t - origin).total_seconds() for t in transfer)
            transfer_text = f"{t0:6.2f}-{t1:6.2f}s"
            for col in range(int(t0 / span * width), max(int(t1 / span * width), int(t0 / span * width) + 1)):
                bar[min(col, width - 1)] = "#"
        source = sources[item.map_index].key if item.map_index < len(sources) else "?"
        print(
            f"{item.map_index:>3}  {source:<28} {item.state:<8} {start:6.2f}s {end:6.2f}s "
            f"{end - start:5.2f}s  {transfer_text:>15}  |{''.join(bar)}|"
        )
    hosts = sorted({f"{i.hostname}/pid {i.pid}" for i in intervals})
    print(f"task processes: {', '.join(hosts)}")


def read_back(ecr: Any, tag: str) -> dict[str, Any]:
    """The image under ``tag``: digests from the manifest bytes ECR returns, sizes from ECR."""
    image = ecr.batch_get_image(
        repositoryName=REPOSITORY,
        imageIds=[{"imageTag": tag}],
        acceptedMediaTypes=["application/vnd.oci.image.manifest.v1+json"],
    )["images"][0]
    manifest_bytes = image["imageManifest"].encode("utf-8")
    manifest = json.loads(manifest_bytes)
    digests = [layer["digest"] for layer in manifest["layers"]]
    found = ecr.batch_check_layer_availability(repositoryName=REPOSITORY, layerDigests=digests)["layers"]
    stored = {layer["layerDigest"]: layer.get("layerSize") for layer in found}
    return {
        "repository": REPOSITORY,
        "registry_id": image["registryId"],
        "tag": tag,
        "image_digest": image["imageId"]["imageDigest"],
        "manifest_sha256": "sha256:" + hashlib.sha256(manifest_bytes).hexdigest(),
        "manifest_media_type": manifest.get("mediaType"),
        "artifact_type": manifest.get("artifactType"),
        "layers": [
            {
                "title": layer.get("annotations", {}).get("org.opencontainers.image.title"),
                "digest": layer["digest"],
                "size_in_manifest": layer["size"],
                "size_in_ecr": stored.get(layer["digest"]),
            }
            for layer in manifest["layers"]
        ],
    }


def check_image(pushed: dict[str, Any], sources: Sequence[Source]) -> dict[str, bool]:
    by_title = {Path(s.key).name: s for s in sources}
    checks = {
        "image digest == sha256 of the stored manifest": pushed["image_digest"] == pushed["manifest_sha256"],
        f"manifest has {len(sources)} layers, one per source": len(pushed["layers"]) == len(sources)
        and {layer["title"] for layer in pushed["layers"]} == set(by_title),
    }
    for layer in pushed["layers"]:
        source = by_title.get(layer["title"])
        checks[f"layer {layer['title']}: digest == sha256 of {source.url if source else '?'}"] = (
            source is not None and layer["digest"] == source.digest
        )
        checks[f"layer {layer['title']}: stored size == source size"] = (
            source is not None and layer["size_in_ecr"] == layer["size_in_manifest"] == source.size
        )
    return checks


# -- main ----------------------------------------------------------------------------------


# -- pushes that meet: throttling, the same tag twice ------------------------------------------


PUSH_DAG_ID = "example_ecr_layers_push"


def start_throttling(endpoint_url: str, share: float, stack: contextlib.ExitStack) -> FaultProxy:
    """A proxy in front of the embedded ECR that answers ``share`` of the ECR calls ThrottlingException."""
    rule = FaultRule("*", 1, "throttling", times=None, probability=share, seed=42)
    proxy = stack.enter_context(FaultProxy(endpoint_url, [rule]))
    say(f"throttling proxy on {proxy.endpoint_url}: {share:.0%} of ECR calls answer ThrottlingException")
    return proxy


def retries_in_logs(home: Path, run_ids: Sequence[str]) -> int:
    """Our own retries (after botocore's), as the task logs of ``run_ids`` report them."""
    found = 0
    for path in (home / "logs").rglob("*.log"):
        if any(f"run_id={run_id}" in str(path) for run_id in run_ids):
            found += sum(1 for line in path.read_text(errors="replace").splitlines() if "failed (Throttled" in line)
    return found


def task_tries(pg: Postgres, dag_id: str, run_id: str) -> list[tuple[str, int, str, int]]:
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT task_id, map_index, state, try_number FROM task_instance "
                "WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index",
                (dag_id, run_id),
            )
            return list(cur.fetchall())
    finally:
        conn.close()


def pushed_digest(pg: Postgres, run_id: str) -> str | None:
    """The image digest the push task of ``run_id`` returned (its XCom ``image_digest``)."""
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT value FROM xcom WHERE dag_id = %s AND run_id = %s "
                "AND task_id = 'push' AND key = 'image_digest'",
                (PUSH_DAG_ID, run_id),
            )
            row = cur.fetchone()
    finally:
        conn.close()
    if not row:
        return None
    return str(row[0]).strip('"')  # a JSON string, decoded by the driver or not


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


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
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


def run(args: argparse.Namespace, work: Path) -> tuple[list[str], str]:
    """Everything from PostgreSQL to the checks; returns (failures, the figures for the last line)."""
    failures: list[str] = []
    figures = ""
    celery = args.executor == "celery"
    executor = "CeleryExecutor" if celery else "LocalExecutor"
    tag = f"distributed-{datetime.now():%Y%m%d%H%M%S}"
    run_id = f"distributed__{tag}"
    with contextlib.ExitStack() as stack:
        section("PostgreSQL")
        pg = start_postgres(work, stack)

        section("Embedded ECR+S3")
        aws, endpoint_url = start_embedded_aws(work, dict(os.environ), stack)
        s3, ecr = aws_clients(endpoint_url)
        sources = seed_sources(s3, args.sources, args.size_mib)
        ecr.create_repository(repositoryName=REPOSITORY)
        say(f"created ECR repository {REPOSITORY}")

        section(f"Airflow ({executor}, PostgreSQL)")
        broker = start_redis(work, stack) if celery else None
        home = work / "airflow-home"
        (home / "logs").mkdir(parents=True)
        api_port = free_port()
        throttler = start_throttling(endpoint_url, args.throttle, stack) if args.throttle else None
        env = airflow_env(
            home, pg, throttler.endpoint_url if throttler else endpoint_url, api_port, args.parallelism, broker
        )
        say(f"AIRFLOW_HOME={home}; executor {executor}, parallelism {args.parallelism}; dags folder {DAGS_FOLDER}")
        workers = celery_workers(env, args.worker_concurrency, work / "spread-barrier") if broker else []
        services = start_airflow(home, env, api_port, stack, workers)
        if broker is not None:
            wait_for_celery_workers(broker, services)
        wait_for_dag(pg, services, timeout=180)
        check_loopback_only([pg.service, aws, *([broker.service] if broker else []), *services])

        section(f"DAG run of {DAG_ID}")
        conf = {"sources": [s.url for s in sources], "repository": REPOSITORY, "tag": tag}
        trigger(env, home, run_id, conf)
        state = wait_for_run(pg, run_id, services, timeout=args.timeout)
        say(f"DAG run {run_id} finished: {state}")
        if state != "success":
            failures.append(f"DAG run ended {state}")

        section(f"Mapped {UPLOAD_TASK}: task instances from the metadata DB")
        intervals = upload_intervals(pg, run_id)
        overlap = 0
        if len(intervals) != len(sources):
            failures.append(f"{len(intervals)} finished {UPLOAD_TASK} task instances, expected {len(sources)}")
        if intervals:
            transfers = {i.map_index: transfer_window(home, run_id, i.map_index) for i in intervals}
            print_timeline(intervals, transfers, sources)
            overlap = max_overlap([(i.start, i.end) for i in intervals])
            moving = [w for w in transfers.values() if w]
            print(f"max concurrency observed (task start_date..end_date): {overlap}")
            if len(moving) == len(intervals):
                print(f"max concurrency of byte transfers (task logs):      {max_overlap(moving)}")
            print(f"uploads overlapped in time: {'yes' if overlap > 1 else 'NO'}")
            if overlap <= 1:
                failures.append("mapped uploads did not overlap in time")
        if celery:
            per_worker, spread_failure = uploads_per_worker(intervals)
            print("uploads per Celery worker: " + ", ".join(f"{name} {n}" for name, n in per_worker.items()))
            if spread_failure:
                failures.append(spread_failure)
            barrier_line, barrier_failure = barrier_report(home, run_id, [i.map_index for i in intervals])
            print(barrier_line)
            if barrier_failure:
                failures.append(barrier_failure)

        if state == "success":
            section("Image read back from ECR (BatchGetImage)")
            pushed = read_back(ecr, tag)
            print(json.dumps(pushed, indent=2))
            for what, ok in check_image(pushed, sources).items():
                print(f"{'ok  ' if ok else 'FAIL'} {what}")
                if not ok:
                    failures.append(what)

        if args.same_tag:
            section(f"Two runs of {PUSH_DAG_ID} pushing to one tag at once")
            found, winner = same_tag_runs(pg, env, home, services, ecr, sources, args.timeout)
            failures += found
            figures += f"; same-tag runs: both ok, tag on {winner.rsplit('__', 1)[1]}'s digest" if not found else ""

        tries = task_tries(pg, DAG_ID, run_id)
        uploads = [t for t in tries if t[0] == UPLOAD_TASK]
        if celery:
            spread = "/".join(str(n) for n in per_worker.values())
            head = f"executor={executor}, workers={len(CELERY_WORKERS)}, uploads per worker={spread}, "
            figures = head + f"max overlapping uploads={overlap}" + (f"; {figures[2:]}" if figures else "")
        else:
            figures = f"max overlapping uploads = {overlap}; tasks={len(uploads)}" + figures
        if throttler is not None:
            total = sum(throttler.calls(op) for op in ECR_OPERATIONS)
            ours = retries_in_logs(home, [run_id])
            task_retries = sum(max(t[3] - 1, 0) for t in tries)
            figures += (
                f", throttled={len(throttler.fired)} of {total} ECR calls, our retries={ours}, "
                f"task retries={task_retries}"
            )
            say(
                f"throttling: {len(throttler.fired)} of {total} ECR calls answered ThrottlingException; "
                f"{ours} retries by the hook (botocore retried the rest); {task_retries} task retries"
            )

        section("Stopping everything this run started")
    return failures, figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
        with workspace(args.keep) as work:
            say(f"working in {work}")
            failures, figures = run(args, work)
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
    say(f"done in {time.monotonic() - _T0:.0f}s")
    print(f"distributed run: ok ({figures})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
