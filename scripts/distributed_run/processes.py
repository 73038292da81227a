"""The processes the run starts: each in its own session (process group) with its log in the
temp dir, stopped with its descendants at the end; commands run to completion; bounded waits
that fail as soon as a service has died; and the check that all of them listen on loopback only."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import psutil

from distributed_run.constants import HOST
from distributed_run.progress import RunFailed, say

T = TypeVar("T")


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
            **as_user(user),
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


def stop(service: Service) -> None:
    """Stop one service, saying so; a failure to stop it is reported, not raised."""
    say(f"stopping {service.name} (pid {service.popen.pid})")
    try:
        service.stop()
    except Exception as exc:  # noqa: BLE001 - keep stopping the others
        say(f"  could not stop {service.name} cleanly: {exc}")


def stop_together(services: Sequence[Service]) -> None:
    """Stop ``services`` at the same time: each waits out its own grace period, not the sum."""
    if services:
        with ThreadPoolExecutor(max_workers=len(services)) as pool:
            list(pool.map(stop, services))


def as_user(user: str | None) -> dict[str, Any]:
    """Popen arguments that run a child as ``user`` (only when we are root and it differs)."""
    if user is None or os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


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
        **as_user(user),
    )
    if result.returncode != 0:
        raise RunFailed(f"{what} failed (exit {result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return str(result.stdout)


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


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
