"""Deferrable waits end by themselves under dag.test(), which runs triggers inline and enforces
no defer timeout: the trigger carries the sensor's deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from helpers import ROOT


@pytest.fixture
def scans_stay_in_progress(monkeypatch: pytest.MonkeyPatch, ecr: Any) -> Iterator[None]:
    from moto.ecr.models import ECRBackend

    original = ECRBackend.describe_image_scan_findings

    def in_progress(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        answer: dict[str, Any] = original(self, *args, **kwargs)
        answer["imageScanStatus"] = {"status": "IN_PROGRESS", "description": "scan in progress"}
        answer.pop("imageScanFindings", None)
        return answer

    monkeypatch.setattr(ECRBackend, "describe_image_scan_findings", in_progress)
    yield


def _task_state(run: Any, task_id: str) -> str:
    [ti] = [ti for ti in run.get_task_instances() if ti.task_id == task_id]
    return str(ti.state)


def test_a_deferrable_scan_gate_on_a_scan_that_never_ends_times_out(
    airflow_db: Any, repo: str, put_object: Any, scans_stay_in_progress: None
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "example_dags")).get_dag("example_ecr_layers_scan_gate")
    gate = dag.get_task("scan_gate")
    gate.poke_interval, gate.timeout = 0.5, 3
    started = time.monotonic()
    run = dag.test(run_conf={"source": put_object("m/model.bin", b"weights"), "repository": repo, "tag": "t1"})
    assert run.state == "failed"
    assert _task_state(run, "push") == "success" and _task_state(run, "scan_gate") == "failed"
    assert time.monotonic() - started < 120


def test_a_deferrable_image_sensor_on_an_image_that_never_comes_times_out(airflow_db: Any, repo: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "example_dags")).get_dag("example_ecr_layers_wait_then_pull")
    wait = dag.get_task("wait_for_model")
    wait.poke_interval, wait.timeout = 0.5, 3
    started = time.monotonic()
    run = dag.test(run_conf={"repository": repo, "tag": "never"})
    assert run.state == "failed"
    assert _task_state(run, "wait_for_model") == "failed"
    assert _task_state(run, "pull_model") == "upstream_failed"
    assert time.monotonic() - started < 120
