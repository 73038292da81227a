"""Artifact sources from Airflow's ``ObjectStoragePath`` (s3://, file://, gs://, ...)."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from airflow.sdk import ObjectStoragePath
from fsspec.asyn import sync

from airflow_ecr_layers.core.errors import SourceError
from airflow_ecr_layers.core.gzip_streams import GunzipSource, is_gzip
from airflow_ecr_layers.core.identity import SourceIdentity
from airflow_ecr_layers.core.image_plan import ArchiveReader, DirectoryLayout
from airflow_ecr_layers.core.sources import BlobSource
from airflow_ecr_layers.core.tar_index import HostileArchiveError, TarIndex, normalize
from airflow_ecr_layers.s3_reader import S3RangeReader, is_s3fs

log = logging.getLogger("airflow_ecr_layers")
GLOB_CHARACTERS = frozenset("*?[")


class ObjectStorageSource:
    """A :class:`~airflow_ecr_layers.core.layers.NamedSource` over an ``ObjectStoragePath``.

    On S3 (s3fs), handles are :class:`~airflow_ecr_layers.s3_reader.S3RangeReader`:
    one ranged GET per read, written straight into the reader's part buffer. Other
    filesystems get their own file object, opened with ``block_size`` equal to the
    part size and no read-ahead cache, so each part is one ranged read and no
    50 MiB buffer sits behind it.

    What it knows of the object (size, ETag, version id, ``mtime_ns``) is read once, from
    the listing that found it or from one fresh metadata request, never from a cache; on
    S3 every GET then carries ``If-Match`` with that ETag, so the bytes read are the ones
    its :meth:`identity` names.
    """

    def __init__(self, path: ObjectStoragePath, *, title: str | None = None, info: Mapping[str, Any] | None = None):
        self.path = path
        self._title = title
        self._info: Mapping[str, Any] | None = info

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def title(self) -> str:
        """The layer title: the path relative to the prefix or glob that found it, else the file name."""
        return self._title or self.path.name

    @property
    def info(self) -> Mapping[str, Any]:
        """The object's metadata, taken once (on S3 with the ETag every GET is then pinned to)."""
        if self._info is None:
            fs = self.path.fs
            if is_s3fs(fs):
                self._info = fs.info(self.path.path, refresh=True)
            else:
                self._info = {"size": self.path.stat().st_size}
        return self._info

    @property
    def size(self) -> int:
        return int(self.info["size"])

    def identity(self) -> SourceIdentity | None:
        """S3: URL, size, ETag, version id. A local file: path, size, ``mtime_ns``. Elsewhere the
        store's own ETag or generation where it reports one, else None (no reuse)."""
        info = self.info
        if is_s3fs(self.path.fs):
            bucket, key, version_id = self.path.fs.split_path(self.path.path)
            return SourceIdentity(
                f"s3://{bucket}/{key}", self.size, info.get("ETag"), info.get("VersionId") or version_id
            )
        if _is_local(self.path):
            stat = os.stat(self.path.path)
            return SourceIdentity(f"file://{self.path.path}", stat.st_size, mtime_ns=stat.st_mtime_ns)
        etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
        version = info.get("VersionId") or info.get("generation")
        if not etag and not version:
            return None
        return SourceIdentity(str(self.path), self.size, str(etag) if etag else None, str(version) if version else None)

    def stored_sha256(self) -> str | None:
        """S3's full-object SHA-256 of this object (HeadObject in checksum mode), if S3 keeps one.

        A composite checksum of a multipart upload (``...-N``, or ``ChecksumType`` COMPOSITE)
        is not the object's sha256 and is not used; nor is an answer for another ETag.
        """
        fs = self.path.fs
        if not is_s3fs(fs):
            return None
        bucket, key, version_id = fs.split_path(self.path.path)
        version = {"VersionId": version_id} if version_id else {}
        try:
            head = sync(fs.loop, fs._call_s3, "head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED", **version)
        except OSError as exc:
            log.info("%s: no checksum to learn its digest from (%s)", self.name, exc)
            return None
        return full_object_sha256(head, self.info.get("ETag"))

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        if is_s3fs(self.path.fs):
            etag = self.info.get("ETag")  # every GET of every handle must match the object this size is of
            reader = S3RangeReader(self.path.fs, self.path.path, self.size, offset, etag=etag)
            return reader  # type: ignore[return-value]
        handle = self.path.open("rb", block_size=block_size, cache_type="none")
        if offset:
            handle.seek(offset)
        return handle


