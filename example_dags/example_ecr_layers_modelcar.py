"""A KServe modelcar every day: the model directory in S3 becomes an image on a small base.

The files land under ``/models`` in reproducible tar layers streamed from S3 into ECR (no
docker daemon, no local copy), on top of a base image with a shell: KServe runs a modelcar
as a sidecar that links ``/models`` into the predictor and sleeps, so it needs ``ln`` and
``sleep``. The base here is busybox through an ECR pull-through cache of Docker Hub (pulled
once through the cache, it is an ordinary repository); its layers are copied into the
model's repository where missing, its config (``Entrypoint``, ``Cmd``, ``Env``...) kept, and
the model's layers appended. A multi-platform base gives an index with the same model layers
on every platform, or only those named in ``platform``.

The same files on the same base give the same digest, so a day with no new model tags the
digest the day before had. KServe reads it with ``storageUri: oci://<the image>`` and a
Kubernetes ``image`` volume mounts it (the YAML for both is in docs/operators/build-image.md).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_ecr_layers.operators import BuildImageOperator

with DAG(
    dag_id="example_ecr_layers_modelcar",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr", "kserve"],
    params={
        "source": Param("s3://artifacts/models/sentiment/current/", type="string"),
        "repository": Param("ml/sentiment-modelcar", type="string"),
        # an ECR pull-through cache of Docker Hub; any image in ECR will do (another account: a full reference)
        "base": Param("docker-hub/library/busybox:1.37", type="string"),
        "platforms": Param(["linux/amd64", "linux/arm64"], type="array"),
    },
) as dag:
    BuildImageOperator(
        task_id="build_modelcar",
        source="{{ params.source }}",
        source_conn_id="aws_default",
        repository_name="{{ params.repository }}",
        tags=["latest", "{{ dag_run.run_after | ds_nodash }}"],
        path="/models",  # where KServe looks for the model in a modelcar
        base="{{ params.base }}",
        platform="{{ params.platforms | join(',') }}",  # the base's platforms to build on
        labels={"org.opencontainers.image.title": "sentiment model"},
        annotations={"org.opencontainers.image.title": "sentiment model"},
        source_date_epoch=0,  # the digest depends on the files and the base only
        max_concurrency=4,
    )
