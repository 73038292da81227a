"""Fixtures of every tier: an embedded strict ECR+S3 on loopback and an Airflow home for DAG runs.

Tests are in tiers, one folder each, and each test gets its folder's marker:
``unit`` (pure logic, no services, seconds), ``integration`` (the embedded ECR+S3
over HTTP, fault proxies) and ``system`` (DAG runs, real image tools, installs, the
distributed run). Shared helpers live in ``helpers.py``, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from helpers import CONN_ID, ROOT

if TYPE_CHECKING:
    from airflow_ecr_layers.testing.server import EmbeddedAws
    from airflow_ecr_layers.testing.strict_ecr import EcrStats

_HOME = Path(tempfile.mkdtemp(prefix="ecr-layers-airflow-"))
# Airflow reads these when first imported: set them before any test module imports it.
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "XDG_CACHE_HOME": str(_HOME / "cache"),  # the CLI's resume records: not the user's own cache
        # one key for every process of the suite, so a Variable a subprocess wrote reads back here
        "AIRFLOW__CORE__FERNET_KEY": "YWlyZmxvdy1lY3ItbGF5ZXJzLXRlc3RzLWZlcm5ldCE=",
    }
)

TIERS = ("unit", "integration", "system")
pytest_plugins = ["tier_times"]  # each tier's time at the end of a run (tests/tier_times.py)

LONGEST_FIRST = (
    "system/test_distributed_run.py",
    "integration/test_fault_matrix.py",
    "system/test_resume_dag.py",
    "system/test_demo.py",
    "system/test_wheel.py",
    "system/test_asset_events.py",
    "system/test_image_archives.py",
    "system/test_dags.py",
)
"""The files that take longest, slowest first. Under pytest-xdist (``scripts/test.sh``: ``--dist loadfile
--no-loadscope-reorder``) each file goes whole to one worker, in collection order: these go first, so
that no worker is left running a long one while the other has nothing to do."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier (its folder under tests/); a test outside the tiers is an error.
    In a pytest-xdist worker, the files of :data:`LONGEST_FIRST` are moved to the front."""
    for item in items:
        tier = Path(str(item.path)).relative_to(ROOT / "tests").parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/unit, tests/integration or tests/system")
        item.add_marker(getattr(pytest.mark, tier))
    if "PYTEST_XDIST_WORKER" in os.environ:

        def rank(item: pytest.Item) -> int:
            path = Path(str(item.path)).relative_to(ROOT / "tests").as_posix()
            return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

        items.sort(key=rank)  # stable: the rest keep their order


@pytest.fixture(scope="session")
def aws() -> Iterator[EmbeddedAws]:
    from airflow_ecr_layers.testing.server import EmbeddedAws

    with EmbeddedAws() as server:
        conn = {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": server.endpoint_url, "region_name": server.region},
        }
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(conn)
        yield server


@pytest.fixture
def clean_aws(aws: EmbeddedAws) -> EmbeddedAws:
    aws.reset()
    return aws


@pytest.fixture
def ecr(clean_aws: EmbeddedAws) -> Any:
    import boto3

    return boto3.client("ecr", endpoint_url=clean_aws.endpoint_url, region_name=clean_aws.region)


@pytest.fixture
def s3(clean_aws: EmbeddedAws) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=clean_aws.endpoint_url, region_name=clean_aws.region)


@pytest.fixture
def kms(clean_aws: EmbeddedAws) -> Any:
    import boto3

    return boto3.client("kms", endpoint_url=clean_aws.endpoint_url, region_name=clean_aws.region)


@pytest.fixture
def repo(ecr: Any) -> str:
    ecr.create_repository(repositoryName="team/models")
    return "team/models"


@pytest.fixture
def bucket(s3: Any) -> str:
    s3.create_bucket(Bucket="artifacts")
    return "artifacts"


@pytest.fixture
def put_object(s3: Any, bucket: str) -> Callable[[str, bytes], str]:
    def put(key: str, data: bytes) -> str:
        s3.put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    return put


@pytest.fixture
def hook(clean_aws: EmbeddedAws) -> Any:
    from airflow_ecr_layers.hooks import EcrLayersHook

    return EcrLayersHook(aws_conn_id=CONN_ID)


@pytest.fixture(scope="session")
def airflow_db(aws: EmbeddedAws) -> Path:
    """An initialised metadata DB (sqlite) for ``dag.test()``."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
    )
    return _HOME


@pytest.fixture
def stats() -> EcrStats:
    from airflow_ecr_layers.testing.strict_ecr import STATS

    STATS.reset()
    return STATS
