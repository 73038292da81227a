"""Promote an image to production once its scan passes: the scan gate, then a copy to the prod account.

The copy reads the scanned image by its digest (a tag could move between the scan and
the copy) through the dev connection, and writes it through the prod connection: blobs
prod already has are skipped, the rest stream from dev's download URLs into prod's
uploads, and the manifests keep their bytes, so the digest in prod is the digest that
was scanned. Signatures and SBOMs whose subject is the image go along.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_ecr_layers.operators import CopyImageOperator
from airflow_ecr_layers.sensors import EcrImageScanSensor

with DAG(
    dag_id="example_ecr_layers_promote",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr"],
    params={
        "repository": Param("demo/models", type="string"),
        "tag": Param("v1", type="string"),
        "prod_repository": Param("prod/models", type="string"),
    },
) as dag:
    scan_gate = EcrImageScanSensor(
        task_id="scan_gate",
        aws_conn_id="aws_default",
        repository_name="{{ params.repository }}",
        image_tag="{{ params.tag }}",
        start_scan=True,
        fail_on_severity="CRITICAL",
        deferrable=True,
        poke_interval=30,
        timeout=30 * 60,
    )
    promote = CopyImageOperator(
        task_id="promote",
        source_aws_conn_id="aws_default",  # the dev account
        source_repository_name="{{ params.repository }}",
        source_image_digest=scan_gate.output["image_digest"],  # exactly what was scanned
        aws_conn_id="aws_prod",  # the prod account's connection (a role in prod, say)
        repository_name="{{ params.prod_repository }}",
        tags=["{{ params.tag }}"],
        include_referrers=True,
    )
    scan_gate >> promote
