"""Sign what passed the scan with a KMS key, verify it, and promote it to production still verifiable.

push -> scan gate -> sign (cosign's format, ``kms:Sign`` on the dev account's key, the DAG, the
run and the source in the payload) -> verify (the gate: refuse what this key did not sign for
this digest) -> copy to the production account (with cosign's ``sha256-<hex>.sig`` tag) ->
verify again there, through the production connection, so production checks the digest it
now holds. ``cosign verify --key awskms:///alias/release --insecure-ignore-tlog
--new-bundle-format=false`` accepts the same signatures (see docs/signing.md).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_ecr_layers.operators import (
    CopyImageOperator,
    PushArtifactOperator,
    SignImageOperator,
    VerifyImageSignatureOperator,
)
from airflow_ecr_layers.sensors import EcrImageScanSensor

ANNOTATIONS = {"dag": "{{ dag.dag_id }}", "run": "{{ run_id }}", "source": "{{ params.source }}"}

with DAG(
    dag_id="example_ecr_layers_sign_and_verify",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr", "signing"],
    params={
        "source": Param("s3://ml-artifacts/models/run-42/", type="string"),
        "repository": Param("demo/models", type="string"),
        "tag": Param("v1", type="string"),
        "prod_repository": Param("prod/models", type="string"),
        "key": Param("awskms:///alias/release", type="string"),
    },
) as dag:
    push = PushArtifactOperator(
        task_id="push",
        source="{{ params.source }}",
        repository_name="{{ params.repository }}",
        tags=["{{ params.tag }}"],
    )
    scan_gate = EcrImageScanSensor(
        task_id="scan_gate",
        repository_name="{{ params.repository }}",
        image_digest=push.output["image_digest"],
        start_scan=True,
        fail_on_severity="CRITICAL",
        poke_interval=30,
        timeout=30 * 60,
    )
    sign = SignImageOperator(
        task_id="sign",
        repository_name="{{ params.repository }}",
        image_digest=scan_gate.output["image_digest"],  # exactly what was scanned
        key="{{ params.key }}",
        annotations=ANNOTATIONS,
    )
    verify = VerifyImageSignatureOperator(
        task_id="verify",
        repository_name="{{ params.repository }}",
        image_digest=scan_gate.output["image_digest"],
        keys="{{ params.key }}",
        required_annotations={"dag": "{{ dag.dag_id }}", "run": "{{ run_id }}"},
    )
    promote = CopyImageOperator(
        task_id="promote",
        source_aws_conn_id="aws_default",  # the dev account
        source_repository_name="{{ params.repository }}",
        source_image_digest=scan_gate.output["image_digest"],
        aws_conn_id="aws_prod",  # the prod account's connection
        repository_name="{{ params.prod_repository }}",
        tags=["{{ params.tag }}"],
        include_referrers=True,  # the .sig tag goes along
    )
    verify_in_prod = VerifyImageSignatureOperator(
        task_id="verify_in_prod",
        aws_conn_id="aws_prod",
        repository_name="{{ params.prod_repository }}",
        image_tag="{{ params.tag }}",
        keys="{{ params.key }}",
        kms_aws_conn_id="aws_default",  # the key lives in the account that signed (or give a PEM)
        accepted_references=["{{ params.repository }}"],  # the payload names the repository it was signed in
        required_annotations={"dag": "{{ dag.dag_id }}"},
    )
    push >> scan_gate >> sign >> verify >> promote >> verify_in_prod
