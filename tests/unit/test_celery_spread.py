"""The Celery run's spread: the check of which worker ran each upload (a clear failure when one ran
none), the rule that a Celery run has more sources than pool processes per worker, and the spread
barrier that holds each upload until both workers hold one."""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from helpers import ROOT, load_script


@pytest.fixture(scope="module")
def distributed_run() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("distributed_run", ROOT / "scripts" / "distributed_run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["distributed_run"] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("distributed_run", None)


def intervals(module: ModuleType, hosts: list[str]) -> list[object]:
    start = datetime(2026, 1, 1)
    return [
        module.Interval(index, "success", start, start + timedelta(seconds=5), host, 100 + index)
        for index, host in enumerate(hosts)
    ]


def test_uploads_on_both_workers_are_counted_per_worker(distributed_run: ModuleType) -> None:
    ran = intervals(distributed_run, ["worker-a@vm", "worker-b@vm", "worker-a@vm", "worker-a@vm"])
    assert distributed_run.uploads_per_worker(ran) == ({"worker-a": 3, "worker-b": 1}, None)


def test_a_worker_that_ran_no_upload_fails_the_run_naming_it(distributed_run: ModuleType) -> None:
    per_worker, failure = distributed_run.uploads_per_worker(intervals(distributed_run, ["worker-b@vm"] * 4))
    assert per_worker == {"worker-a": 0, "worker-b": 4}
    assert failure == "not every Celery worker ran uploads (worker-a 0, worker-b 4): worker-a ran none"


def test_an_upload_on_another_host_fails_the_run(distributed_run: ModuleType) -> None:
    ran = intervals(distributed_run, ["worker-a@vm", "worker-b@vm", "elsewhere.example"])
    _, failure = distributed_run.uploads_per_worker(ran)
    assert failure == "uploads ran on hosts that are not this run's Celery workers: {'elsewhere.example': 1}"


def test_a_celery_run_needs_more_sources_than_pool_processes_per_worker(
    distributed_run: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        distributed_run.main(["--executor", "celery", "--sources", "2", "--worker-concurrency", "2"])
    assert refused.value.code == 2
    assert "--executor celery needs --sources > --worker-concurrency" in capsys.readouterr().err


# -- the spread barrier (the Celery workers' listener plugin) ---------------------------------


@pytest.fixture
def barrier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("SPREAD_BARRIER_DIR", str(tmp_path))
    monkeypatch.setenv("SPREAD_BARRIER_TASK", "fanout.layer.upload_parts")
    monkeypatch.setenv("SPREAD_BARRIER_WORKERS", "worker-a,worker-b")
    monkeypatch.setenv("SPREAD_BARRIER_TIMEOUT", "30")
    module = load_script(ROOT / "scripts" / "celery_worker_plugins" / "spread_barrier.py", "spread_barrier")
    monkeypatch.setattr(module, "POLL_SECONDS", 0.02)
    try:
        yield module
    finally:
        sys.modules.pop("spread_barrier", None)


def upload(map_index: int, hostname: str, task_id: str = "layer.upload_parts") -> SimpleNamespace:
    return SimpleNamespace(
        dag_id="fanout", task_id=task_id, run_id="manual__2026", map_index=map_index, hostname=hostname
    )


def arrive_in_thread(barrier: ModuleType, task_instance: SimpleNamespace) -> threading.Thread:
    thread = threading.Thread(target=barrier.hold_until_every_worker_arrives, args=(task_instance,), daemon=True)
    thread.start()
    return thread


def test_uploads_of_one_worker_wait_until_the_other_worker_holds_one(
    barrier: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="airflow.task.spread_barrier")
    first, second = (
        arrive_in_thread(barrier, upload(0, "worker-a@vm")),
        arrive_in_thread(barrier, upload(1, "worker-a@vm")),
    )
    time.sleep(0.3)
    assert first.is_alive() and second.is_alive()  # worker-a holds two uploads; worker-b none yet
    barrier.hold_until_every_worker_arrives(upload(2, "worker-b@vm"))  # worker-b arrives: open
    first.join(5)
    second.join(5)
    assert not first.is_alive() and not second.is_alive()
    started = time.monotonic()
    barrier.hold_until_every_worker_arrives(upload(3, "worker-a@vm"))  # later arrivals pass at once
    assert time.monotonic() - started < 1
    passed = [r.getMessage() for r in caplog.records if r.getMessage().startswith(barrier.PASSED)]
    assert len(passed) == 4


def test_other_tasks_and_unknown_hosts_pass_without_waiting(barrier: ModuleType, tmp_path: Path) -> None:
    barrier.hold_until_every_worker_arrives(upload(0, "worker-a@vm", task_id="layer.initiate"))
    barrier.hold_until_every_worker_arrives(upload(0, "elsewhere.example"))
    assert list(tmp_path.iterdir()) == []  # neither recorded an arrival


def test_the_barrier_gives_up_after_its_deadline_and_says_so(
    barrier: ModuleType, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SPREAD_BARRIER_TIMEOUT", "0.2")
    barrier.hold_until_every_worker_arrives(upload(0, "worker-b@vm"))
    assert "spread barrier: gave up after 0 s: no upload arrived from worker-a; going on" in caplog.text


def test_the_listener_logs_its_own_failure_and_lets_the_task_go_on(
    barrier: ModuleType, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("SPREAD_BARRIER_DIR")
    barrier.SpreadBarrier().on_task_instance_running(previous_state=None, task_instance=upload(0, "worker-a@vm"))
    assert "spread barrier: failed; the task goes on without it" in caplog.text
