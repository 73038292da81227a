"""Artifact sources from Airflow's ``ObjectStoragePath`` (s3://, file://, gs://, ...)."""

from __future__ import annotations

from typing import BinaryIO

from airflow.sdk import ObjectStoragePath

from airflow_ecr_layers.core.errors import SourceError
from airflow_ecr_layers.core.gzip_streams import GunzipSource, is_gzip
from airflow_ecr_layers.core.image_plan import ArchiveReader, DirectoryLayout
from airflow_ecr_layers.core.sources import BlobSource
from airflow_ecr_layers.core.tar_index import HostileArchiveError, TarIndex, normalize
from airflow_ecr_layers.s3_reader import S3RangeReader, is_s3fs


class ObjectStorageSource:
    """A :class:`~airflow_ecr_layers.core.sources.BlobSource` over an ``ObjectStoragePath``.

    On S3 (s3fs), handles are :class:`~airflow_ecr_layers.s3_reader.S3RangeReader`:
    one ranged GET per read, written straight into the reader's part buffer. Other
    filesystems get their own file object, opened with ``block_size`` equal to the
    part size and no read-ahead cache, so each part is one ranged read and no
    50 MiB buffer sits behind it.
    """

    def __init__(self, path: ObjectStoragePath) -> None:
        self.path = path
        self._size: int | None = None
        self._etag: str | None = None

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def title(self) -> str:
        return self.path.name

    @property
    def size(self) -> int:
        """The size when first asked; on S3 the ETag is taken at the same moment (see :meth:`open_at`)."""
        if self._size is None:
            if is_s3fs(self.path.fs):
                info = self.path.fs.info(self.path.path)
                self._size, self._etag = int(info["size"]), info.get("ETag")
            else:
                self._size = int(self.path.stat().st_size)
        return self._size

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        if is_s3fs(self.path.fs):
            size = self.size  # every GET of every handle must match the object this size is of
            reader = S3RangeReader(self.path.fs, self.path.path, size, offset, etag=self._etag)
            return reader  # type: ignore[return-value]
        handle = self.path.open("rb", block_size=block_size, cache_type="none")
        if offset:
            handle.seek(offset)
        return handle


def to_path(
    source: str | ObjectStoragePath, conn_id: str | None = None, *, aws_conn_id: str | None = None
) -> ObjectStoragePath:
    """An ``ObjectStoragePath`` for a URL; ``s3://`` without ``conn_id`` is read with ``aws_conn_id``."""
    if isinstance(source, ObjectStoragePath):
        return source
    if not isinstance(source, str) or not source.strip():
        raise SourceError(f"source must be an object storage URL (s3://bucket/key, file:///path), got {source!r}")
    if conn_id is None and source.startswith(("s3://", "s3a://")):
        conn_id = aws_conn_id
    return ObjectStoragePath(source, conn_id=conn_id)


def _kind(path: ObjectStoragePath) -> str:
    """``file``, ``dir`` or ``missing``, with unreadable paths reported clearly."""
    try:
        if not path.exists():
            return "missing"
        return "dir" if path.is_dir() else "file"
    except (OSError, ValueError) as exc:
        raise SourceError(f"Cannot read source {str(path)!r}: {exc}") from exc


def open_source(
    source: str | ObjectStoragePath, conn_id: str | None = None, *, aws_conn_id: str | None = None
) -> ObjectStorageSource:
    """Resolve and check a source URL: it must exist, be a file, and not be empty."""
    path = to_path(source, conn_id, aws_conn_id=aws_conn_id)
    kind = _kind(path)
    if kind == "missing":
        raise SourceError(f"Source {str(path)!r} does not exist")
    if kind == "dir":
        raise SourceError(f"Source {str(path)!r} is a directory, not a file")
    found = ObjectStorageSource(path)
    if found.size == 0:
        raise SourceError(f"Source {str(path)!r} is empty (0 bytes): ECR cannot store an empty layer, so it is refused")
    return found


def open_image_archive(
    source: str | ObjectStoragePath, conn_id: str | None = None, *, aws_conn_id: str | None = None
) -> ArchiveReader:
    """A tar (optionally gzip-compressed) or an OCI layout directory, read in place."""
    path = to_path(source, conn_id, aws_conn_id=aws_conn_id)
    kind = _kind(path)
    if kind == "missing":
        raise SourceError(f"Image archive {str(path)!r} does not exist")
    if kind == "dir":
        return DirectoryLayout(str(path), lambda relative: _layout_file(path, relative))
    archive: BlobSource = ObjectStorageSource(path)
    if archive.size == 0:
        raise SourceError(f"Image archive {str(path)!r} is empty")
    if is_gzip(archive):
        archive = GunzipSource(archive)
    return TarIndex(archive)


def _layout_file(root: ObjectStoragePath, relative: str) -> ObjectStorageSource | None:
    """A file inside a layout directory; refuses paths that escape or pass through a symlink."""
    clean = normalize(relative, str(root))
    current = root
    for part in clean.split("/"):
        current = current / part
        if current.is_symlink():
            raise HostileArchiveError(f"{root}: blob path {relative!r} resolves through a symlink ({part!r})")
    return ObjectStorageSource(current) if _kind(current) == "file" else None
