"""The distributed run's own logic, without its servers: which Celery worker ran each upload (a
clear failure when one ran none), the rule that a Celery run has more sources than pool processes
per worker, the spread barrier that holds each upload until both workers hold one, and the last
line the system tests parse."""

from __future__ import annotations

import importlib
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
def package() -> Iterator[SimpleNamespace]:
    """The ``distributed_run`` package's modules, imported from ``scripts/`` as the run does."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        yield SimpleNamespace(
            cli=importlib.import_module("distributed_run.cli"),
            report=importlib.import_module("distributed_run.report"),
            barrier=importlib.import_module("distributed_run.spread_barrier"),
        )
    finally:
        sys.path.remove(str(ROOT / "scripts"))
        for name in [n for n in sys.modules if n == "distributed_run" or n.startswith("distributed_run.")]:
            del sys.modules[name]


def intervals(report: ModuleType, hosts: list[str]) -> list[object]:
    start = datetime(2026, 1, 1)
    return [
        report.Interval(index, "success", start, start + timedelta(seconds=5), host, 100 + index)
        for index, host in enumerate(hosts)
    ]


def test_uploads_on_both_workers_are_counted_per_worker(package: SimpleNamespace) -> None:
    ran = intervals(package.report, ["worker-a@vm", "worker-b@vm", "worker-a@vm", "worker-a@vm"])
    assert package.report.uploads_per_worker(ran) == ({"worker-a": 3, "worker-b": 1}, None)


def test_a_worker_that_ran_no_upload_fails_the_run_naming_it(package: SimpleNamespace) -> None:
    per_worker, failure = package.report.uploads_per_worker(intervals(package.report, ["worker-b@vm"] * 4))
    assert per_worker == {"worker-a": 0, "worker-b": 4}
    assert failure == "not every Celery worker ran uploads (worker-a 0, worker-b 4): worker-a ran none"


def test_an_upload_on_another_host_fails_the_run(package: SimpleNamespace) -> None:
    ran = intervals(package.report, ["worker-a@vm", "worker-b@vm", "elsewhere.example"])
    _, failure = package.report.uploads_per_worker(ran)
    assert failure == "uploads ran on hosts that are not this run's Celery workers: {'elsewhere.example': 1}"


def test_a_celery_run_needs_more_sources_than_pool_processes_per_worker(
    package: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        package.cli.parse_options(["--executor", "celery", "--sources", "2", "--worker-concurrency", "2"])
    assert refused.value.code == 2
    assert "--executor celery needs --sources > --worker-concurrency" in capsys.readouterr().err
    options, keep = package.cli.parse_options(["--executor", "celery", "--sources", "3", "--size-mib", "8"])
    assert (options.celery, options.sources, options.worker_concurrency, options.size_mib, keep) == (
        True,
        3,
        2,
        8,
        False,
    )


# -- the last line (tests/system/test_distributed_run.py parses it) ---------------------------


def test_the_last_line_of_a_celery_run(package: SimpleNamespace) -> None:
    uploads = package.report.UploadReport(overlap=3, per_worker={"worker-a": 3, "worker-b": 1})
    assert package.report.last_line_figures(uploads, 4, celery=True) == (
        "executor=CeleryExecutor, workers=2, uploads per worker=3/1, max overlapping uploads=3"
    )


def test_the_last_line_of_a_throttled_local_run_with_same_tag_pushes(package: SimpleNamespace) -> None:
    figures = package.report.last_line_figures(
        package.report.UploadReport(overlap=7),
        8,
        celery=False,
        same_tag_winner="same_tag__same-tag-101010__2",
        throttling=package.report.Throttling(throttled=36, calls=100, our_retries=0, task_retries=1),
    )
    assert figures == (
        "max overlapping uploads = 7; tasks=8; same-tag runs: both ok, tag on 2's digest, "
        "throttled=36 of 100 ECR calls, our retries=0, task retries=1"
    )
    assert package.report.last_line_figures(package.report.UploadReport(overlap=4), 4, celery=False) == (
        "max overlapping uploads = 4; tasks=4"
    )


# -- the spread barrier (the Celery workers' listener) -----------------------------------------


@pytest.fixture
def barrier(package: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SimpleNamespace:
    """The barrier's module and the environment the run gives it (short polls, 30 s deadline)."""
    monkeypatch.setattr(package.barrier, "POLL_SECONDS", 0.02)
    environ = package.barrier.barrier_environment(tmp_path, "fanout.layer.upload_parts", ["worker-a", "worker-b"], 30)
    return SimpleNamespace(module=package.barrier, environ=environ, arrivals=tmp_path)


