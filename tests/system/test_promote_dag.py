"""The promotion example: the scan gate passes, then the scanned digest is copied to a second account."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_ecr_layers.testing.server import EmbeddedAws
from helpers import ROOT, another_account, pattern_bytes

PROD_ACCOUNT = "210987654321"


def test_the_promotion_dag_copies_the_scanned_digest_to_prod(
    airflow_db: Any, aws: EmbeddedAws, ecr: Any, put_object: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from airflow_ecr_layers.operators import PushArtifactOperator

    ecr.create_repository(repositoryName="demo/models")
    pushed = PushArtifactOperator(
        task_id="push",
        source=put_object("models/model.bin", pattern_bytes(6 * 1024 * 1024, seed=4)),
        repository_name="demo/models",
        tags=["v1"],
    ).execute({})
    prod = another_account(aws, monkeypatch, PROD_ACCOUNT)
    prod.create_repository(repositoryName="prod/models")

    bag = DagBag(dag_folder=str(ROOT / "example_dags"))
    assert bag.import_errors == {}
    dag = bag.get_dag("example_ecr_layers_promote")
    dag.get_task("scan_gate").poke_interval = 0.2  # moto completes a started scan at once
    run = dag.test(run_conf={"repository": "demo/models", "tag": "v1", "prod_repository": "prod/models"})
    assert run.state == "success"
    [image] = prod.describe_images(repositoryName="prod/models")["imageDetails"]
    assert image["imageDigest"] == pushed["image_digest"] and image["imageTags"] == ["v1"]
    assert image["registryId"] == PROD_ACCOUNT
