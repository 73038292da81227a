"""One-step push: a file in object storage becomes a tagged OCI artifact in ECR."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_ecr_layers.operators import PushArtifactOperator

with DAG(
    dag_id="example_ecr_layers_push",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr"],
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
        # run_after, not ds_nodash: a manually triggered run has no logical date in Airflow 3
        tags=["{{ params.tag }}", "build-{{ dag_run.run_after | ds_nodash }}"],
        artifact_type="application/vnd.example.model.v1",
        annotations={"org.opencontainers.image.source": "{{ params.source }}"},
    )
