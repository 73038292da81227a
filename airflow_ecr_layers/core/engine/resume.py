"""Resume records: what survives a killed worker, so its retry continues an upload instead of redoing it.

A worker can die mid-upload (out of memory, a spot interruption, SIGKILL, a task timeout).
While a layer uploads, its :class:`ResumeRecord` is kept in a :class:`ResumeStore` that
outlives the process: the registry and repository, the upload id, the source's identity
(with its ETag and version), the part size, and how many bytes ECR has confirmed. The next
attempt at the same layer loads it and, when the source is unchanged, re-reads and hashes
the confirmed prefix without sending it again, then continues the same upload from there
(ECR's ``lastValidByteReceived`` corrects a record that lags behind). An upload that
expired starts over; so does one whose source changed. A record is deleted once its layer
is complete.

A record is keyed by where the upload goes and what it reads (registry, region, repository,
the source's URL and the byte range), not by the source's version: an attempt on a source
that changed since finds the old record, sees the identity differ, and replaces it. A record
older than :data:`RECORD_LIFETIME` is dropped unread.

Resume is a shortcut, so its store never takes a push down: a store that fails (an unwritable
cache folder, a Variable that cannot be read or written) logs one warning and the push goes
on without resume.

Stores: :class:`FileResumeStore` (the CLI's, under the user's cache folder) and
:class:`MemoryResumeStore` here; the operators keep theirs in an Airflow Variable
(:mod:`airflow_ecr_layers.resume_variables`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

from airflow_ecr_layers.core.sources.identity import SourceIdentity, Target

log = logging.getLogger("airflow_ecr_layers")

T = TypeVar("T")
_FAILED_STORES: weakref.WeakSet[Any] = weakref.WeakSet()
"""Stores that failed once: every later call on them is skipped (one warning per store, so per push)."""
_FAILED_LOCK = threading.Lock()

RECORD_LIFETIME = 24 * 3600.0
"""Seconds a record stays usable. ECR does not document how long it keeps an unfinished upload;
an upload older than a day is started over (a record is a shortcut: dropping it costs a re-send)."""


@dataclass(frozen=True)
class ResumeRecord:
    """An upload in progress, as a later attempt needs it."""

    registry_id: str
    repository_name: str
    upload_id: str
    part_size: int
    size: int
    confirmed: int
    """Bytes ECR acknowledged (a lower bound: the upload may hold more)."""
    source: dict[str, Any]
    """The source's identity fields (URL, size, ETag, version id, mtime_ns)."""
    offset: int = 0
    """Where the layer's bytes start in the source (a chunk's offset)."""
    updated: float = 0.0

    def matches(self, source: dict[str, Any], offset: int, size: int) -> bool:
        """Whether this record is of the same bytes of the same, unchanged source."""
        return self.source == source and (self.offset, self.size) == (offset, size)

    def expired(self, now: float) -> bool:
        """Whether the record is older than :data:`RECORD_LIFETIME` (or from the future)."""
        return not (0 <= now - self.updated <= RECORD_LIFETIME)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: object) -> ResumeRecord | None:
        """A record from stored JSON; None for anything malformed (then nothing is resumed)."""
        if not isinstance(value, dict) or set(value) - {f.name for f in fields(cls)}:
            return None
        try:
            record = cls(**value)
        except TypeError:
            return None
        numbers = (record.part_size, record.size, record.confirmed, record.offset)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            return None
        if not (isinstance(record.upload_id, str) and isinstance(record.source, dict)):
            return None
        return record


class ResumeStore(Protocol):
    """Where resume records live between attempts; ``key`` names one layer of one push."""

    min_interval: float
    """Seconds between saves of a record while its upload runs (0: after every part)."""

    def load(self, key: str) -> ResumeRecord | None: ...

    def save(self, key: str, record: ResumeRecord) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryResumeStore:
    """Records in a dict: for tests, and for a process that only needs to survive its own restarts."""

    def __init__(self, min_interval: float = 0.0) -> None:
        self.min_interval = min_interval
        self.records: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def load(self, key: str) -> ResumeRecord | None:
        with self._lock:
            return ResumeRecord.from_json(self.records.get(key))

    def save(self, key: str, record: ResumeRecord) -> None:
        with self._lock:
            self.records[key] = record.to_json()

    def delete(self, key: str) -> None:
        with self._lock:
            self.records.pop(key, None)


