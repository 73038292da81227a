"""Read a source in parts, hashing sha256 as the bytes pass, one part ahead of the sender.

A producer thread reads and hashes part N+1 while the caller uploads part N. At most
``depth`` parts are alive at once (the one being sent counts), whatever the
artifact's size. ``seek`` restarts reading at any byte: backwards for a resume
(bytes already hashed are not hashed again), forwards for an upload that already
holds a prefix (the gap is read and hashed, not returned).

Memory: the reader owns ``depth`` part-sized buffers and reads into them in turn
(``readinto`` where the handle has it), so a part costs no fresh allocation, no
page faults, and the resident size does not wander with the heap: the same
buffers serve the first part and the ten-thousandth. The buffers come from, and go
back to, a pool (:mod:`.buffers`), so the next layer's reader reuses them too. The
price is a rule for the consumer: a part's ``data`` is valid until the next
:meth:`PartReader.next_part`, :meth:`PartReader.seek` or :meth:`PartReader.close`,
after which the producer (or another reader) may overwrite it. Copy it to keep it.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from dataclasses import dataclass
from typing import BinaryIO

from airflow_ecr_layers.core.engine.buffers import POOL
from airflow_ecr_layers.core.errors import SourceChangedError
from airflow_ecr_layers.core.sources.blobs import BlobSource


@dataclass(frozen=True)
class Part:
    first_byte: int
    data: bytearray
    """The part's bytes, in a buffer the reader reuses: valid until the next part is asked for."""

    @property
    def last_byte(self) -> int:
        return self.first_byte + len(self.data) - 1

    @property
    def end(self) -> int:
        """The first byte after this part."""
        return self.first_byte + len(self.data)


class _End:
    pass


@dataclass
class _Failure:
    error: BaseException


def readinto_exact(handle: BinaryIO, view: memoryview, *, name: str, at: int) -> None:
    """Fill ``view`` from ``handle`` (with ``readinto`` where it has one), or fail naming the
    source and the offset where it ended."""
    readinto = getattr(handle, "readinto", None)
    got, wanted = 0, len(view)
    while got < wanted:
        if readinto is not None:
            count = readinto(view[got:]) or 0
        else:
            chunk = handle.read(wanted - got)
            count = len(chunk)
            view[got : got + count] = chunk
        if not count:
            raise SourceChangedError(
                f"{name} ended at byte {at + got}, {wanted - got} bytes short of its size when it was opened"
            )
        got += count


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
        self.bytes_read = 0
        """Bytes read from the source so far, re-reads included (final once the reader is closed)."""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._slots = threading.Semaphore(depth)
        self._queue: queue.Queue[Part | _End | _Failure] = queue.Queue()
        self._holding = False
        self._buffers: list[bytearray] = []
        self._short: dict[int, bytearray] = {}

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
        """Stop reading and give the part buffers back to the pool (no part may be used after)."""
        self._halt()
        POOL.give(self._buffers + list(self._short.values()))
        self._buffers, self._short = [], {}

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

    def _hash(self, first: int, data: memoryview) -> None:
        skip = self._hashed_upto - first
        if skip < len(data):
            self._hasher.update(data[max(skip, 0) :])
            self._hashed_upto = first + len(data)

    def _buffer(self, index: int, size: int) -> bytearray:
        """Buffer ``index % depth`` (allocated on first use), or a buffer of its own for a short part.

        Round robin is safe: the producer takes a slot before it fills a buffer, and
        with ``depth`` slots the consumer has released the part that last used it.
        """
        if size != self._part_size:  # the last part (or a gap's tail): its own buffer, kept for a re-read
            if size not in self._short:
                self._short[size] = POOL.take(size)
            return self._short[size]
        slot = index % self._depth
        while len(self._buffers) <= slot:
            self._buffers.append(POOL.take(self._part_size))
        return self._buffers[slot]

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
            index = 0
            with self._source.open_at(position, self._part_size) as handle:
                while position < offset and not stop.is_set():  # hash the gap, return nothing
                    slots.acquire()  # the gap borrows a part buffer: the consumer may hold the other
                    try:
                        view = memoryview(self._buffer(index, min(self._part_size, offset - position)))
                        readinto_exact(handle, view, name=name, at=position)
                        self.bytes_read += len(view)
                        self._hash(position, view)
                    finally:
                        slots.release()
                    position += len(view)
                    index += 1
                while position < self._size:
                    slots.acquire()
                    if stop.is_set():
                        return
                    data = self._buffer(index, min(self._part_size, self._size - position))
                    view = memoryview(data)
                    readinto_exact(handle, view, name=name, at=position)
                    self.bytes_read += len(view)
                    self._hash(position, view)
                    out.put(Part(position, data))
                    position += len(data)
                    index += 1
            out.put(_End())
        except BaseException as exc:  # handed to the consumer, re-raised there
            out.put(_Failure(exc))
