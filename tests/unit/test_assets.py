"""ecr:// asset URIs, and the scheme's registration with Airflow."""

from __future__ import annotations

import pytest

from airflow_ecr_layers.assets import create_asset, image_asset_uri, parse_asset_uri


def test_asset_uri_round_trip_and_validation() -> None:
    uri = image_asset_uri("123456789012", "eu-west-1", "team/model")
    assert uri == "ecr://123456789012/eu-west-1/team/model"
    assert parse_asset_uri(uri) == ("123456789012", "eu-west-1", "team/model")
    assert create_asset(registry_id="123456789012", region="eu-west-1", repository="team/model").uri == uri
    for bad in ("ecr://12/eu-west-1/x1", "ecr://123456789012/nowhere/x1", "ecr://123456789012/eu-west-1/BAD"):
        with pytest.raises(ValueError):
            parse_asset_uri(bad)


def test_scheme_is_registered_with_airflow() -> None:
    try:  # Airflow 3.2+: the task runtime's registry
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Providers
    except ImportError:  # Airflow 3.0 and 3.1
        from airflow.providers_manager import ProvidersManager as Providers  # type: ignore[assignment]

    assert "ecr" in Providers().asset_uri_handlers
    from airflow.sdk import Asset

    with pytest.raises(ValueError):
        Asset(uri="ecr://not-a-registry/region/x")
