"""What the engine's pushes return: small typed results, each with its JSON-safe ``as_dict``.

The core returns these; the operators (and the CLI) turn them into the dicts that go
to XCom (and stdout). No blob bytes, no datetimes, no boto metadata in any of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_ecr_layers.core.ecr.calls import UploadSession
from airflow_ecr_layers.core.oci.manifest import Descriptor, Manifest


@dataclass(frozen=True)
class UploadedParts:
    """Every byte of a source is in an upload that is not yet completed."""

    session: UploadSession
    digest: str
    size: int
    parts: int
    part_size: int
    last_byte_received: int
    resumes: int = 0
    restarts: int = 0
    bytes_read: int = 0
    bytes_sent: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.session.as_dict(),
            "digest": self.digest,
            "size": self.size,
            "parts": self.parts,
            "part_size": self.part_size,
            "last_byte_received": self.last_byte_received,
            "resumes": self.resumes,
            "restarts": self.restarts,
            "bytes_read": self.bytes_read,
            "bytes_sent": self.bytes_sent,
        }


@dataclass(frozen=True)
class BlobResult:
    """A blob that is in the repository, verified."""

    registry_id: str
    repository_name: str
    digest: str
    size: int
    media_type: str
    skipped: bool = False
    """ECR had the blob already: found before the upload (nothing sent), or reported at completion."""
    annotations: dict[str, str] = field(default_factory=dict)
    reused: bool = False
    """The digest came from the previous push's record of this source: the source was not read."""
    bytes_read: int = 0
    """Bytes read from the source (a hash-first pass and re-reads included)."""
    bytes_sent: int = 0
    """Bytes sent in UploadLayerPart requests."""

    def descriptor(self) -> Descriptor:
        """The blob as a manifest names it."""
        return Descriptor(self.media_type, self.digest, self.size, dict(self.annotations))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ImageResult:
    """What every push of a manifest reports: where the image is, its digest and its tags."""

    registry_id: str
    repository_name: str
    image_digest: str
    tags: list[str]
    manifest_media_type: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "registry_id": self.registry_id,
            "repository_name": self.repository_name,
            "image_digest": self.image_digest,
            "tags": list(self.tags),
            "manifest_media_type": self.manifest_media_type,
        }


@dataclass(frozen=True)
class ManifestResult(ImageResult):
    """A manifest put into the repository, once per tag (or once, untagged)."""

    manifest_size: int

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "manifest_size": self.manifest_size}


@dataclass(frozen=True)
class ArtifactPushResult(ManifestResult):
    """An OCI artifact: its blobs, then its manifest."""

    layers: list[BlobResult] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, int]:
        """Layers, and how many were reused and skipped; bytes read and sent, over all layers."""
        return {
            "layers": len(self.layers),
            "reused": sum(layer.reused for layer in self.layers),
            "skipped": sum(layer.skipped for layer in self.layers),
            "bytes_read": sum(layer.bytes_read for layer in self.layers),
            "bytes_sent": sum(layer.bytes_sent for layer in self.layers),
        }

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "layers": [layer.as_dict() for layer in self.layers], "totals": self.totals}


@dataclass(frozen=True)
class PushedBlob:
    """A blob of an image, and whether ECR had it already."""

    digest: str
    size: int
    media_type: str
    skipped: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ImagePushResult(ImageResult):
    """An image (or an index and its children) read from an archive and put into ECR."""

    format: str
    manifests: list[Manifest]
    """Every manifest put, children first; the tagged one last."""
    blobs: list[PushedBlob]

    @property
    def skipped(self) -> int:
        """How many blobs ECR already had."""
        return sum(1 for blob in self.blobs if blob.skipped)

    def as_dict(self) -> dict[str, Any]:
        return {
            **super().as_dict(),
            "format": self.format,
            "manifests": [{"digest": m.digest, "media_type": m.media_type, "size": m.size} for m in self.manifests],
            "blobs": [blob.as_dict() for blob in self.blobs],
        }
