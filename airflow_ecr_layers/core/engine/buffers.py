"""Part buffers kept between readers, so the next layer or chunk does not fault in fresh memory.

A 20 MiB ``bytearray`` is zero-filled when it is made: thousands of page faults, which
cost tens of milliseconds on a busy virtual machine. A :class:`~.reader.PartReader`
takes its buffers from :data:`POOL` and gives them back when it closes, so when one
push's layers or chunks follow each other, only the first readers pay for their
memory. At most ``max_idle_bytes`` wait in the pool; the rest are freed.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from airflow_ecr_layers.core.limits import MAX_PART_SIZE


class BufferPool:
    """Idle buffers by size; thread-safe."""

    def __init__(self, max_idle_bytes: int) -> None:
        self.max_idle_bytes = max_idle_bytes
        self._lock = threading.Lock()
        self._idle: dict[int, list[bytearray]] = defaultdict(list)
        self._idle_bytes = 0

    @property
    def idle_bytes(self) -> int:
        return self._idle_bytes

    def take(self, size: int) -> bytearray:
        """A buffer of exactly ``size`` bytes, holding whatever it held (a new one if none is idle)."""
        with self._lock:
            idle = self._idle.get(size)
            if idle:
                self._idle_bytes -= size
                return idle.pop()
        return bytearray(size)

    def give(self, buffers: list[bytearray]) -> None:
        """Keep ``buffers`` for later readers, up to ``max_idle_bytes`` in all; the caller drops them."""
        with self._lock:
            for buffer in buffers:
                if self._idle_bytes + len(buffer) <= self.max_idle_bytes:
                    self._idle[len(buffer)].append(buffer)
                    self._idle_bytes += len(buffer)

    def clear(self) -> None:
        with self._lock:
            self._idle.clear()
            self._idle_bytes = 0


POOL = BufferPool(max_idle_bytes=4 * MAX_PART_SIZE)
"""The pool every reader shares: room for two layers' worth of buffers at the largest part size."""
