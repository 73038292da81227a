"""The scan-gate example DAG: push, then the deferrable scan sensor gates on the findings."""

from __future__ import annotations

from typing import Any

from airflow_ecr_layers.sensors import EcrImageScanSensor
from helpers import ROOT


def test_scan_gate_example_dag_pushes_then_passes_the_gate(airflow_db: Any, repo: str, put_object: Any) -> None:
    from airflow.dag_processing.dagbag import DagBag

    url = put_object("models/model.bin", b"a small model")
    bag = DagBag(dag_folder=str(ROOT / "example_dags"))
    assert bag.import_errors == {}
    dag = bag.get_dag("example_ecr_layers_scan_gate")
    gate = dag.get_task("scan_gate")
    assert isinstance(gate, EcrImageScanSensor) and gate.deferrable and gate.start_scan
    gate.poke_interval = 0.2  # moto completes a started scan at once
    run = dag.test(run_conf={"source": url, "repository": repo, "tag": "gate-v1"})
    assert run.state == "success"
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag.dag_id, run_id=run.run_id, task_id="scan_gate", key="return_value")
            .one()
        )
        assert row.value["severity_counts"] == {"HIGH": 1}
        assert row.value["repository_name"] == repo and row.value["scan_status"] == "COMPLETE"
        # the gate got its digest through push.output["image_digest"]: push's key pushed on its own
        pushed = session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=run.run_id, task_id="push")
        by_key = {xcom.key: xcom.value for xcom in pushed}
        assert by_key["image_digest"] == by_key["return_value"]["image_digest"] == row.value["image_digest"]
        # the gate's own result is also pushed key by key: gate.output["image_digest"] reads one value
        gate_keys = {
            xcom.key: xcom.value
            for xcom in session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=run.run_id, task_id="scan_gate")
        }
        assert gate_keys["image_digest"] == row.value["image_digest"]
