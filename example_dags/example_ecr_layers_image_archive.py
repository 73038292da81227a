"""Push an image archive a build left in object storage into ECR, without a docker daemon.

The source is a ``docker save`` / ``skopeo copy docker-archive:`` tarball, an OCI image
layout as a tar (``oci-archive:``), either of them gzip-compressed, or an OCI layout
directory. OCI layouts land digest-identical; blobs ECR already has are skipped.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_ecr_layers.operators import PushImageArchiveOperator

with DAG(
    dag_id="example_ecr_layers_image_archive",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr"],
    params={
        "source": Param("s3://artifacts/images/app.oci.tar", type="string"),
        "repository": Param("demo/app", type="string"),
        "tag": Param("latest", type="string"),
        # For an archive with several images: a ref name / RepoTags entry, or "*" for the
        # whole OCI index.json. Empty: the archive must hold exactly one image.
        "image_ref": Param("", type="string"),
    },
) as dag:
    push = PushImageArchiveOperator(
        task_id="push_image",
        source="{{ params.source }}",
        source_conn_id="aws_default",
        repository_name="{{ params.repository }}",
        tags=["{{ params.tag }}"],
        image_ref="{{ params.image_ref }}",
        max_concurrency=4,
    )
