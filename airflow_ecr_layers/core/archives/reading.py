"""What every image-archive format reader reads through, and the helpers they share.

* :class:`ArchiveReader`: paths inside an archive (a :class:`~.tar_index.TarIndex`) or
  a layout directory (:class:`DirectoryLayout`).
* :func:`blob_path`, :func:`parse_json` and :data:`WHOLE_INDEX`.

Every format yields an :class:`~airflow_ecr_layers.core.oci.image_plan.ImagePlan`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from airflow_ecr_layers.core.archives.tar_index import HostileArchiveError, read_verified
from airflow_ecr_layers.core.limits import validate_digest
from airflow_ecr_layers.core.sources.blobs import BlobSource

WHOLE_INDEX = "*"
"""The ``image_ref`` that asks for an OCI layout's whole ``index.json`` (docker-save refuses it)."""


class ArchiveReader(Protocol):
    """Paths inside an archive or a layout directory."""

    @property
    def name(self) -> str: ...

    def __contains__(self, path: str) -> bool: ...

    def blob_source(self, path: str) -> BlobSource: ...

    def read_small(self, path: str, digest: str | None = None) -> bytes: ...


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
