"""Producer: push a model and announce it as an ECR image asset.

The outlet asset is ``ecr://<registry id>/<region>/<repository>``; the push fills its
event's ``extra`` with the image digest and tags. See the consumer DAG next to this one.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_ecr_layers.assets import ecr_image_asset
from airflow_ecr_layers.operators import PushArtifactOperator

MODEL_IMAGE = ecr_image_asset("demo/models", registry_id="123456789012", region="us-east-1")

with DAG(
    dag_id="example_ecr_layers_asset_producer",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr", "assets"],
) as dag:
    PushArtifactOperator(
        task_id="push_model",
        source="s3://artifacts/models/model.bin",
        repository_name="demo/models",
        tags=["latest"],
        artifact_type="application/vnd.example.model.v1",
        outlets=[MODEL_IMAGE],
    )
