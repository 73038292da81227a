"""Push artifacts: several blobs (in parallel) and one manifest over them, tagged last."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import (
    validate_digest,
    validate_registry_id,
    validate_repository_name,
    validate_tags,
)
from airflow_ecr_layers.core.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    EMPTY_BLOB,
    OCI_INDEX,
    OCI_MANIFEST,
    EMPTY_DESCRIPTOR,
    Descriptor,
    build_image_manifest,
    validate_media_type,
)
from airflow_ecr_layers.core.planning import plan_parts
from airflow_ecr_layers.core.sources import BlobSource, BytesSource
from airflow_ecr_layers.core.transfer import BlobResult, EcrTransfer

log = logging.getLogger("airflow_ecr_layers")

_PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
DEFAULT_MAX_CONCURRENCY = 2
"""Layers uploaded at once: one per core on the 2-core workers we measure on."""


@dataclass(frozen=True)
class LayerSpec:
    source: BlobSource
    media_type: str
    title: str | None = None
    expected_digest: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def all_annotations(self) -> dict[str, str]:
        found = dict(self.annotations)
        if self.title:
            found.setdefault("org.opencontainers.image.title", self.title)
        return found


def descriptor_of(layer: Mapping[str, Any]) -> Descriptor:
    """A manifest descriptor from a blob result dict (``digest``/``layer_digest``, ``size``...)."""
    if not isinstance(layer, Mapping):
        raise InvalidInputError(f"Expected a layer result dict, got {type(layer).__name__}: {layer!r}")
    digest = layer.get("layer_digest", layer.get("digest"))
    missing = [k for k, v in (("layer_digest", digest), ("size", layer.get("size")), ("media_type", layer.get("media_type"))) if v is None]
    if missing:
        raise InvalidInputError(f"Layer result is missing {', '.join(missing)}: {dict(layer)!r}")
    return Descriptor(layer["media_type"], digest, layer["size"], dict(layer.get("annotations") or {}))


def subject_descriptor(
    api: EcrTransfer, repository_name: str, image_digest: str, registry_id: str | None = None
) -> dict[str, Any]:
    """The descriptor of an image already in the repository, for an artifact's ``subject``."""
    validate_digest(image_digest, "subject")
    found = api.batch_get_image(
        repository_name, [{"imageDigest": image_digest}], registry_id, accepted_media_types=MANIFEST_TYPES
    )
    if not found:
        raise InvalidInputError(
            f"subject {image_digest} is not an image in {repository_name!r}: push the image first"
        )
    image = found[0]
    media_type = image.media_type or json.loads(image.manifest).get("mediaType") or OCI_MANIFEST
    return {"digest": image_digest, "size": len(image.manifest), "media_type": media_type}


def ensure_empty_config(api: EcrTransfer, repository_name: str, registry_id: str | None) -> None:
    """ECR checks that the config blob exists, so the 2-byte ``{}`` is uploaded once."""
    api.push_blob(
        repository_name,
        BytesSource(EMPTY_BLOB, "<OCI empty config>"),
        media_type=EMPTY_DESCRIPTOR.media_type,
        registry_id=registry_id,
        expected_digest=EMPTY_DESCRIPTOR.digest,
    )


def put_artifact_manifest(
    api: EcrTransfer,
    repository_name: str,
    layers: Sequence[Mapping[str, Any]],
    *,
    tags: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
    subject: Mapping[str, Any] | None = None,
    registry_id: str | None = None,
) -> dict[str, Any]:
    """Build the OCI manifest over pushed blobs and put it once per tag."""
    tags = validate_tags(tags)
    if not layers:
        raise InvalidInputError("No layers given: a manifest needs at least one")
    descriptors = [descriptor_of(layer) for layer in layers]
    config_descriptor = descriptor_of(config) if config else None
    subject_desc = descriptor_of(subject) if subject else None
    manifest = build_image_manifest(
        descriptors,
        config=config_descriptor,
        artifact_type=artifact_type,
        annotations=annotations,
        subject=subject_desc,
    )
    if config_descriptor is None:
        ensure_empty_config(api, repository_name, registry_id)
    results = api.put_manifest(repository_name, manifest, tags, registry_id)
    return {
        "registry_id": results[0].registry_id or (registry_id or ""),
        "repository_name": repository_name,
        "image_digest": manifest.digest,
        "tags": tags,
        "manifest_media_type": manifest.media_type,
        "manifest_size": manifest.size,
    }


def push_layers(
    api: EcrTransfer,
    repository_name: str,
    layers: Sequence[LayerSpec],
    *,
    registry_id: str | None = None,
    part_size: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    check_first: bool = True,
) -> list[BlobResult]:
    """Push blobs, up to ``max_concurrency`` at once, results in input order.

    ``check_first=False`` skips the per-blob availability check (the caller batched it).
    """
    if max_concurrency < 1:
        raise InvalidInputError(f"max_concurrency must be at least 1, got {max_concurrency}")

    def push(layer: LayerSpec) -> BlobResult:
        return api.push_blob(
            repository_name,
            layer.source,
            media_type=layer.media_type,
            registry_id=registry_id,
            part_size=part_size,
            expected_digest=layer.expected_digest,
            annotations=layer.all_annotations(),
            check_first=check_first,
        )

    if max_concurrency == 1 or len(layers) <= 1:
        return [push(layer) for layer in layers]
    with ThreadPoolExecutor(max_workers=min(max_concurrency, len(layers)), thread_name_prefix="ecr-layer") as pool:
        return list(pool.map(push, layers))


def push_artifact(
    api: EcrTransfer,
    repository_name: str,
    layers: Sequence[LayerSpec],
    *,
    tags: Sequence[str] = (),
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
    subject: str | Mapping[str, Any] | None = None,
    registry_id: str | None = None,
    part_size: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
) -> dict[str, Any]:
    """Validate everything, push every layer, then the manifest: no tag before all blobs are in.

    ``subject`` (an image digest in the same repository, or its descriptor) makes the
    artifact a referrer of that image (an SBOM, a signature...).
    """
    validate_repository_name(repository_name)
    registry_id = validate_registry_id(registry_id)
    tags = validate_tags(tags)
    if not layers:
        raise InvalidInputError("Nothing to push: no sources given")
    for layer in layers:
        validate_media_type(layer.media_type, "layer media type")
        plan_parts(layer.source.size, part_size)
    if artifact_type is not None:
        validate_media_type(artifact_type, "artifact type")
    registry_id = api.repository_registry_id(repository_name, registry_id)  # fails before any write
    if isinstance(subject, str):
        subject = subject_descriptor(api, repository_name, subject, registry_id)
    # The manifest's size is known before any upload: digests have a fixed length.
    build_image_manifest(
        [Descriptor(spec.media_type, _PLACEHOLDER_DIGEST, spec.source.size, spec.all_annotations()) for spec in layers],
        artifact_type=artifact_type,
        annotations=annotations,
        subject=descriptor_of(subject) if subject else None,
    )
    blobs = push_layers(
        api, repository_name, layers, registry_id=registry_id, part_size=part_size, max_concurrency=max_concurrency
    )
    layer_dicts = [blob.as_dict() for blob in blobs]
    result = put_artifact_manifest(
        api,
        repository_name,
        layer_dicts,
        tags=tags,
        artifact_type=artifact_type,
        annotations=annotations,
        subject=subject,
        registry_id=registry_id,
    )
    result["layers"] = layer_dicts
    return result
