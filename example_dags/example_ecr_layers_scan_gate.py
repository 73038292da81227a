"""Push, then gate on the image scan: the run fails if the findings are too severe.

``PushArtifactOperator`` pushes the file; ``EcrImageScanSensor`` starts a scan of the
pushed digest (``start_scan=True``; not needed with scan-on-push or enhanced
scanning), waits for it in the triggerer (``deferrable=True``: no worker slot is held
while ECR scans) and fails the task on any CRITICAL finding or on more than five HIGH
ones. Its XCom is the severity counts. Trigger with a config to point it elsewhere,
e.g. ``{"source": "s3://my-bucket/model.bin", "repository": "ml/model", "tag": "v3"}``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_ecr_layers.operators import PushArtifactOperator
from airflow_ecr_layers.sensors import EcrImageScanSensor

with DAG(
    dag_id="example_ecr_layers_scan_gate",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr", "scan"],
    params={
        "source": Param("s3://artifacts/models/model.bin", type="string"),
        "repository": Param("demo/models", type="string"),
        "tag": Param("latest", type="string"),
    },
) as dag:
    push = PushArtifactOperator(
        task_id="push",
        source="{{ params.source }}",
        source_conn_id="aws_default",
        repository_name="{{ params.repository }}",
        tags=["{{ params.tag }}"],
        artifact_type="application/vnd.example.model.v1",
    )
    scan_gate = EcrImageScanSensor(
        task_id="scan_gate",
        repository_name="{{ params.repository }}",
        image_digest=push.output["image_digest"],  # one key of push's result; also sets push >> scan_gate
        start_scan=True,
        fail_on_severity="CRITICAL",
        max_findings={"HIGH": 5},
        deferrable=True,
        poke_interval=30,
        timeout=30 * 60,
    )
    push >> scan_gate
