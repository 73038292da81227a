"""What a blob is read from: anything that can be opened at a byte offset.

The :class:`BlobSource` protocol, its plain implementations (bytes, a local file, a
slice of another source), and :func:`hash_and_count`, the one streaming pass that
measures a source whose size or digest is not known up front.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, runtime_checkable

from airflow_ecr_layers.core.errors import SourceChangedError
from airflow_ecr_layers.core.limits import MiB
from airflow_ecr_layers.core.sources.identity import SourceIdentity


@runtime_checkable
class BlobSource(Protocol):
    """A readable blob of known size. Opening it twice gives two independent handles."""

    @property
    def name(self) -> str:
        """A display name: a URL or a path, never credentials."""

    @property
    def size(self) -> int:
        """The number of bytes in the blob."""

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        """A binary handle positioned at ``offset``; reads of ``block_size`` are typical."""


@dataclass(frozen=True)
class BytesSource:
    """A small in-memory blob (a config, the OCI empty descriptor's ``{}``)."""

    data: bytes
    name: str = "<bytes>"

    @property
    def size(self) -> int:
        return len(self.data)

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        handle = io.BytesIO(self.data)
        handle.seek(offset)
        return handle


@dataclass(frozen=True)
class LocalFileSource:
    """A file on the local disk, read with plain unbuffered reads.

    Its size and identity (path, size, ``mtime_ns``, inode, device, ``ctime_ns``) are a snapshot of the file taken once,
    when the source is made: they describe the file as it was opened, not as it is later."""

    path: str
    stat: os.stat_result = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stat", os.stat(self.path))

    @property
    def name(self) -> str:
        return self.path

    @property
    def title(self) -> str:
        return os.path.basename(self.path)

    @property
    def size(self) -> int:
        return self.stat.st_size

    def identity(self) -> SourceIdentity:
        return local_identity(os.path.abspath(self.path), self.stat)

    def check_unchanged(self) -> None:
        check_same_file(self.path, self.stat)

    def stored_sha256(self) -> str | None:
        return None

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        handle = open(self.path, "rb", buffering=0)  # noqa: SIM115 - the caller closes it
        handle.seek(offset)
        return handle


@dataclass(frozen=True)
class SliceSource:
    """``size`` bytes of another source starting at ``offset`` (a member of an archive)."""

    parent: BlobSource
    offset: int
    size: int
    name: str

    def open_at(self, offset: int, block_size: int) -> BinaryIO:
        return self.parent.open_at(self.offset + offset, block_size)

    def check_unchanged(self) -> None:
        check_unchanged(self.parent)


def check_unchanged(source: BlobSource) -> None:
    """Raise :class:`SourceChangedError` when ``source`` can tell that it changed since it was
    opened (its ``check_unchanged()``; sources that cannot change, or are pinned on every read
    as S3 objects are by ``If-Match``, have none)."""
    check = getattr(source, "check_unchanged", None)
    if check is not None:
        check()


def check_same_file(path: str, opened: os.stat_result) -> None:
    """Raise :class:`SourceChangedError` unless the file at ``path`` is still the one ``opened`` describes."""
    try:
        now = os.stat(path)
    except OSError as exc:
        raise SourceChangedError(
            f"{path} was removed or replaced while it was read ({exc}); nothing was completed"
        ) from exc
    if local_identity(path, now) != local_identity(path, opened):
        raise SourceChangedError(
            f"{path} changed while it was read (size, mtime, ctime or inode differ from when it was opened); "
            "nothing was completed from it"
        )


def local_identity(path: str, stat: os.stat_result) -> SourceIdentity:
    """The identity of the local file at absolute ``path``, from one ``os.stat`` snapshot of it."""
    return SourceIdentity(
        f"file://{path}",
        stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        inode=stat.st_ino,
        device=stat.st_dev,
        ctime_ns=stat.st_ctime_ns,
    )


def hash_and_count(source: BlobSource, block_size: int = MiB) -> tuple[int, str]:
    """``(size, "sha256:<hex>")`` of the bytes ``source`` yields, read in ``block_size`` blocks.

    One streaming pass: nothing is held beyond one block, so it suits sources whose
    bytes are produced on the fly (compressed, decompressed) or too large for memory.
    """
    digest, size = hashlib.sha256(), 0
    with source.open_at(0, block_size) as handle:
        while chunk := handle.read(block_size):
            digest.update(chunk)
            size += len(chunk)
    return size, "sha256:" + digest.hexdigest()
