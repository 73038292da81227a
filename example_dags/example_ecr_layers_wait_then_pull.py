"""Bring a model back from ECR once it is there: wait for the tag, then pull exactly that digest.

The sensor defers to the triggerer (no worker slot held while waiting) and gives up by
itself when its timeout passes. The pull writes each file of the artifact under the
destination, each verified before it appears.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_ecr_layers.operators import PullArtifactOperator
from airflow_ecr_layers.sensors import EcrImageSensor

with DAG(
    dag_id="example_ecr_layers_wait_then_pull",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr"],
    params={
        "repository": Param("demo/models", type="string"),
        "tag": Param("v1", type="string"),
        "destination": Param("s3://artifacts/serving/current/", type="string"),
    },
) as dag:
    wait = EcrImageSensor(
        task_id="wait_for_model",
        repository_name="{{ params.repository }}",
        image_tag="{{ params.tag }}",
        deferrable=True,
        poke_interval=60,
        timeout=6 * 60 * 60,
    )
    pull = PullArtifactOperator(
        task_id="pull_model",
        repository_name="{{ params.repository }}",
        image_digest=wait.output["image_digest"],  # what the sensor saw, even if the tag moves on
        destination="{{ params.destination }}",
        destination_conn_id="aws_default",
    )
    wait >> pull
