"""The signing example: push, scan gate, sign, verify, copy to a second account, verify there."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_ecr_layers.testing.server import EmbeddedAws
from helpers import ROOT, another_account, make_signing_key

PROD_ACCOUNT = "210987654321"


def test_the_signing_dag_promotes_a_signed_image_that_verifies_in_prod(
    airflow_db: Any, aws: EmbeddedAws, ecr: Any, kms: Any, put_object: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    ecr.create_repository(repositoryName="demo/models")
    source = put_object("models/run-42/model.bin", b"signed weights")
    make_signing_key(kms)
    prod = another_account(aws, monkeypatch, PROD_ACCOUNT)
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
