"""Names and paths every part of the distributed run shares: the DAGs and task it watches,
the bucket and repository it pushes to, the Celery workers and the spread barrier's settings."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root."""
SCRIPTS = ROOT / "scripts"
"""On the Celery workers' ``PYTHONPATH``: where they import this package from."""
DAGS_FOLDER = ROOT / "example_dags"
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")

DAG_ID = "example_ecr_layers_fanout"
UPLOAD_TASK = "layer.upload_parts"
PUSH_DAG_ID = "example_ecr_layers_push"
"""The one-step push DAG the same-tag runs trigger."""
ECR_OPERATIONS = (
    "InitiateLayerUpload",
    "UploadLayerPart",
    "CompleteLayerUpload",
    "PutImage",
    "BatchCheckLayerAvailability",
    "DescribeRepositories",
    "BatchGetImage",
)
"""The ECR calls whose throttled share ``--throttle`` reports."""
BUCKET = "artifacts"
REPOSITORY = "demo/bundles"
REGION = "us-east-1"
MiB = 1024 * 1024
HOST = "127.0.0.1"
"""Everything the run starts listens on this address only."""

CELERY_WORKERS = ("worker-a", "worker-b")
"""The Celery workers' node names (before the ``@host``) with ``--executor celery``."""
CELERY_PLUGINS_FOLDER = Path(__file__).resolve().parent / "worker_plugins"
"""The Celery workers' ``[core] plugins_folder``: the spread barrier listener."""
SPREAD_BARRIER_TIMEOUT = 300
"""Seconds an upload waits at the spread barrier for the other worker before it gives up."""
