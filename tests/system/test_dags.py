"""The example DAGs, run for real with ``dag.test()`` against the embedded ECR+S3."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from helpers import ROOT, MiB, pattern_bytes, sha256


def _load(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "example_dags"))
    assert bag.import_errors == {}
    return bag.get_dag(dag_id)


def _xcoms(dag_id: str, run_id: str) -> dict[str, list[Any]]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    found: dict[str, list[Any]] = {}
    with create_session() as session:
        for row in session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id).all():
            found.setdefault(row.task_id, []).append(row.value)
    return found


def test_example_dags_import_cleanly() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "example_dags"))
    assert bag.import_errors == {}
    assert {"example_ecr_layers_lifecycle", "example_ecr_layers_push", "example_ecr_layers_fanout"} <= set(bag.dags)


def test_lifecycle_dag_pushes_and_chains_results(airflow_db: Any, repo: str, put_object: Any, ecr: Any) -> None:
    data = pattern_bytes(11 * MiB + 123)
    url = put_object("models/model.bin", data)
    dag = _load("example_ecr_layers_lifecycle")
    run = dag.test(run_conf={"source": url, "repository": repo, "tag": "dag-v1"})
    assert run.state == "success"
    image = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "dag-v1"}])["images"][0]
    manifest = json.loads(image["imageManifest"])
    assert manifest["layers"][0]["digest"] == sha256(data)
    assert image["imageId"]["imageDigest"] == sha256(image["imageManifest"].encode())
    xcoms = _xcoms(dag.dag_id, run.run_id)
    assert set(xcoms) == {"initiate", "upload_parts", "complete", "put_image"}
    serialized = json.dumps(xcoms)
    assert len(serialized) < 4096, "XCom must hold small dicts, never blob bytes"


def test_fanout_dag_maps_one_group_per_source(airflow_db: Any, ecr: Any, s3: Any, bucket: str) -> None:
    ecr.create_repository(repositoryName="demo/bundles")
    blobs = {"bundle/weights.bin": pattern_bytes(6 * MiB, 1), "bundle/tokenizer.json": b'{"vocab": 3}'}
    for key, data in blobs.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    run = _load("example_ecr_layers_fanout").test()
    assert run.state == "success"
    image = ecr.batch_get_image(repositoryName="demo/bundles", imageIds=[{"imageTag": "latest"}])["images"][0]
    manifest = json.loads(image["imageManifest"])
    assert [layer["digest"] for layer in manifest["layers"]] == [sha256(d) for d in blobs.values()]
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in manifest["layers"]] == [
        "weights.bin",
        "tokenizer.json",
    ]


def test_credentials_never_reach_logs_or_xcom(
    airflow_db: Any, repo: str, put_object: Any, ecr: Any, monkeypatch: pytest.MonkeyPatch, capfd: Any, aws: Any
) -> None:
    secret_key, secret = "AKIASECRETKEYID00042", "s3cr3t-Very-Distinctive-Secret-Value-42"
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": secret_key,
                "password": secret,
                "extra": {"endpoint_url": aws.endpoint_url, "region_name": aws.region},
            }
        ),
    )
    url = put_object("models/model.bin", pattern_bytes(5 * MiB + 1))
    dag = _load("example_ecr_layers_push")
    run = dag.test(run_conf={"source": url, "repository": repo, "tag": "secret-test"})
    assert run.state == "success"
    out, err = capfd.readouterr()
    assert "Pushed team/models" in out + err  # the task log was captured
    assert secret not in out + err
    xcoms = json.dumps(_xcoms(dag.dag_id, run.run_id))
    assert secret not in xcoms and secret_key not in xcoms
    assert ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "secret-test"}])["imageDetails"]


def test_provider_is_registered() -> None:
    import subprocess
    import sys

    listed = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    providers = {p["package_name"]: p for p in json.loads(listed.stdout)}
    assert "airflow-ecr-layers" in providers
    from airflow_ecr_layers import get_provider_info

    info = get_provider_info()
    assert info["package-name"] == "airflow-ecr-layers"
    assert "connection-types" not in info  # reuses the amazon provider's "aws" connection


def test_fanout_dag_expands_a_prefix(airflow_db: Any, ecr: Any, s3: Any, bucket: str) -> None:
    ecr.create_repository(repositoryName="demo/bundles")
    blobs = {"bundle/weights.bin": pattern_bytes(6 * MiB, 1), "bundle/tokenizer.json": b'{"vocab": 3}'}
    for key, data in blobs.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    run = _load("example_ecr_layers_fanout").test(run_conf={"prefix": "s3://artifacts/bundle/"})
    assert run.state == "success"
    image = ecr.batch_get_image(repositoryName="demo/bundles", imageIds=[{"imageTag": "latest"}])["images"][0]
    manifest = json.loads(image["imageManifest"])
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in manifest["layers"]] == [
        "tokenizer.json",
        "weights.bin",
    ]


def test_wait_then_pull_dag_brings_the_model_back(airflow_db: Any, ecr: Any, s3: Any, bucket: str) -> None:
    from airflow_ecr_layers.operators import PushArtifactOperator

    ecr.create_repository(repositoryName="demo/models")
    data = pattern_bytes(6 * MiB + 1, 8)
    s3.put_object(Bucket=bucket, Key="models/run/model.bin", Body=data)
    PushArtifactOperator(
        task_id="push", source="s3://artifacts/models/run/", repository_name="demo/models", tags=["v1"]
    ).execute({})
    run = _load("example_ecr_layers_wait_then_pull").test(
        run_conf={"repository": "demo/models", "tag": "v1", "destination": "s3://artifacts/serving/current/"}
    )
    assert run.state == "success"
    assert s3.get_object(Bucket=bucket, Key="serving/current/model.bin")["Body"].read() == data
