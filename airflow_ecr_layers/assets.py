"""Assets for ECR images: ``ecr://<registry id>/<region>/<repository>``.

Declare one as an outlet of a push operator and downstream DAGs can be scheduled on
the push; the asset event's ``extra`` carries the image digest and tags.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult

from airflow.sdk import Asset

from airflow_ecr_layers.core.limits import validate_registry_id, validate_repository_name

if TYPE_CHECKING:
    from airflow.providers.common.compat.openlineage.facet import Dataset as OpenLineageDataset

SCHEME = "ecr"
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")


def image_asset_uri(registry_id: str, region: str, repository: str) -> str:
    validate_registry_id(registry_id)
    if not _REGION.fullmatch(region):
        raise ValueError(f"Invalid AWS region {region!r} for an ECR asset")
    validate_repository_name(repository)
    return f"{SCHEME}://{registry_id}/{region}/{repository}"


def create_asset(*, registry_id: str, region: str, repository: str, extra: dict[str, Any] | None = None) -> Asset:
    """The asset for an ECR repository (the factory registered for the ``ecr`` scheme)."""
    return Asset(uri=image_asset_uri(registry_id, region, repository), extra=extra or {})


def ecr_image_asset(repository: str, *, registry_id: str, region: str) -> Asset:
    """Shorthand for :func:`create_asset`, for ``outlets=[...]`` and ``schedule=[...]``."""
    return create_asset(registry_id=registry_id, region=region, repository=repository)


def parse_asset_uri(uri: str) -> tuple[str, str, str]:
    """``(registry_id, region, repository)`` of an ``ecr://`` asset URI."""
    if not uri.startswith(f"{SCHEME}://"):
        raise ValueError(f"Not an ECR asset URI: {uri!r}")
    registry_id, _, rest = uri[len(SCHEME) + 3 :].partition("/")
    region, _, repository = rest.partition("/")
    image_asset_uri(registry_id, region, repository)
    return registry_id, region, repository


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's normaliser for the ``ecr`` scheme: refuse URIs that name no image repository."""
    parse_asset_uri(uri.geturl())
    return uri


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any) -> OpenLineageDataset:
    from airflow.providers.common.compat.openlineage.facet import Dataset as OpenLineageDataset

    registry_id, region, repository = parse_asset_uri(asset.uri)
    return OpenLineageDataset(namespace=f"{SCHEME}://{registry_id}/{region}", name=repository)
