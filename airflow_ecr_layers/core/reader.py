"""Read a source in parts, hashing sha256 as the bytes pass, one part ahead of the sender.

A producer thread reads and hashes part N+1 while the caller uploads part N. At most
``depth`` parts are alive at once (the one being sent counts), whatever the
artifact's size. ``seek`` restarts reading at any byte: backwards for a resume
(bytes already hashed are not hashed again), forwards for an upload that already
holds a prefix (the gap is read and hashed, not returned).

Memory: when the consumer asks for the next part (of a megabyte or more), the
memory of the parts it is done with goes back to the operating system (glibc's
``malloc_trim``) before the producer may read another one. Without that, glibc
keeps freed part buffers: once the first one is freed, its dynamic mmap threshold
rises to just above the part size, later parts come from the heap, and the heap
fragments between them and the read buffers, so the resident size wanders one to
two parts above what is alive (measured: 5.2 to 6.2 parts of growth for 20 MiB
parts, by chance; 5.0 to 5.1 with the trim). The price is page faults on the
next part's buffers: 8 to 15 % more CPU per part on the 2-core VMs we measure on.
"""

from __future__ import annotations

import ctypes
import hashlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from airflow_ecr_layers.core.errors import SourceError
from airflow_ecr_layers.core.sources import BlobSource


@dataclass(frozen=True)
class Part:
    first_byte: int
    data: bytes

    @property
    def last_byte(self) -> int:
        return self.first_byte + len(self.data) - 1

    @property
    def end(self) -> int:
        """The first byte after this part."""
        return self.first_byte + len(self.data)


TRIM_FROM_PART_SIZE = 1024 * 1024
"""Parts at least this big give freed memory back before the next is read (see the module doc)."""


def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (or no C library to ask)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_MALLOC_TRIM = _libc_malloc_trim()


def release_free_memory() -> None:
    """Return the C heap's free memory to the operating system (glibc); a no-op elsewhere."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class _End:
    pass


@dataclass
class _Failure:
    error: BaseException


def read_exact(handle: BinaryIO, n: int, *, name: str, at: int) -> bytes:
    """Read exactly ``n`` bytes, or fail naming the source and offset."""
    data = handle.read(n)
    if len(data) == n:
        return data
    chunks = [data]
    got = len(data)
    while got < n:
        more = handle.read(n - got)
        if not more:
            raise SourceError(f"{name} ended at byte {at + got}, {n - got} bytes short of its declared size")
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


class PartReader:
    """Yield consecutive :class:`Part` objects of ``part_size`` bytes from ``source``."""

    def __init__(self, source: BlobSource, part_size: int, *, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._source = source
        self._size = source.size
        self._part_size = part_size
        self._depth = depth
        self._hasher = hashlib.sha256()
        self._hashed_upto = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._slots = threading.Semaphore(depth)
        self._queue: queue.Queue[Part | _End | _Failure] = queue.Queue()
        self._holding = False

    @property
    def hashed_upto(self) -> int:
        return self._hashed_upto

    def digest(self) -> str:
        """``sha256:<hex>`` of the whole source; valid once every byte has been read."""
        if self._hashed_upto != self._size:
            raise RuntimeError(f"only {self._hashed_upto} of {self._size} bytes were hashed")
        return "sha256:" + self._hasher.hexdigest()

    def hash_remaining(self) -> None:
        """Read and hash every byte not hashed yet, returning no parts; returns when done.

        For a caller that stops taking parts because the rest of the bytes are
        already where they go (an upload that already held the end of the blob):
        afterwards :meth:`digest` is valid, and no producer thread is still hashing.
        """
        if self._hashed_upto == self._size:
            return
        self.seek(self._size)
        assert self._thread is not None
        self._thread.join()
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Failure):
                raise item.error

    def seek(self, offset: int) -> None:
        """(Re)start reading at ``offset``; parts from then on start there."""
        if not 0 <= offset <= self._size:
            raise ValueError(f"offset {offset} outside 0..{self._size}")
        self._halt()
        self._stop = threading.Event()
        self._slots = threading.Semaphore(self._depth)
        self._queue = queue.Queue()
        self._holding = False
        self._thread = threading.Thread(
            target=self._produce,
            args=(offset, self._stop, self._slots, self._queue),
            name=f"part-reader:{self._source.name}",
            daemon=True,
        )
        self._thread.start()

    def next_part(self) -> Part | None:
        """The next part, or None at the end. The previous part's slot is released."""
        if self._thread is None:
            self.seek(0)
        if self._holding:
            if self._part_size >= TRIM_FROM_PART_SIZE:
                release_free_memory()  # the part before the one just handled is freed by now
            self._slots.release()
            self._holding = False
        item = self._queue.get()
        if isinstance(item, _Failure):
            raise item.error
        if isinstance(item, _End):
            self._queue.put(item)
            return None
        self._holding = True
        return item

    def close(self) -> None:
        self._halt()

    def __enter__(self) -> PartReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _halt(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        for _ in range(self._depth + 1):
            self._slots.release()
        self._thread.join()
        self._thread = None

    def _hash(self, first: int, data: bytes) -> None:
        skip = self._hashed_upto - first
        if skip < len(data):
            self._hasher.update(memoryview(data)[max(skip, 0):])
            self._hashed_upto = first + len(data)

    def _produce(
        self,
        offset: int,
        stop: threading.Event,
        slots: threading.Semaphore,
        out: queue.Queue[Part | _End | _Failure],
    ) -> None:
        try:
            position = min(offset, self._hashed_upto)
            name = self._source.name
            with self._source.open_at(position, self._part_size) as handle:
                while position < offset and not stop.is_set():  # hash the gap, return nothing
                    data = read_exact(handle, min(self._part_size, offset - position), name=name, at=position)
                    self._hash(position, data)
                    position += len(data)
                while position < self._size:
                    slots.acquire()
                    if stop.is_set():
                        return
                    n = min(self._part_size, self._size - position)
                    data = read_exact(handle, n, name=name, at=position)
                    self._hash(position, data)
                    out.put(Part(position, data))
                    position += n
            out.put(_End())
        except BaseException as exc:  # handed to the consumer, re-raised there
            out.put(_Failure(exc))
