"""A round trip through an image: build a prefix into gzip tar layers, then pull the files back out.

The build writes every file under ``/models`` in deterministic gzip layers (``compress="gzip"``:
the same files give the same digest, from S3 or from a local copy). The pull extracts that exact
digest into another prefix: every entry of every layer checked before anything is written, the
files written at their paths under ``/models`` (the folder the build recorded), byte for byte.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_ecr_layers.operators import BuildImageOperator, PullArtifactOperator

with DAG(
    dag_id="example_ecr_layers_build_and_pull",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr"],
    params={
        "source": Param("s3://artifacts/models/run-42/", type="string"),
        "repository": Param("demo/modelcar", type="string"),
        "destination": Param("s3://artifacts/serving/run-42/", type="string"),
    },
) as dag:
    build = BuildImageOperator(
        task_id="build_image",
        source="{{ params.source }}",
        source_conn_id="aws_default",
        repository_name="{{ params.repository }}",
        tags=["gzip"],
        path="/models",
        compress="gzip",  # tar+gzip layers, zlib level 6, no name or time in the gzip header
        source_date_epoch=0,
    )
    pull = PullArtifactOperator(
        task_id="pull_files",
        repository_name="{{ params.repository }}",
        image_digest=build.output["image_digest"],  # exactly what was built
        destination="{{ params.destination }}",
        destination_conn_id="aws_default",
        # path="/models" is what the build recorded; path="/" would give models/... instead
    )
    build >> pull
