"""The signing example: push, scan gate, sign, verify, copy to a second account, verify there."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from airflow_ecr_layers.testing.server import EmbeddedAws
from helpers import ROOT

PROD_ACCOUNT = "210987654321"


def test_the_signing_dag_promotes_a_signed_image_that_verifies_in_prod(
    airflow_db: Any, aws: EmbeddedAws, ecr: Any, put_object: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    ecr.create_repository(repositoryName="demo/models")
    source = put_object("models/run-42/model.bin", b"signed weights")
    kms = boto3.client("kms", endpoint_url=aws.endpoint_url, region_name=aws.region)
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/release", TargetKeyId=key_id)
    key, secret = aws.credentials_for(PROD_ACCOUNT)
    conn = {"conn_type": "aws", "login": key, "password": secret}
    conn["extra"] = {"endpoint_url": aws.endpoint_url, "region_name": aws.region}  # type: ignore[assignment]
    monkeypatch.setenv("AIRFLOW_CONN_AWS_PROD", json.dumps(conn))
    prod = boto3.client(
        "ecr",
        endpoint_url=aws.endpoint_url,
        region_name=aws.region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )
    prod.create_repository(repositoryName="prod/models")

    bag = DagBag(dag_folder=str(ROOT / "example_dags"))
    assert bag.import_errors == {}
    dag = bag.get_dag("example_ecr_layers_sign_and_verify")
    dag.get_task("scan_gate").poke_interval = 0.2  # moto completes a started scan at once
    run = dag.test(run_conf={"source": source.rsplit("/", 1)[0] + "/"})
    assert run.state == "success"
    verified = run.get_task_instance("verify_in_prod").xcom_pull(task_ids="verify_in_prod")
    assert verified["verified"] and verified["registry_id"] == PROD_ACCOUNT
    assert verified["signatures"][0]["optional"] == {
        "dag": "example_ecr_layers_sign_and_verify",
        "run": run.run_id,
        "source": "s3://artifacts/models/run-42/",
    }
    tags = {
        t for i in prod.describe_images(repositoryName="prod/models")["imageDetails"] for t in i.get("imageTags", [])
    }
    assert "v1" in tags and any(t.endswith(".sig") for t in tags)
