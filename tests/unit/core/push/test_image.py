"""An image whose manifest names more layers than ECR takes is refused before anything is written."""

from __future__ import annotations

import json

import pytest

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import MAX_LAYERS
from airflow_ecr_layers.core.oci.image_plan import ImagePlan
from airflow_ecr_layers.core.oci.layers import LayerSpec, check_layers
from airflow_ecr_layers.core.oci.manifest import OCI_MANIFEST, Manifest
from airflow_ecr_layers.core.push.image import push_image
from airflow_ecr_layers.core.sources.blobs import BytesSource


class NoEngine:
    """An engine that fails the test if the push gets as far as using it."""

    @property
    def calls(self) -> object:
        raise AssertionError("the push reached ECR")


def manifest_with(layers: int) -> Manifest:
    body = {"schemaVersion": 2, "layers": [{"digest": f"sha256:{n:064x}", "size": 1} for n in range(layers)]}
    return Manifest(json.dumps(body).encode(), OCI_MANIFEST)


def test_an_image_over_ecrs_layer_limit_is_refused_before_any_call() -> None:
    assert MAX_LAYERS == 500
    plan = ImagePlan("oci-layout", manifests=[manifest_with(MAX_LAYERS + 1)])
    with pytest.raises(InvalidInputError, match="501 layers; ECR refuses more than 500 per image"):
        push_image(NoEngine(), "team/model", plan)  # type: ignore[arg-type]


def test_an_artifact_over_the_limit_is_refused_and_pointed_at_build() -> None:
    layers = [LayerSpec(BytesSource(b"x", f"f{n}"), "application/octet-stream", title=f"f{n}") for n in range(501)]
    with pytest.raises(InvalidInputError, match="501 layers.*at most 500.*airflow-ecr-layers build"):
        check_layers(layers)
    check_layers(layers[:500])
