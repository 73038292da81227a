"""Index a tar archive on any BlobSource without unpacking it, and slice members out of it.

Member data is located once (tar headers only; data is skipped by seeking), then
each blob is read straight from the archive with ranged reads. Paths are checked:
an absolute path or one with ``..`` anywhere in the archive is refused, and a blob
path that resolves through a symlink or hardlink is refused when it is used.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from dataclasses import dataclass

from airflow_ecr_layers.core.errors import DigestMismatchError, EcrLayersError
from airflow_ecr_layers.core.limits import MiB
from airflow_ecr_layers.core.sources.blobs import BlobSource, SliceSource

INDEX_BLOCK = 64 * 1024
MAX_SMALL_MEMBER = 8 * MiB
"""The largest JSON member (manifest, index, config) read into memory."""


class HostileArchiveError(EcrLayersError):
    """The archive tries to escape, links where a blob should be, or lies about its content."""


@dataclass(frozen=True)
class Member:
    name: str
    offset: int
    size: int
    kind: str
    """``file``, ``dir``, ``symlink`` or ``hardlink`` (anything else is ``other``)."""


def normalize(name: str, archive: str) -> str:
    """The canonical relative path of a member, or an error for one that escapes."""
    if name.startswith("/") or posixpath.isabs(name):
        raise HostileArchiveError(f"{archive}: member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise HostileArchiveError(f"{archive}: member {name!r} escapes the archive with '..'")
    return "/".join(parts)


def _kind(info: tarfile.TarInfo) -> str:
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    return "other"


class TarIndex:
    """The members of a tar archive held in ``source`` (uncompressed; see GunzipSource)."""

    def __init__(self, source: BlobSource) -> None:
        self.source = source
        self.members: dict[str, Member] = {}
        with source.open_at(0, INDEX_BLOCK) as handle:
            try:
                with tarfile.open(fileobj=handle, mode="r:") as tar:
                    for info in tar:
                        name = normalize(info.name, source.name)
                        self.members[name] = Member(name, info.offset_data, info.size, _kind(info))
            except tarfile.TarError as exc:
                raise HostileArchiveError(f"{source.name} is not a readable tar archive: {exc}") from exc

    @property
    def name(self) -> str:
        return self.source.name

    def __contains__(self, name: str) -> bool:
        return normalize(name, self.source.name) in self.members

    def file(self, name: str) -> Member:
        """A regular file member, refusing missing paths and paths through links."""
        path = normalize(name, self.source.name)
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            found = self.members.get(prefix)
            if found is not None and found.kind in ("symlink", "hardlink"):
                raise HostileArchiveError(
                    f"{self.source.name}: blob path {name!r} resolves through a {found.kind} ({prefix!r})"
                )
        member = self.members.get(path)
        if member is None:
            raise HostileArchiveError(f"{self.source.name}: {name!r} is named but missing from the archive")
        if member.kind != "file":
            raise HostileArchiveError(f"{self.source.name}: {name!r} is a {member.kind}, not a file")
        return member

    def blob_source(self, name: str) -> BlobSource:
        member = self.file(name)
        return SliceSource(self.source, member.offset, member.size, f"{self.source.name}!{member.name}")

    def read_small(self, name: str, digest: str | None = None) -> bytes:
        """A small member's bytes (JSON), checked against ``digest`` when given."""
        return read_verified(self.blob_source(name), digest)


def read_verified(source: BlobSource, digest: str | None = None) -> bytes:
    """Read a small blob whole (refusing large ones) and check its sha256 when ``digest`` is given."""
    if source.size > MAX_SMALL_MEMBER:
        raise HostileArchiveError(f"{source.name} is {source.size} bytes; metadata over {MAX_SMALL_MEMBER} is refused")
    with source.open_at(0, max(source.size, 1)) as handle:
        data = handle.read(source.size)
    if len(data) != source.size:
        raise HostileArchiveError(f"{source.name} ended after {len(data)} of {source.size} bytes")
    if digest is not None:
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise DigestMismatchError(f"{source.name} hashes to {actual}, not {digest}")
    return data
