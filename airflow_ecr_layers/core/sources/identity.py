"""Source identities: what a layer was read from, recorded on the layer, so a re-push can reuse it.

A source's identity is what tells one version of an object from another without
reading it: for S3 its URL, size, ETag and version id; for a local file its path, size,
``mtime_ns``, inode, device and ``ctime_ns`` (which no user tool can set back, so a file
rewritten with its old size and mtime still gets a new identity). Every layer a push
writes carries, in its descriptor's annotations, a *token* of that identity
(:data:`IDENTITY`): the sha256 of the identity's fields together with where the layer
goes (:class:`Target`: registry, region, repository) and its byte range. The next push
of the same sources reads the manifest it is about to replace, and every source whose
token is found there may reuse that layer's digest without being read.

Who can plant a token: anyone who can push to the repository could write a manifest whose
token maps a source to another blob of the same size. To compute a token one needs the
identity's *keying* fields (:data:`KEYING_FIELDS`: an S3 object's ETag and version id, a
local file's inode, device and ``ctime_ns``), which only someone who can read the source's
metadata has; they are never written in clear, not even with ``in_clear=True``, which
records only the URL, size and mtime (:data:`SOURCE_FIELDS`). Where the repository's
writers are not trusted with the sources' metadata, ``verify_reuse=True`` hashes every
source a record would reuse and reuses it only when the bytes hash to the recorded digest.
A token binds the registry, the region and the repository, so annotations copied from
another repository or registry never match.

Chunks of one file (see :mod:`.chunks`) carry :data:`CHUNK_OF`, :data:`CHUNK_OFFSET`
and :data:`CHUNK_FILE_SIZE`: the file's title, where the chunk starts, and the file's
size, so any client can put the file back together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_ecr_layers.core.limits import validate_digest

NAMESPACE = "io.github.airflow-ecr-layers"
"""The prefix of this provider's own annotation keys."""
IDENTITY = f"{NAMESPACE}.source.identity"
"""``sha256:<hex>`` of the source's identity, the target repository and the layer's byte range."""
SOURCE_FIELDS = {
    "url": f"{NAMESPACE}.source.url",
    "size": f"{NAMESPACE}.source.size",
    "mtime_ns": f"{NAMESPACE}.source.mtime-ns",
}
"""The identity's fields written in clear (``record_source=True`` only): never the keying ones."""
KEYING_FIELDS = ("etag", "version_id", "inode", "device", "ctime_ns")
"""The fields only someone who can read the source's metadata knows: they key the token."""
CHUNK_OF = f"{NAMESPACE}.chunk.of"
"""On a chunk: the title of the file it is a part of."""
CHUNK_OFFSET = f"{NAMESPACE}.chunk.offset"
"""On a chunk: the byte of the file it starts at (decimal)."""
CHUNK_FILE_SIZE = f"{NAMESPACE}.chunk.file-size"
"""On a chunk: the whole file's size in bytes (decimal)."""
BUILD_PATH = f"{NAMESPACE}.build.path"
"""On an image built from files: the folder the files were put under (``/models``); a pull writes
them relative to it."""
_VERSION = 2
"""2: the region and the local file's inode, device and ctime_ns joined the token."""


@dataclass(frozen=True)
class Target:
    """Where a layer goes: one repository of one registry in one region (a repository of the
    same name in another region is another registry's)."""

    registry_id: str
    region: str
    repository_name: str


@dataclass(frozen=True)
class SourceIdentity:
    """What tells this version of a source from any other, without reading it.

    Two identities are equal only when every field is: an overwritten S3 object has a new
    ETag (and, in a versioned bucket, a new version id); a rewritten local file a new
    ``ctime_ns`` (and usually ``mtime_ns``), a replaced one a new inode.
    """

    url: str
    size: int
    etag: str | None = None
    version_id: str | None = None
    mtime_ns: int | None = None
    inode: int | None = None
    device: int | None = None
    ctime_ns: int | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "size": self.size,
            "etag": self.etag,
            "version_id": self.version_id,
            "mtime_ns": self.mtime_ns,
            "inode": self.inode,
            "device": self.device,
            "ctime_ns": self.ctime_ns,
        }

    def token(self, target: Target, offset: int, length: int) -> str:
        """The digest recorded on the layer holding bytes ``offset..offset+length`` of this source in ``target``."""
        canonical = {
            "v": _VERSION,
            "registry_id": target.registry_id,
            "region": target.region,
            "repository_name": target.repository_name,
            "offset": offset,
            "length": length,
            **self.fields(),
        }
        data = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def annotations(self, target: Target, offset: int, length: int, *, in_clear: bool = False) -> dict[str, str]:
        """The annotations that record this identity on a layer (``in_clear``: the non-keying fields too)."""
        found = {IDENTITY: self.token(target, offset, length)}
        if in_clear:
            found.update({key: str(v) for name, key in SOURCE_FIELDS.items() if (v := self.fields()[name]) is not None})
        return found


@dataclass(frozen=True)
class RecordedLayer:
    """A layer of an earlier push, as its manifest names it."""

    digest: str
    size: int


def recorded_layers(manifest: bytes) -> dict[str, RecordedLayer]:
    """The layers of an image manifest that carry an identity token, by token.

    Anything that is not an image manifest with well-formed layer descriptors yields
    nothing: a recorded digest is only ever a hint, checked against ECR before use.
    """
    try:
        body = json.loads(manifest)
    except (ValueError, UnicodeDecodeError):
        return {}
    layers = body.get("layers") if isinstance(body, Mapping) else None
    found: dict[str, RecordedLayer] = {}
    for layer in layers if isinstance(layers, list) else []:
        if not isinstance(layer, Mapping):
            continue
        annotations = layer.get("annotations")
        token = annotations.get(IDENTITY) if isinstance(annotations, Mapping) else None
        digest, size = layer.get("digest"), layer.get("size")
        if not isinstance(token, str) or not isinstance(size, int) or isinstance(size, bool):
            continue
        try:
            found[token] = RecordedLayer(validate_digest(digest), size)
        except ValueError:
            continue
    return found
