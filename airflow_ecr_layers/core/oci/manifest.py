"""OCI descriptors and manifests, serialised once to exact bytes with their digest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import MAX_MANIFEST_SIZE, validate_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DEFAULT_LAYER_MEDIA_TYPE = "application/octet-stream"
DEFAULT_ARTIFACT_TYPE = "application/vnd.unknown.artifact.v1"
TITLE_ANNOTATION = "org.opencontainers.image.title"
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
"""Every manifest media type ECR stores, for BatchGetImage's ``acceptedMediaTypes``."""

EMPTY_BLOB = b"{}"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def validate_media_type(media_type: object, what: str = "media type") -> str:
    if not isinstance(media_type, str) or "/" not in media_type or ";" in media_type or " " in media_type:
        raise InvalidInputError(
            f"Invalid {what} {media_type!r}: expected type/subtype without parameters (ECR rejects ';')"
        )
    return media_type


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None

    def __post_init__(self) -> None:
        validate_media_type(self.media_type)
        validate_digest(self.digest)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise InvalidInputError(f"Invalid descriptor size {self.size!r} for {self.digest}")

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            body["artifactType"] = self.artifact_type
        if self.annotations:
            body["annotations"] = dict(self.annotations)
        return body


EMPTY_DESCRIPTOR = Descriptor(OCI_EMPTY, sha256_digest(EMPTY_BLOB), len(EMPTY_BLOB))


@dataclass(frozen=True)
class Manifest:
    """The exact bytes that go to PutImage, with their media type and sha256 digest."""

    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def text(self) -> str:
        return self.data.decode("utf-8")

    def layer_count(self) -> int:
        """How many layers it names (0 for an index, or bytes that are not a manifest)."""
        try:
            layers = json.loads(self.data).get("layers")
        except (ValueError, UnicodeDecodeError, AttributeError):
            return 0
        return len(layers) if isinstance(layers, list) else 0


def encode_manifest(body: Mapping[str, Any], media_type: str) -> Manifest:
    """Serialise compactly (ASCII only, so the wire bytes are exactly these bytes)."""
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    if len(data) > MAX_MANIFEST_SIZE:
        raise InvalidInputError(f"The manifest is {len(data)} bytes, over ECR's limit of {MAX_MANIFEST_SIZE}")
    return Manifest(data, media_type)


def build_image_manifest(
    layers: Sequence[Descriptor],
    *,
    config: Descriptor | None = None,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
    subject: Descriptor | None = None,
) -> Manifest:
    """An OCI image manifest; without a config it is an OCI 1.1 artifact on the empty config."""
    if not layers:
        raise InvalidInputError("An image manifest needs at least one layer")
    if artifact_type is not None:
        validate_media_type(artifact_type, "artifact type")
    if config is None:
        config = EMPTY_DESCRIPTOR
        artifact_type = artifact_type or DEFAULT_ARTIFACT_TYPE
    body: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        body["artifactType"] = artifact_type
    body["config"] = config.to_json()
    body["layers"] = [layer.to_json() for layer in layers]
    if subject is not None:
        body["subject"] = subject.to_json()
    if annotations:
        body["annotations"] = {str(k): str(v) for k, v in annotations.items()}
    return encode_manifest(body, OCI_MANIFEST)
