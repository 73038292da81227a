"""ECR image assets (URIs, events after a push, the scheduled consumer) and OpenLineage facets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from conftest import ROOT, sha256

from airflow_ecr_layers.assets import create_asset, image_asset_uri, parse_asset_uri
from airflow_ecr_layers.operators import PushArtifactOperator

PRODUCER, CONSUMER = "example_ecr_layers_asset_producer", "example_ecr_layers_asset_consumer"


def test_asset_uri_round_trip_and_validation() -> None:
    uri = image_asset_uri("123456789012", "eu-west-1", "team/model")
    assert uri == "ecr://123456789012/eu-west-1/team/model"
    assert parse_asset_uri(uri) == ("123456789012", "eu-west-1", "team/model")
    assert create_asset(registry_id="123456789012", region="eu-west-1", repository="team/model").uri == uri
    for bad in ("ecr://12/eu-west-1/x1", "ecr://123456789012/nowhere/x1", "ecr://123456789012/eu-west-1/BAD"):
        with pytest.raises(ValueError):
            parse_asset_uri(bad)


def test_scheme_is_registered_with_airflow() -> None:
    from airflow.providers_manager import ProvidersManager

    assert "ecr" in ProvidersManager().asset_uri_handlers
    from airflow.sdk import Asset

    with pytest.raises(ValueError):
        Asset(uri="ecr://not-a-registry/region/x")


def test_openlineage_facets(put_object: Any, repo: str) -> None:
    url = put_object("lineage/model.bin", b"model bytes")
    operator = PushArtifactOperator(task_id="push", source=url, repository_name=repo, tags=["v1"])
    operator.execute({})
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("s3://artifacts", "lineage/model.bin")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("ecr://123456789012/us-east-1", repo)]


def test_push_fills_the_asset_event_and_queues_the_consumer(
    airflow_db: Any, ecr: Any, put_object: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetDagRunQueue, AssetEvent
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    ecr.create_repository(repositoryName="demo/models")
    data = b"a model" * 1000
    put_object("models/model.bin", data)
    subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], check=True, env=os.environ.copy(),
                   capture_output=True)
    with create_session() as session:
        session.query(DagModel).filter(DagModel.dag_id == CONSUMER).update({"is_paused": False})
    run = DagBag(dag_folder=str(ROOT / "example_dags")).get_dag(PRODUCER).test()
    assert run.state == "success"
    with create_session() as session:
        event = session.query(AssetEvent).filter(AssetEvent.source_dag_id == PRODUCER).one()
        assert event.extra["image_digest"].startswith("sha256:") and event.extra["tags"] == ["latest"]
        stored = ecr.batch_get_image(repositoryName="demo/models", imageIds=[{"imageTag": "latest"}])["images"][0]
        assert event.extra["image_digest"] == sha256(stored["imageManifest"].encode())
        queued = session.query(AssetDagRunQueue).filter(AssetDagRunQueue.target_dag_id == CONSUMER).count()
        assert queued == 1, "the consumer DAG was not queued by the push's asset event"
    assert json.loads(stored["imageManifest"])["layers"][0]["digest"] == sha256(data)


class _Event:
    def __init__(self) -> None:
        self.extra: dict[str, Any] = {}


class _OutletEvents(dict):  # type: ignore[type-arg]
    """What Airflow hands a task as ``outlet_events``: an event per outlet, made on first use."""

    def __missing__(self, key: Any) -> _Event:
        self[key] = event = _Event()
        return event


def test_only_the_outlet_of_the_pushed_account_region_and_repository_gets_the_event(
    put_object: Any, repo: str
) -> None:
    """Outlets used to be matched by repository name only: the same name in another account or
    region got the event too."""
    ours = create_asset(registry_id="123456789012", region="us-east-1", repository=repo)
    others = [
        create_asset(registry_id="210987654321", region="us-east-1", repository=repo),
        create_asset(registry_id="123456789012", region="eu-west-1", repository=repo),
        create_asset(registry_id="123456789012", region="us-east-1", repository="team/other"),
    ]
    events = _OutletEvents()
    url = put_object("assets/model.bin", b"model bytes")
    operator = PushArtifactOperator(task_id="push", source=url, repository_name=repo, tags=["v1"],
                                    outlets=[ours, *others])
    result = operator.execute({"outlet_events": events})
    assert events[ours].extra["image_digest"] == result["image_digest"]
    assert events[ours].extra["registry_id"] == "123456789012"
    assert [events[other].extra for other in others] == [{}, {}, {}]
