"""Build records: their tag, and what a record must look like before a build trusts a layer of it
(pure logic; the round trip through ECR is in tests/integration/test_build_reuse.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_ecr_layers.core.build.records import (
    BUILD_RECORD_TYPE,
    DIFF_ID,
    RecordedTarLayer,
    parse_record,
    record_tag,
)
from airflow_ecr_layers.core.limits import validate_tags
from airflow_ecr_layers.core.oci.manifest import OCI_LAYER_TAR
from airflow_ecr_layers.core.sources.identity import IDENTITY

IMAGE = "sha256:" + "ab" * 32
LAYER = "sha256:" + "cd" * 32
TOKEN = "sha256:" + "ef" * 32


def record(**changes: Any) -> bytes:
    layer = {
        "mediaType": OCI_LAYER_TAR,
        "digest": LAYER,
        "size": 2048,
        "annotations": {IDENTITY: TOKEN, DIFF_ID: LAYER},
    }
    body = {
        "schemaVersion": 2,
        "artifactType": BUILD_RECORD_TYPE,
        "layers": [layer],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": IMAGE, "size": 500},
    }
    for key, value in changes.items():
        if key.startswith("layer_"):
            layer[key[6:]] = value
        else:
            body[key] = value
    return json.dumps(body).encode()


def test_the_record_tag_is_the_image_digest_as_a_valid_ecr_tag() -> None:
    assert record_tag(IMAGE) == "sha256-" + "ab" * 32 + ".build"
    assert validate_tags([record_tag(IMAGE)]) == [record_tag(IMAGE)]


def test_a_record_names_its_layers_by_token() -> None:
    assert parse_record(record(), IMAGE) == {TOKEN: RecordedTarLayer(LAYER, 2048, OCI_LAYER_TAR, LAYER)}


@pytest.mark.parametrize(
    "manifest",
    [
        b"not json",
        b"[]",
        record(artifactType="application/vnd.other+json"),
        record(subject={"digest": "sha256:" + "00" * 32}),
        record(subject=None),
    ],
)
def test_what_is_not_a_record_of_this_image_is_not_read(manifest: bytes) -> None:
    assert parse_record(manifest, IMAGE) is None


@pytest.mark.parametrize(
    "change",
    [
        {"layer_annotations": {DIFF_ID: LAYER}},  # no token
        {"layer_annotations": {IDENTITY: TOKEN}},  # no diff_id
        {"layer_annotations": {IDENTITY: TOKEN, DIFF_ID: "md5:x"}},
        {"layer_digest": "sha256:short"},
        {"layer_size": True},
        {"layer_size": -1},
        {"layer_mediaType": None},
        {"layers": "all of them"},
    ],
)
def test_a_malformed_layer_is_left_out(change: dict[str, Any]) -> None:
    assert parse_record(record(**change), IMAGE) == {}
