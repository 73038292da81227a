"""Artifact sources and pull destinations through Airflow's ``ObjectStoragePath`` and its connections.

A thin adapter over :mod:`airflow_ecr_layers.storage`, which does all the reading and
writing on plain fsspec filesystems: here a URL (or an ``ObjectStoragePath``) becomes
the filesystem Airflow gives it for a connection id. The operators use it, and so does
the CLI when ``--conn-id`` is given; without one the CLI never imports Airflow.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_ecr_layers import storage
from airflow_ecr_layers.core.archives.reading import ArchiveReader
from airflow_ecr_layers.s3_reader import DirectS3
from airflow_ecr_layers.storage import (
    FsPath,
    ObjectStorageSink,
    ObjectStorageSource,
    Resolver,
    full_object_sha256,
    is_prefix,
)

__all__ = [
    "ObjectStorageSink",
    "ObjectStorageSource",
    "direct_reads",
    "full_object_sha256",
    "is_prefix",
    "list_prefix",
    "open_image_archive",
    "open_sink",
    "open_source",
    "open_sources",
    "resolver",
    "to_path",
]

Source = str | ObjectStoragePath | FsPath


def to_path(source: Source, conn_id: str | None = None, *, aws_conn_id: str | None = None) -> FsPath:
    """The path Airflow's object storage gives a URL; ``s3://`` without ``conn_id`` is read with ``aws_conn_id``.

    On S3 the path carries the direct client its objects are read with (:func:`direct_reads`)."""
    if isinstance(source, FsPath):
        return source
    if not isinstance(source, ObjectStoragePath):
        url = storage.check_url(source)
        if conn_id is None and url.startswith(("s3://", "s3a://")):
            conn_id = aws_conn_id
        source = ObjectStoragePath(url, conn_id=conn_id)
    fs = source.fs
    direct = direct_reads(fs, _conn_id(source)) if storage.is_s3fs(fs) else None
    return FsPath(fs, source.path, source.protocol, direct)


def _conn_id(path: ObjectStoragePath) -> str | None:
    """The connection id a path was made with (a property in later Airflow releases, a storage option in 3.0)."""
    found = getattr(path, "conn_id", None)
    if found is None:
        found = (getattr(path, "storage_options", None) or {}).get("conn_id")
    return str(found) if found is not None else None


_direct: weakref.WeakKeyDictionary[Any, dict[str | None, DirectS3]] = weakref.WeakKeyDictionary()
_direct_lock = threading.Lock()


def direct_reads(fs: Any, conn_id: str | None) -> DirectS3:
    """The direct S3 client of the filesystem Airflow gives connection ``conn_id``: one per
    filesystem and connection, made when it first reads.

    Its session is the amazon provider's for that connection (``S3Hook(aws_conn_id=conn_id)``:
    the connection's credentials, role and region, or boto3's default chain without one);
    everything else the filesystem was built with from the connection's extras (its endpoint
    URL, botocore config and proxies) is the client's too.
    """
    with _direct_lock:
        by_connection = _direct.setdefault(fs, {})
        found = by_connection.get(conn_id)
        if found is None:
            found = by_connection[conn_id] = DirectS3(fs, lambda: _hook_session(conn_id))
        return found


def _hook_session(conn_id: str | None) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=conn_id).get_session()


def resolver(conn_id: str | None = None, *, aws_conn_id: str | None = None) -> Resolver:
    """A :data:`~airflow_ecr_layers.storage.Resolver` on Airflow connections."""
    return lambda url: to_path(url, conn_id, aws_conn_id=aws_conn_id)


def _plain(source: Source) -> str | FsPath:
    """A URL stays a URL (it may be a prefix or a glob); a path object becomes an :class:`FsPath`."""
    return source if isinstance(source, (str, FsPath)) else to_path(source)


def open_source(source: Source, conn_id: str | None = None, *, aws_conn_id: str | None = None) -> ObjectStorageSource:
    """Resolve and check a source URL: it must exist, be a file, and not be empty."""
    return storage.open_source(_plain(source), resolver(conn_id, aws_conn_id=aws_conn_id))


def open_sources(
    sources: Source | Sequence[Source],
    conn_id: str | None = None,
    *,
    aws_conn_id: str | None = None,
    allow_empty: bool = False,
) -> list[ObjectStorageSource]:
    """Every source a URL, a prefix (``.../``), a glob (``*``, ``**``) or a list of them stands for
    (see :func:`airflow_ecr_layers.storage.open_sources`)."""
    items = [sources] if isinstance(sources, (str, ObjectStoragePath, FsPath)) else list(sources)
    return storage.open_sources(
        [_plain(item) for item in items], resolver(conn_id, aws_conn_id=aws_conn_id), allow_empty=allow_empty
    )


def list_prefix(url: str, conn_id: str | None = None) -> list[str]:
    """The URLs of the objects a prefix or glob stands for, sorted: for a mapped task's ``.expand``
    (give the mapped operators the same ``source_conn_id``)."""
    return storage.list_prefix(url, resolver(conn_id))


def open_image_archive(source: Source, conn_id: str | None = None, *, aws_conn_id: str | None = None) -> ArchiveReader:
    """A tar (optionally gzip-compressed) or an OCI layout directory, read in place."""
    return storage.open_image_archive(_plain(source), resolver(conn_id, aws_conn_id=aws_conn_id))


def open_sink(destination: Source, conn_id: str | None = None, *, aws_conn_id: str | None = None) -> ObjectStorageSink:
    """Where to pull files to: a folder or prefix URL (``s3://bucket/prefix/``, ``file:///dir/``)."""
    return storage.open_sink(_plain(destination), resolver(conn_id, aws_conn_id=aws_conn_id))
