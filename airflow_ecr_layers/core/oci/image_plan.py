"""An image as a push sees it: the blobs to upload and the manifests to put, children first.

Every way of getting an image (an archive read in place, a copy out of another repository)
ends in an :class:`ImagePlan`; :func:`~airflow_ecr_layers.core.push.image.push_image` pushes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_ecr_layers.core.oci.manifest import Manifest
from airflow_ecr_layers.core.sources.blobs import BlobSource


@dataclass(frozen=True)
class BlobRef:
    """One blob of an image: its digest, size and media type, and where its bytes are read from."""

    digest: str
    size: int
    media_type: str
    source: BlobSource


@dataclass
class ImagePlan:
    format: str
    manifests: list[Manifest] = field(default_factory=list)
    """Every manifest to put, children before the indexes naming them; the top-level one last."""
    blobs: dict[str, BlobRef] = field(default_factory=dict)

    @property
    def top(self) -> Manifest:
        """The manifest the tags go on."""
        return self.manifests[-1]

    def add_blob(self, blob: BlobRef) -> None:
        self.blobs.setdefault(blob.digest, blob)

    def add_manifest(self, manifest: Manifest) -> None:
        if all(m.digest != manifest.digest for m in self.manifests):
            self.manifests.append(manifest)
