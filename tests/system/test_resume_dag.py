"""A DAG's push task killed mid-upload (its process SIGKILLed) is continued by its next try."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from airflow_ecr_layers.testing.fault_proxy import FaultProxy, FaultRule
from airflow_ecr_layers.testing.server import EmbeddedAws
from helpers import ROOT, MiB, pattern_bytes, sha256, wait_for

PART = 5 * MiB
SIZE = 10 * PART - 12_345


DAG_FILE = """
import pendulum
from airflow.sdk import DAG
from airflow_ecr_layers.operators import PushArtifactOperator

with DAG("resume_after_kill", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         default_args={{"retries": 1}}):
    PushArtifactOperator(task_id="push", source="{source}", repository_name="{repo}", tags=["v1"],
                         part_size={part}, aws_conn_id="aws_default")
"""

RUN_DAG = """
import sys
from airflow.dag_processing.dagbag import DagBag
import pendulum
dag = DagBag(dag_folder=sys.argv[1]).get_dag("resume_after_kill")
when = pendulum.datetime(2026, 2, 2, tz="UTC")
run = dag.test(logical_date=when, run_after=when)  # the same DAG run both times: its task's next try
print("STATE", run.state, flush=True)
"""


def test_a_dag_task_killed_mid_upload_is_continued_by_its_next_try(
    airflow_db: Any, aws: EmbeddedAws, repo: str, stats: Any, tmp_path: Path
) -> None:
    """The task runs in the process that runs the DAG (``dag.test()``): that process is the
    worker, and it is SIGKILLed while the task uploads; running the same DAG run again gives
    the task its next try, which continues the upload from the record its first try kept."""
    data = pattern_bytes(SIZE, seed=12)
    (tmp_path / "model.bin").write_bytes(data)
    source = tmp_path / "model.bin"
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "resume_after_kill.py").write_text(DAG_FILE.format(source=f"file://{source}", repo=repo, part=PART))

    def connection(endpoint: str) -> str:
        return json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": endpoint, "region_name": aws.region},
            }
        )

    def env(endpoint: str) -> dict[str, str]:
        return {
            **os.environ,
            "AIRFLOW__CORE__DAGS_FOLDER": str(folder),
            "AIRFLOW_CONN_AWS_DEFAULT": connection(endpoint),
        }

    hold = FaultRule("UploadLayerPart", 5, "delay", delay_seconds=None, forward_after_delay=False)
    with FaultProxy(aws.endpoint_url, [hold]) as proxy:
        first = subprocess.Popen(
            [sys.executable, "-c", RUN_DAG, str(folder)],
            env=env(proxy.endpoint_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        wait_for(lambda: proxy.calls("UploadLayerPart") >= 5 or first.poll() is not None, timeout=120)
        first.send_signal(signal.SIGKILL)
        first.wait()
    names = [v for v in _variables() if v.startswith("airflow_ecr_layers.resume.resume_after_kill.push.")]
    assert len(names) == 1
    [record] = json.loads(_variables()[names[0]]).values()
    # saved when the upload started, then every few seconds: the four parts may be in it or not
    assert record["confirmed"] in (0, 4 * PART) and record["size"] == SIZE
    stats.reset()
    second = subprocess.run(
        [sys.executable, "-c", RUN_DAG, str(folder)],
        env=env(aws.endpoint_url),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert "STATE success" in second.stdout, second.stdout[-3000:] + second.stderr[-3000:]
    sent = stats.repository(repo)
    refused = 0 if record["confirmed"] else PART  # a record at 0 costs one part that ECR refuses
    assert sent.bytes_received == SIZE - 4 * PART + refused + 2  # and the 2-byte empty config
    assert sent.upload_layer_part_calls - 1 <= 7
    image = aws_ecr(aws).batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"][0]
    assert json.loads(image["imageManifest"])["layers"][0]["digest"] == sha256(data)
    assert [v for v in _variables() if v.startswith("airflow_ecr_layers.resume.")] == []


def _variables() -> dict[str, str]:
    from airflow.models.variable import Variable as VariableModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return {v.key: v.val for v in session.query(VariableModel)}


def aws_ecr(aws: EmbeddedAws) -> Any:
    import boto3

    return boto3.client("ecr", endpoint_url=aws.endpoint_url, region_name=aws.region)
