"""Fan out, fan in: one mapped task group per source file, then one PutImage over all layers.

Each mapped group runs initiate -> upload parts -> complete for its file; on a
parallel executor the uploads run at the same time, on different workers if need be.
The files are the ``sources`` param, or every object under the ``prefix`` param
(``list_prefix`` lists it, sorted by key).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task, task_group

from airflow_ecr_layers.object_storage import list_prefix
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
        "prefix": Param("", type="string", description="e.g. s3://artifacts/bundle/ (instead of sources)"),
        "repository": Param("demo/bundles", type="string"),
        "tag": Param("latest", type="string"),
    },
) as dag:

    @task
    def list_sources(params: dict[str, Any] | None = None) -> list[str]:
        if not params:
            return []
        if params.get("prefix"):
            return list_prefix(params["prefix"], "aws_default")
        return list(params["sources"])

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