def upload(map_index: int, hostname: str, task_id: str = "layer.upload_parts") -> SimpleNamespace:
    return SimpleNamespace(
        dag_id="fanout", task_id=task_id, run_id="manual__2026", map_index=map_index, hostname=hostname
    )


def test_uploads_of_one_worker_wait_until_the_other_worker_holds_one(
    barrier: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="airflow.task.spread_barrier")

    def arrive(map_index: int, hostname: str) -> threading.Thread:
        thread = threading.Thread(
            target=barrier.module.hold_until_every_worker_arrives,
            args=(upload(map_index, hostname), barrier.environ),
            daemon=True,
        )
        thread.start()
        return thread

    held = [arrive(0, "worker-a@vm"), arrive(1, "worker-a@vm")]
    time.sleep(0.3)
    assert all(thread.is_alive() for thread in held)  # worker-a holds two uploads, worker-b none yet
    barrier.module.hold_until_every_worker_arrives(upload(2, "worker-b@vm"), barrier.environ)  # opens it
    for thread in held:
        thread.join(5)
        assert not thread.is_alive()
    started = time.monotonic()
    barrier.module.hold_until_every_worker_arrives(upload(3, "worker-a@vm"), barrier.environ)
    assert time.monotonic() - started < 1  # once open, later uploads pass at once
    passed = [r.getMessage() for r in caplog.records if r.getMessage().startswith(barrier.module.PASSED)]
    assert len(passed) == 4


def test_other_tasks_and_unknown_hosts_pass_without_waiting(barrier: SimpleNamespace) -> None:
    barrier.module.hold_until_every_worker_arrives(upload(0, "worker-a@vm", task_id="layer.initiate"), barrier.environ)
    barrier.module.hold_until_every_worker_arrives(upload(0, "elsewhere.example"), barrier.environ)
    assert list(barrier.arrivals.iterdir()) == []  # neither recorded an arrival


def test_the_barrier_gives_up_after_its_deadline_and_says_so(
    barrier: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {**barrier.environ, "SPREAD_BARRIER_TIMEOUT": "0.2"}
    barrier.module.hold_until_every_worker_arrives(upload(0, "worker-b@vm"), environ)
    assert "spread barrier: gave up after 0 s: no upload arrived from worker-a; going on" in caplog.text


@pytest.fixture
def plugin(package: SimpleNamespace) -> Iterator[ModuleType]:
    """The plugin file the Celery workers' plugins folder holds, loaded as Airflow loads it
    (in a fixture: importing Airflow sets up its logging, which must precede ``caplog``'s)."""
    path = ROOT / "scripts" / "distributed_run" / "worker_plugins" / "spread_barrier_plugin.py"
    try:
        yield load_script(path, "spread_barrier_plugin")
    finally:
        sys.modules.pop("spread_barrier_plugin", None)


def test_the_listener_plugin_logs_its_own_failure_and_lets_the_task_go_on(
    plugin: ModuleType, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SPREAD_BARRIER_TASK", "fanout.layer.upload_parts")
    monkeypatch.setenv("SPREAD_BARRIER_WORKERS", "worker-a,worker-b")
    monkeypatch.delenv("SPREAD_BARRIER_DIR", raising=False)  # the barrier cannot record the arrival
    (listener,) = plugin.SpreadBarrierPlugin.listeners
    listener.on_task_instance_running(previous_state=None, task_instance=upload(0, "worker-a@vm"))
    assert "spread barrier: failed; the task goes on without it" in caplog.text
