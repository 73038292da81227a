"""What a push hands its ecr:// outlets, and its OpenLineage facets."""

from __future__ import annotations

from typing import Any

from airflow_ecr_layers.assets import create_asset
from airflow_ecr_layers.operators import PushArtifactOperator


def test_openlineage_facets(put_object: Any, repo: str) -> None:
    url = put_object("lineage/model.bin", b"model bytes")
    operator = PushArtifactOperator(task_id="push", source=url, repository_name=repo, tags=["v1"])
    operator.execute({})
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("s3://artifacts", "lineage/model.bin")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("ecr://123456789012/us-east-1", repo)]


class _Event:
    def __init__(self) -> None:
        self.extra: dict[str, Any] = {}


class _OutletEvents:
    """What Airflow hands a task as ``outlet_events``: an event per outlet, made on first use, keyed as
    Airflow keys it, by the asset's name and URI (an ``Asset`` is not hashable on Airflow 3.0)."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], _Event] = {}

    def __getitem__(self, asset: Any) -> _Event:
        return self._events.setdefault((asset.name, asset.uri), _Event())


def test_only_the_outlet_of_the_pushed_account_region_and_repository_gets_the_event(put_object: Any, repo: str) -> None:
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
    operator = PushArtifactOperator(
        task_id="push", source=url, repository_name=repo, tags=["v1"], outlets=[ours, *others]
    )
    result = operator.execute({"outlet_events": events})
    assert events[ours].extra["image_digest"] == result["image_digest"]
    assert events[ours].extra["registry_id"] == "123456789012"
    assert [events[other].extra for other in others] == [{}, {}, {}]
