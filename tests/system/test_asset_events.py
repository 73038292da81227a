"""A push's asset event queues the consumer DAG (both example DAGs, run for real)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from helpers import ROOT, sha256

PRODUCER, CONSUMER = "example_ecr_layers_asset_producer", "example_ecr_layers_asset_consumer"


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
    subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "reserialize"], check=True, env=os.environ.copy(), capture_output=True
    )
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
