"""The four-step lifecycle: initiate, upload parts, complete, put image.

Each operator's ``.output`` is the next one's input. Trigger with a config to point
it elsewhere, e.g. ``{"source": "s3://my-bucket/model.bin", "repository": "ml/model",
"tag": "v3"}``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_ecr_layers.operators import (
    CompleteLayerUploadOperator,
    InitiateLayerUploadOperator,
    PutImageOperator,
    UploadLayerPartsOperator,
)

with DAG(
    dag_id="example_ecr_layers_lifecycle",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr"],
    params={
        "source": Param("s3://artifacts/models/model.bin", type="string"),
        "repository": Param("demo/models", type="string"),
        "tag": Param("latest", type="string"),
        "artifact_type": Param("application/vnd.example.model.v1", type="string"),
    },
) as dag:
    initiate = InitiateLayerUploadOperator(task_id="initiate", repository_name="{{ params.repository }}")
    parts = UploadLayerPartsOperator(
        task_id="upload_parts",
        source="{{ params.source }}",
        source_conn_id="aws_default",
        upload=initiate.output,
    )
    complete = CompleteLayerUploadOperator(task_id="complete", upload=parts.output)
    put = PutImageOperator(
        task_id="put_image",
        repository_name="{{ params.repository }}",
        layers=[complete.output],
        artifact_type="{{ params.artifact_type }}",
        tags=["{{ params.tag }}"],
    )
