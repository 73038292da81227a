"""Fan out, fan in: one mapped task group per source file, then one PutImage over all layers.

Each mapped group runs initiate -> upload parts -> complete for its file; on a
parallel executor the uploads run at the same time, on different workers if need be.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task, task_group

from airflow_ecr_layers.operators import (
    CompleteLayerUploadOperator,
    InitiateLayerUploadOperator,
    PutImageOperator,
    UploadLayerPartsOperator,
)

with DAG(
    dag_id="example_ecr_layers_fanout",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr"],
    params={
        "sources": Param(
            ["s3://artifacts/bundle/weights.bin", "s3://artifacts/bundle/tokenizer.json"],
            type="array",
        ),
        "repository": Param("demo/bundles", type="string"),
        "tag": Param("latest", type="string"),
    },
) as dag:

    @task
    def list_sources(params: dict | None = None) -> list[str]:
        return list(params["sources"]) if params else []

    @task_group
    def layer(source: str):
        initiate = InitiateLayerUploadOperator(task_id="initiate", repository_name="{{ params.repository }}")
        parts = UploadLayerPartsOperator(
            task_id="upload_parts", source=source, source_conn_id="aws_default", upload=initiate.output
        )
        complete = CompleteLayerUploadOperator(task_id="complete", upload=parts.output)
        return complete.output

    layers = layer.expand(source=list_sources())

    PutImageOperator(
        task_id="put_image",
        repository_name="{{ params.repository }}",
        layers=layers,
        artifact_type="application/vnd.example.bundle.v1",
        tags=["{{ params.tag }}"],
    )
