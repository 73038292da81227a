"""The servers the run starts besides Airflow, each throwaway and on 127.0.0.1 only: PostgreSQL
(Airflow's metadata), Redis (the Celery broker), the embedded strict ECR+S3 seeded with the
sources, and the fault proxy that throttles ECR calls with ``--throttle``."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_ecr_layers.testing.fault_proxy import FaultProxy, FaultRule
from airflow_ecr_layers.testing.seeding import seed_object
from distributed_run.constants import BUCKET, HOST, REGION, ROOT, MiB
from distributed_run.processes import Service, free_port, run_checked, stop, user_exists, wait_for
from distributed_run.progress import RunFailed, say

# -- PostgreSQL ------------------------------------------------------------------------------


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

    def query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows ``sql`` returns, on a connection of its own."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, parameters)
                return list(cur.fetchall())
        finally:
            conn.close()


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
    stack.callback(stop, service)
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
    os_user = "redis" if os.geteuid() == 0 and user_exists("redis") else None
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
    stack.callback(stop, service)
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


# -- the embedded ECR+S3 and the throttling proxy in front of it ---------------------------


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
    stack.callback(stop, service)

    def endpoint() -> str | None:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("ENDPOINT "):
                return line.split(" ", 1)[1].strip()
        return None

    url = wait_for("the embedded ECR+S3 to print its endpoint", endpoint, timeout=60, alive=[service])
    say(f"embedded strict ECR+S3 at {url} (pid {service.popen.pid})")
    return service, url


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


def start_throttling(endpoint_url: str, share: float, stack: contextlib.ExitStack) -> FaultProxy:
    """A proxy in front of the embedded ECR that answers ``share`` of the ECR calls ThrottlingException."""
    rule = FaultRule("*", 1, "throttling", times=None, probability=share, seed=42)
    proxy = stack.enter_context(FaultProxy(endpoint_url, [rule]))
    say(f"throttling proxy on {proxy.endpoint_url}: {share:.0%} of ECR calls answer ThrottlingException")
    return proxy
