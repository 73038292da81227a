"""Push into a repository the DAG creates on its first run, with its settings.

The push creates the repository when it is missing (immutable tags except ``latest`` and
``*-dev``, scan on push, a lifecycle policy and resource tags) and, on every later run,
checks that it still has them: a repository changed by hand fails the task, naming what
differs. See docs/repositories.md.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_ecr_layers.operators import PushArtifactOperator

LIFECYCLE_POLICY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "keep the last 30 builds",
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": ["build-*"],
                "countType": "imageCountMoreThan",
                "countNumber": 30,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": "drop untagged images after a week",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 7,
            },
            "action": {"type": "expire"},
        },
    ]
}

with DAG(
    dag_id="example_ecr_layers_repository",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr"],
    params={
        "source": Param("s3://artifacts/models/model.bin", type="string"),
        "repository": Param("demo/new-models", type="string"),
        "team": Param("ml-platform", type="string"),
    },
) as dag:
    PushArtifactOperator(
        task_id="push",
        source="{{ params.source }}",
        repository_name="{{ params.repository }}",
        tags=["latest", "build-{{ dag_run.run_after | ts_nodash }}"],
        create_repository=True,
        repository_settings={
            "image_tag_mutability": "IMMUTABLE_WITH_EXCLUSION",
            "image_tag_mutability_exclusion_filters": ["latest", "*-dev"],  # these tags may move
            "scan_on_push": True,
            "encryption_type": "AES256",  # or "KMS" with "kms_key": "alias/..."
            "lifecycle_policy": LIFECYCLE_POLICY,
            "tags": {"team": "{{ params.team }}", "managed-by": "airflow"},  # templated like any field
        },
    )
