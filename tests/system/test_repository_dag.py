"""The push that creates its repository, run with ``dag.test()`` (example_ecr_layers_repository)."""

from __future__ import annotations

import json
from typing import Any

from helpers import ROOT, sha256


def test_the_first_run_creates_the_repository_and_the_next_checks_it(
    airflow_db: Any, ecr: Any, put_object: Any
) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(ROOT / "example_dags"))
    dag = bag.get_dag("example_ecr_layers_repository")
    url = put_object("models/model.bin", b"weights")
    conf = {"source": url, "repository": "demo/created", "team": "vision"}

    first = dag.test(run_conf=conf)
    assert first.state == "success"
    found = ecr.describe_repositories(repositoryNames=["demo/created"])["repositories"][0]
    assert found["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert [f["filter"] for f in found["imageTagMutabilityExclusionFilters"]] == ["latest", "*-dev"]
    assert found["imageScanningConfiguration"] == {"scanOnPush": True}
    policy = json.loads(ecr.get_lifecycle_policy(repositoryName="demo/created")["lifecyclePolicyText"])
    assert [rule["description"] for rule in policy["rules"]] == [
        "keep the last 30 builds",
        "drop untagged images after a week",
    ]
    tags = ecr.list_tags_for_resource(resourceArn=found["repositoryArn"])["tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "vision", "managed-by": "airflow"}  # rendered
    image = ecr.batch_get_image(repositoryName="demo/created", imageIds=[{"imageTag": "latest"}])["images"][0]
    assert json.loads(image["imageManifest"])["layers"][0]["digest"] == sha256(b"weights")

    second = dag.test(run_conf=conf)  # "latest" is excluded from immutability: it may be pushed again
    assert second.state == "success"
    with create_session() as session:
        results = {
            row.run_id: row.value
            for row in session.query(XComModel).filter_by(dag_id=dag.dag_id, task_id="push", key="return_value")
        }
    assert results[first.run_id]["repository"]["created"] is True
    assert results[second.run_id]["repository"] == {**results[first.run_id]["repository"], "created": False}
