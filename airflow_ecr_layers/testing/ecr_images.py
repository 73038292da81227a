"""What the embedded ECR reads out of the image manifests a repository stores.

The media types of manifests and indexes, the blobs a repository's images reference
(real ECR serves only those through GetDownloadUrlForLayer) and the referrers of a
subject image (ListImageReferrers). Pure functions over moto's ``Repository`` and
``Image``: :mod:`.strict_ecr` wires them into moto's ECR responses.

This module must not import Airflow.
"""

from __future__ import annotations

import json
from typing import Any

from moto.ecr.models import Image, Repository

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "IMAGE_MANIFEST_TYPES",
    "INDEX_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "image_referrers",
    "media_type_of",
    "parsed_manifest",
    "referenced_blobs",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})


def parsed_manifest(image: Image) -> dict[str, Any]:
    """The image's manifest as JSON (empty when it is not a JSON object: strict PutImage
    never stores one, but images pushed before :func:`.strict_ecr.install` may be anything)."""
    try:
        manifest = json.loads(image.image_manifest)
    except (TypeError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def media_type_of(image: Image, manifest: dict[str, Any]) -> str | None:
    """The media type PutImage recorded, else the manifest's own ``mediaType``."""
    recorded = image.image_manifest_media_type
    if isinstance(recorded, str) and recorded:
        return recorded
    declared = manifest.get("mediaType")
    return declared if isinstance(declared, str) else None


def _digest_of(descriptor: object) -> str | None:
    if isinstance(descriptor, dict) and isinstance(descriptor.get("digest"), str):
        return str(descriptor["digest"])
    return None


def referenced_blobs(repository: Repository) -> set[str]:
    """The digests of the config and layers of every image manifest in ``repository``.

    An index references manifests, not blobs, so it adds nothing."""
    found: set[str] = set()
    for image in list(repository.images):
        manifest = parsed_manifest(image)
        if media_type_of(image, manifest) in INDEX_TYPES or "manifests" in manifest:
            continue
        layers = manifest.get("layers")
        for descriptor in [manifest.get("config"), *(layers if isinstance(layers, list) else [])]:
            digest = _digest_of(descriptor)
            if digest is not None:
                found.add(digest)
    return found


def image_referrers(
    repository: Repository, subject_digest: str, artifact_types: list[str] | None
) -> list[dict[str, Any]]:
    """ListImageReferrers' ``referrers`` (all ``ACTIVE``, in push order): the images whose
    manifest's ``subject.digest`` is ``subject_digest``, kept to ``artifact_types`` if any
    are given. ``artifactType`` is the manifest's, else its config's media type, as the
    OCI distribution spec's referrers API reports it."""
    wanted = set(artifact_types) if artifact_types else None
    referrers: list[dict[str, Any]] = []
    for image in list(repository.images):
        manifest = parsed_manifest(image)
        if _digest_of(manifest.get("subject")) != subject_digest:
            continue
        artifact_type = manifest.get("artifactType")
        if not isinstance(artifact_type, str) or not artifact_type:
            config = manifest.get("config")
            config_type = config.get("mediaType") if isinstance(config, dict) else None
            artifact_type = config_type if isinstance(config_type, str) and config_type else None
        if wanted is not None and artifact_type not in wanted:
            continue
        referrer: dict[str, Any] = {
            "digest": image.get_image_digest(),
            "size": len(image.image_manifest.encode("utf-8")),
            "artifactStatus": "ACTIVE",
        }
        media_type = media_type_of(image, manifest)
        if media_type is not None:
            referrer["mediaType"] = media_type
        if artifact_type is not None:
            referrer["artifactType"] = artifact_type
        annotations = manifest.get("annotations")
        if isinstance(annotations, dict) and annotations:
            referrer["annotations"] = {str(k): str(v) for k, v in annotations.items()}
        referrers.append(referrer)
    return referrers
