"""Consumer: runs whenever the producer pushes a new image of ``demo/models``."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_ecr_layers.assets import ecr_image_asset

MODEL_IMAGE = ecr_image_asset("demo/models", registry_id="123456789012", region="us-east-1")

with DAG(
    dag_id="example_ecr_layers_asset_consumer",
    schedule=[MODEL_IMAGE],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "ecr", "assets"],
) as dag:

    @task
    def deploy(triggering_asset_events=None) -> list[str]:
        """Use the digest the push announced (pin deployments by digest, not by tag)."""
        digests = []
        for events in (triggering_asset_events or {}).values():
            for event in events:
                digests.append(event.extra["image_digest"])
                print(f"deploying demo/models@{event.extra['image_digest']} (tags {event.extra['tags']})")
        return digests

    deploy()
