"""What every image-archive format yields, and what every format reader reads through.

* :class:`ArchiveReader`: paths inside an archive (a :class:`~.tar_index.TarIndex`) or
  a layout directory (:class:`DirectoryLayout`).
* :class:`ImagePlan` of :class:`BlobRef`: the blobs to push (each a BlobSource sliced
  out of the archive, with its digest, size and media type), the manifests to put
  children first, and the top-level manifest that gets the tags.
* Helpers the format readers share: :func:`blob_path`, :func:`parse_json` and
  :data:`WHOLE_INDEX`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_ecr_layers.core.limits import validate_digest
from airflow_ecr_layers.core.manifest import Manifest
from airflow_ecr_layers.core.sources import BlobSource
from airflow_ecr_layers.core.tar_index import HostileArchiveError, read_verified

WHOLE_INDEX = "*"
"""The ``image_ref`` that asks for an OCI layout's whole ``index.json`` (docker-save refuses it)."""


class ArchiveReader(Protocol):
    """Paths inside an archive or a layout directory."""

    @property
    def name(self) -> str: ...

    def __contains__(self, path: str) -> bool: ...

    def blob_source(self, path: str) -> BlobSource: ...

    def read_small(self, path: str, digest: str | None = None) -> bytes: ...


@dataclass(frozen=True)
class BlobRef:
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


class DirectoryLayout:
    """An OCI layout directory, reached through ``resolve(relative path) -> source or None``."""

    def __init__(self, name: str, resolve: Callable[[str], BlobSource | None]) -> None:
        self.name = name
        self._resolve = resolve

    def __contains__(self, path: str) -> bool:
        return self._resolve(path) is not None

    def blob_source(self, path: str) -> BlobSource:
        found = self._resolve(path)
        if found is None:
            raise HostileArchiveError(f"{self.name}: {path!r} is named but missing from the layout")
        return found

    def read_small(self, path: str, digest: str | None = None) -> bytes:
        return read_verified(self.blob_source(path), digest)


def blob_path(digest: str) -> str:
    """``blobs/<algorithm>/<hex>``, where an OCI layout (and a newer docker save) keeps a blob."""
    algorithm, _, hex_digest = validate_digest(digest, "blob digest").partition(":")
    return f"blobs/{algorithm}/{hex_digest}"


def parse_json(data: bytes, where: str) -> Any:
    """JSON read from an archive; anything unparsable is a :class:`HostileArchiveError` naming ``where``."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HostileArchiveError(f"{where} is not valid JSON: {exc}") from exc
