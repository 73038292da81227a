"""Publishing on a schedule: every day, the model directory becomes one artifact, paying only for what changed.

Each object under the prefix is a layer titled with its path under it. A run whose
objects are unchanged since the last push reads and uploads nothing: each layer the
last push recorded for an unchanged object (same ETag, size and version) is reused
once ECR confirms it holds that blob. Files larger than ``chunk_size`` go up as
several layers side by side. The XCom ``totals`` say what was reused, read and sent.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_ecr_layers.operators import PushArtifactOperator

with DAG(
    dag_id="example_ecr_layers_publish_prefix",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr"],
    params={
        "prefix": Param("s3://artifacts/models/run-42/", type="string"),
        "repository": Param("demo/models", type="string"),
    },
) as dag:
    PushArtifactOperator(
        task_id="publish",
        source="{{ params.prefix }}",  # or a glob: s3://artifacts/models/run-42/**/*.safetensors
        source_conn_id="aws_default",
        repository_name="{{ params.repository }}",
        # "latest" first: its layers are what a re-push reuses; run_after works for manual runs too
        tags=["latest", "{{ dag_run.run_after | ds_nodash }}"],
        artifact_type="application/vnd.example.model.v1",
        chunk_size=1024 * 1024 * 1024,  # files over 1 GiB: 1 GiB layers, uploaded in parallel
        max_concurrency=4,
    )
