"""Building an image from files: every day, the model directory in S3 becomes a data-only image.

Each file lands under ``/models`` in uncompressed tar layers (a big file alone, small files
in groups chosen by their paths), streamed from S3 into ECR: no docker daemon, no local
copy. The same files give the same image digest, from S3 or from a local copy, so a day
with no change tags the digest the day before had. The image is what a Kubernetes
``image`` volume mounts (see docs/operators/build-image.md); on a base image, for KServe
modelcars, which need a shell: example_ecr_layers_modelcar.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_ecr_layers.operators import BuildImageOperator

with DAG(
    dag_id="example_ecr_layers_build_image",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr"],
    params={
        "source": Param("s3://artifacts/models/run-42/", type="string"),
        "repository": Param("demo/modelcar", type="string"),
    },
) as dag:
    BuildImageOperator(
        task_id="build_image",
        source="{{ params.source }}",  # a prefix, a glob, a file, or a list of them
        source_conn_id="aws_default",
        repository_name="{{ params.repository }}",
        tags=["latest", "{{ dag_run.run_after | ds_nodash }}"],
        path="/models",
        platform="linux/amd64",
        annotations={"org.opencontainers.image.title": "demo model"},  # nothing that changes by the day
        source_date_epoch=0,  # entries dated 1970: the digest depends on the files only
        max_concurrency=4,
    )
