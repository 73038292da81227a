"""Manifests: exact bytes, their digest, OCI 1.1 artifact form (pure logic)."""

from __future__ import annotations

import hashlib
import json

import pytest

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import MAX_MANIFEST_SIZE
from airflow_ecr_layers.core.oci.manifest import (
    DEFAULT_ARTIFACT_TYPE,
    EMPTY_DESCRIPTOR,
    OCI_MANIFEST,
    Descriptor,
    build_image_manifest,
)

LAYER = Descriptor("application/octet-stream", "sha256:" + "b" * 64, 7, {"org.opencontainers.image.title": "m.bin"})


def test_empty_descriptor_is_the_oci_one() -> None:
    assert EMPTY_DESCRIPTOR.digest == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    assert EMPTY_DESCRIPTOR.size == 2


def test_artifact_manifest_shape_and_digest_of_exact_bytes() -> None:
    manifest = build_image_manifest([LAYER], artifact_type="application/vnd.example.model.v1", annotations={"k": "v"})
    body = json.loads(manifest.data)
    assert body["mediaType"] == OCI_MANIFEST == manifest.media_type
    assert body["artifactType"] == "application/vnd.example.model.v1"
    assert body["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": EMPTY_DESCRIPTOR.digest,
        "size": 2,
    }
    assert body["layers"][0]["annotations"] == {"org.opencontainers.image.title": "m.bin"}
    assert body["annotations"] == {"k": "v"}
    assert manifest.digest == "sha256:" + hashlib.sha256(manifest.data).hexdigest()
    assert manifest.text().encode("utf-8") == manifest.data


def test_without_config_or_type_gets_a_default_artifact_type() -> None:
    body = json.loads(build_image_manifest([LAYER]).data)
    assert body["artifactType"] == DEFAULT_ARTIFACT_TYPE


def test_with_config_no_artifact_type_is_a_plain_image() -> None:
    config = Descriptor("application/vnd.oci.image.config.v1+json", "sha256:" + "c" * 64, 10)
    body = json.loads(build_image_manifest([LAYER], config=config).data)
    assert "artifactType" not in body and body["config"]["digest"] == config.digest


def test_non_ascii_annotations_serialise_to_ascii_bytes() -> None:
    manifest = build_image_manifest([LAYER], annotations={"note": "modèle"})
    assert manifest.data.isascii()
    assert json.loads(manifest.data)["annotations"]["note"] == "modèle"


def test_subject_is_carried() -> None:
    subject = Descriptor(OCI_MANIFEST, "sha256:" + "d" * 64, 300)
    assert json.loads(build_image_manifest([LAYER], subject=subject).data)["subject"]["digest"] == subject.digest


def test_manifest_over_ecr_limit_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=str(MAX_MANIFEST_SIZE)):
        build_image_manifest([LAYER], annotations={"big": "x" * MAX_MANIFEST_SIZE})


@pytest.mark.parametrize("media_type", ["text/plain; charset=utf-8", "nonsense", ""])
def test_media_types_with_parameters_or_malformed_are_refused(media_type: str) -> None:
    with pytest.raises(InvalidInputError, match="media type"):
        Descriptor(media_type, "sha256:" + "b" * 64, 1)


def test_no_layers_refused() -> None:
    with pytest.raises(InvalidInputError, match="at least one layer"):
        build_image_manifest([])