def full_object_sha256(head: Mapping[str, Any], etag: str | None) -> str | None:
    """``sha256:<hex>`` from a HeadObject answer, only where it is the whole object's sha256."""
    value = head.get("ChecksumSHA256")
    if not isinstance(value, str) or "-" in value or (etag and head.get("ETag") != etag):
        return None
    kind = head.get("ChecksumType")
    if kind is None and "-" in str(head.get("ETag", "")):
        return None  # an older answer without ChecksumType, for a multipart upload: composite
    if kind not in (None, "FULL_OBJECT"):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return "sha256:" + raw.hex() if len(raw) == 32 else None


def _is_local(path: ObjectStoragePath) -> bool:
    protocol = path.fs.protocol
    return bool({"file", "local"} & set(protocol if isinstance(protocol, (tuple, list)) else [protocol]))


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
        raise SourceError(
            f"Source {str(path)!r} is a directory, not a file; end it with '/' to push every object under it"
        )
    found = ObjectStorageSource(path)
    if found.size == 0:
        raise SourceError(f"Source {str(path)!r} is empty (0 bytes): ECR cannot store an empty layer, so it is refused")
    return found


def is_prefix(url: str) -> bool:
    """Whether a source URL stands for many objects: it ends in ``/``, or holds a glob."""
    return url.endswith("/") or bool(GLOB_CHARACTERS & set(url.partition("://")[2]))


def open_sources(
    sources: str | ObjectStoragePath | Sequence[str | ObjectStoragePath],
    conn_id: str | None = None,
    *,
    aws_conn_id: str | None = None,
) -> list[ObjectStorageSource]:
    """Every source a URL, a prefix (``.../``), a glob (``*``, ``**``) or a list of them stands for.

    A prefix or a glob gives the objects it matches, sorted by key, each titled with its
    path relative to the prefix (or to the glob's directory). A prefix or glob that
    matches nothing, or matches an empty object, is refused.
    """
    items = [sources] if isinstance(sources, (str, ObjectStoragePath)) else list(sources)
    found: list[ObjectStorageSource] = []
    for item in items:
        if isinstance(item, str) and is_prefix(item):
            found.extend(_expand(item, conn_id, aws_conn_id))
        else:
            found.append(open_source(item, conn_id, aws_conn_id=aws_conn_id))
    return found


def list_prefix(url: str, conn_id: str | None = None) -> list[str]:
    """The URLs of the objects a prefix or glob stands for, sorted: for a mapped task's ``.expand``
    (give the mapped operators the same ``source_conn_id``)."""
    return [f"{source.path.protocol}://{source.path.path}" for source in _expand(url, conn_id, None)]