def user_cache_dir() -> Path:
    """The user's cache folder: ``$XDG_CACHE_HOME``, ``~/.cache``, ``~/Library/Caches`` or ``%LOCALAPPDATA%``."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "airflow-ecr-layers"


class FileResumeStore:
    """One small JSON file per layer in progress, written atomically (temp file, then rename)."""

    def __init__(self, folder: str | Path | None = None, min_interval: float = 0.0) -> None:
        self.folder = Path(folder) if folder is not None else user_cache_dir() / "resume"
        self.min_interval = min_interval

    def _path(self, key: str) -> Path:
        return self.folder / (key.replace(":", "-").replace("/", "_") + ".json")

    def load(self, key: str) -> ResumeRecord | None:
        try:
            return ResumeRecord.from_json(json.loads(self._path(key).read_text()))
        except (OSError, ValueError):
            return None

    def save(self, key: str, record: ResumeRecord) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.folder, delete=False, suffix=".tmp") as handle:
            json.dump(record.to_json(), handle)
        os.replace(handle.name, self._path(key))
        self._sweep()

    def _sweep(self) -> None:
        """Delete the records (of any push) not written for :data:`RECORD_LIFETIME`."""
        oldest = time.time() - RECORD_LIFETIME
        for path in self.folder.glob("*.json"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < oldest:
                    path.unlink()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class ResumePoint:
    """One layer's record in its store, saved at most every ``store.min_interval`` seconds.

    :param source: what the layer's bytes are: the source's identity fields, or for a blob
        known by digest ``{"digest": ...}``. A record of other bytes is never resumed.
    :param offset: where the layer starts in that source.

    Every store call is guarded: the store's first failure logs one warning and turns resume
    off for every layer using that store; the upload goes on (see the module docstring).
    """

    def __init__(self, store: ResumeStore, key: str, source: dict[str, Any], offset: int = 0) -> None:
        self.store = store
        self.key = key
        self.source = source
        self.offset = offset
        self._saved_at = 0.0

    @classmethod
    def of(
        cls,
        store: ResumeStore | None,
        identity: SourceIdentity | None,
        digest: str | None,
        target: Target,
        offset: int,
        size: int,
    ) -> ResumePoint | None:
        """The point for a layer, keyed by :func:`record_key`: its source's URL, else its digest.
        None when the layer has neither (nothing could tell it is the same next time) or there is no store."""
        if store is None:
            return None
        if identity is not None:
            return cls(store, record_key(target, identity.url, offset, size), identity.fields(), offset)
        if digest is not None:
            return cls(store, record_key(target, f"digest:{digest}", offset, size), {"digest": digest}, offset)
        return None

    def load(self) -> ResumeRecord | None:
        """The record of an earlier attempt, if any; an expired one is deleted instead."""
        record = self._guarded("read", lambda: self.store.load(self.key))
        if record is not None and record.expired(time.time()):
            log.info("Dropping a resume record of upload %s: older than a day", record.upload_id)
            self.delete()
            return None
        return record

    def record(
        self, registry_id: str, repository_name: str, upload_id: str, part_size: int, size: int, confirmed: int
    ) -> ResumeRecord:
        return ResumeRecord(
            registry_id, repository_name, upload_id, part_size, size, confirmed, self.source, self.offset
        )

    def save(self, record: ResumeRecord, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._saved_at >= self.store.min_interval:
            stamped = ResumeRecord(**{**record.to_json(), "updated": time.time()})
            self._guarded("write", lambda: self.store.save(self.key, stamped))
            self._saved_at = now

    def delete(self) -> None:
        self._guarded("delete", lambda: self.store.delete(self.key))

    def _guarded(self, what: str, call: Callable[[], T]) -> T | None:
        """``call()``, unless the store failed before or fails now: then None, after one warning."""
        if self.store in _FAILED_STORES:
            return None
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - a failing store must never fail the upload
            with _FAILED_LOCK:
                if self.store in _FAILED_STORES:
                    return None
                _FAILED_STORES.add(self.store)
            log.warning(
                "Cannot %s a resume record (%s: %s); the push goes on without resume",
                what,
                type(exc).__name__,
                exc,
            )
            return None


def record_key(target: Target, url: str, offset: int, length: int) -> str:
    """Where an upload goes and what it reads: the same for every version of the source."""
    canonical = {
        "registry_id": target.registry_id,
        "region": target.region,
        "repository_name": target.repository_name,
        "url": url,
        "offset": offset,
        "length": length,
    }
    data = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    return "resume-" + hashlib.sha256(data).hexdigest()
