"""The Celery run's spread check: which worker ran each upload, and a clear failure when one ran none."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from types import ModuleType

import pytest

from helpers import ROOT


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
