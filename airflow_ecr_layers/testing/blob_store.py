"""The bytes of the layers the embedded ECR completed, on disk, one file per digest.

moto keeps only a completed layer's size; :mod:`.strict_ecr` also writes its bytes
here so that :mod:`.blob_server` can serve downloads. The store is content-addressed:
a file is named by the hex of its sha256 digest, so the same blob in two repositories,
accounts or regions is one file. A blob is written to a temporary name in the same
directory and renamed, so a reader never sees a partial file.

:func:`blob_store` is the process-wide store (like :func:`.strict_ecr.install`, it
serves every moto backend of the process): a temporary directory created on first
use and removed when the interpreter exits.

This module must not import Airflow (nor moto: it is plain files).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

__all__ = ["BlobStore", "blob_store", "is_digest"]

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
"""The digests the store holds: CompleteLayerUpload computes sha256."""


def is_digest(value: str) -> bool:
    """Whether ``value`` is a ``sha256:<64 lowercase hex>`` digest."""
    return _DIGEST.fullmatch(value) is not None


class BlobStore:
    """Blobs in one directory, one file per digest, named by the digest's hex."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, digest: str) -> Path:
        """Where the blob of ``digest`` is (or would be). ValueError for anything but a sha256 digest,
        so that no name from a request can point outside the store."""
        found = _DIGEST.fullmatch(digest)
        if found is None:
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / found.group(1)

    def has(self, digest: str) -> bool:
        return is_digest(digest) and self.path_for(digest).is_file()

    def size(self, digest: str) -> int:
        """The stored blob's length; FileNotFoundError when it is not stored."""
        return self.path_for(digest).stat().st_size

    def put(self, digest: str, data: bytes | bytearray | memoryview) -> Path:
        """Store ``data`` as the blob of ``digest`` (the caller has checked that it hashes to it).

        One ``write`` of the buffer the caller already holds (no copy), to a temporary
        name that is then renamed over the final one: readers see the whole blob or none.
        A blob already stored is left as it is."""
        path = self.path_for(digest)
        if path.is_file():
            return path
        temporary = self.root / f".{path.name}.{uuid.uuid4().hex}.partial"
        try:
            with open(temporary, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        return path

    def digests(self) -> set[str]:
        """The digests of every stored blob."""
        return {f"sha256:{p.name}" for p in self.root.iterdir() if _DIGEST.fullmatch(f"sha256:{p.name}")}

    def retain(self, keep: Iterable[str]) -> list[str]:
        """Delete every stored blob whose digest is not in ``keep``; return the deleted digests.

        A file being served stays readable by whoever has it open (POSIX)."""
        kept = set(keep)
        dropped = sorted(self.digests() - kept)
        for digest in dropped:
            with contextlib.suppress(FileNotFoundError):
                self.path_for(digest).unlink()
        return dropped


_store: BlobStore | None = None
_store_lock = threading.Lock()


def blob_store() -> BlobStore:
    """The process-wide store: a temporary directory made on first use, removed at exit."""
    global _store
    with _store_lock:
        if _store is None:
            root = tempfile.mkdtemp(prefix="ecr-layers-blobs-")
            atexit.register(shutil.rmtree, root, True)
            _store = BlobStore(root)
        return _store
