"""Artifact sources from Airflow's ``ObjectStoragePath`` (s3://, file://, gs://, ...)."""

from __future__ import annotations

from typing import BinaryIO

from airflow.sdk import ObjectStoragePath

from airflow_ecr_layers.core.errors import SourceError


class ObjectStorageSource:
    """A :class:`~airflow_ecr_layers.core.sources.BlobSource` over an ``ObjectStoragePath``.

    Handles are opened with ``block_size`` equal to the part size and no read-ahead
    cache, so each part is one ranged read and no 50 MiB buffer sits behind it.
    """

    def __init__(self, path: ObjectStoragePath) -> None:
        self.path = path
        self._size: int | None = None

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def title(self) -> str:
        return self.path.name

    @property
    def size(self) -> int:
        if self._size is None:
            self._size = int(self.path.stat().st_size)
        return self._size

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        handle = self.path.open("rb", block_size=block_size, cache_type="none")
        if offset:
            handle.seek(offset)
        return handle  # type: ignore[no-any-return]


def open_source(
    source: str | ObjectStoragePath, conn_id: str | None = None, *, aws_conn_id: str | None = None
) -> ObjectStorageSource:
    """Resolve and check a source URL: it must exist, be a file, and not be empty.

    ``conn_id`` reads the source; an ``s3://`` URL without one is read with
    ``aws_conn_id`` (the connection the operator uses for ECR).
    """
    if isinstance(source, ObjectStoragePath):
        path = source
    elif isinstance(source, str) and source.strip():
        if conn_id is None and source.startswith(("s3://", "s3a://")):
            conn_id = aws_conn_id
        path = ObjectStoragePath(source, conn_id=conn_id)
    else:
        raise SourceError(f"source must be an object storage URL (s3://bucket/key, file:///path), got {source!r}")
    try:
        exists = path.exists()
        is_dir = exists and path.is_dir()
    except (OSError, ValueError) as exc:
        raise SourceError(f"Cannot read source {str(path)!r}: {exc}") from exc
    if not exists:
        raise SourceError(f"Source {str(path)!r} does not exist")
    if is_dir:
        raise SourceError(f"Source {str(path)!r} is a directory, not a file")
    found = ObjectStorageSource(path)
    if found.size == 0:
        raise SourceError(
            f"Source {str(path)!r} is empty (0 bytes): ECR cannot store an empty layer, so it is refused"
        )
    return found