def _expand(url: str, conn_id: str | None, aws_conn_id: str | None) -> list[ObjectStorageSource]:
    scheme, _, rest = url.partition("://")
    pattern = bool(GLOB_CHARACTERS & set(rest))
    root = to_path(f"{scheme}://{_static_part(rest)}" if pattern else url, conn_id, aws_conn_id=aws_conn_id)
    fs = root.fs
    base = root.path.rstrip("/") + "/"
    try:
        fs.invalidate_cache(base)
        matches = fs.glob(fs._strip_protocol(url), detail=True) if pattern else fs.find(base, detail=True)
    except (OSError, ValueError) as exc:
        raise SourceError(f"Cannot list {url!r}: {exc}") from exc
    objects = {
        name: info
        for name, info in sorted(matches.items())
        if info.get("type", "file") == "file" and not name.endswith("/")
    }
    if not objects:
        raise SourceError(f"{url!r} matches no objects: nothing to push")
    empty = [name for name, info in objects.items() if int(info.get("size") or 0) == 0]
    if empty:
        raise SourceError(
            f"{url!r} matches empty objects, which ECR cannot store as layers: {', '.join(empty[:5])}"
            f"{' ...' if len(empty) > 5 else ''} (leave them out with a glob)"
        )
    return [
        ObjectStorageSource(
            to_path(f"{scheme}://{name}", conn_id, aws_conn_id=aws_conn_id),
            title=name[len(base) :] if name.startswith(base) else name.rsplit("/", 1)[-1],
            info=info,
        )
        for name, info in objects.items()
    ]


def _static_part(path: str) -> str:
    """The directory of a glob before its first glob character (``b/models/*.bin`` -> ``b/models/``)."""
    first = min((path.index(c) for c in GLOB_CHARACTERS if c in path), default=len(path))
    return path[: path.rfind("/", 0, first) + 1]


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


class ObjectStorageSink:
    """Pulled files under an ``ObjectStoragePath`` folder or prefix, each visible only once verified.

    On S3 a file is a streaming multipart upload (``block_size`` bytes held at a time),
    completed by :meth:`_Writer.commit` and aborted (nothing appears) by
    :meth:`_Writer.abort`. A local file is written under a hidden temporary name in its
    folder and renamed into place. Other stores write a temporary object and move it.
    """

    def __init__(self, root: ObjectStoragePath, *, block_size: int = 16 * 1024 * 1024) -> None:
        self.root = root
        self.block_size = block_size

    def open(self, title: str, size: int) -> _Writer:
        target = self.root / title
        fs = target.fs
        if is_s3fs(fs):
            # S3 allows 10,000 parts: make the blocks big enough for the file
            block = max(self.block_size, -(-size // 9_000))
            return _Writer(target, fs.open(target.path, "wb", block_size=block), None)
        temporary = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:12]}"
        if _is_local(target):
            os.makedirs(os.path.dirname(target.path), exist_ok=True)
        return _Writer(target, fs.open(temporary.path, "wb"), temporary)


class _Writer:
    """One file being written: ``handle`` writes to the final name (S3) or to ``temporary``."""

    def __init__(self, target: ObjectStoragePath, handle: Any, temporary: ObjectStoragePath | None) -> None:
        self.target = target
        self.handle = handle
        self.temporary = temporary

    def write(self, data: memoryview) -> None:
        self.handle.write(data)

    def commit(self) -> str:
        self.handle.close()
        if self.temporary is not None:
            fs = self.target.fs
            if _is_local(self.target):
                os.replace(self.temporary.path, self.target.path)
            else:
                fs.mv(self.temporary.path, self.target.path)
        return f"{self.target.protocol}://{self.target.path}"

    def abort(self) -> None:
        if self.temporary is None:
            self.handle.discard()  # s3fs: abort the multipart upload; the object never appears
            self.handle.closed = True
            return
        self.handle.close()
        with contextlib.suppress(OSError):
            self.temporary.fs.rm(self.temporary.path)


def open_sink(
    destination: str | ObjectStoragePath, conn_id: str | None = None, *, aws_conn_id: str | None = None
) -> ObjectStorageSink:
    """Where to pull files to: a folder or prefix URL (``s3://bucket/prefix/``, ``file:///dir/``)."""
    if isinstance(destination, str) and not destination.strip():
        raise SourceError("destination must be a folder or prefix URL (s3://bucket/prefix/, file:///dir/)")
    root = to_path(destination, conn_id, aws_conn_id=aws_conn_id)
    if _kind(root) == "file":
        raise SourceError(f"Destination {str(root)!r} is a file: pull writes files under a folder or prefix")
    return ObjectStorageSink(root)
