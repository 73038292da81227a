"""A read-only, seekable handle on a remote blob of known size, read by ranges.

Subclasses fetch ``bytes=first-last`` into the caller's buffer (:meth:`RangedReader.fetch`);
this base keeps the position, clamps reads at the end, and reads the rest in one range
(:class:`io.RawIOBase` would read it 8 KiB at a time, one request each).
"""

from __future__ import annotations

import io
from abc import abstractmethod
from typing import Any


class RangedReader(io.RawIOBase):
    """``readinto(buffer)`` is one :meth:`fetch` of exactly the bytes the buffer can take."""

    def __init__(self, size: int, offset: int = 0) -> None:
        super().__init__()
        self._size = size
        self._position = offset

    @abstractmethod
    def fetch(self, view: memoryview, first: int) -> None:
        """Fill ``view`` with the blob's bytes from ``first`` on, or raise."""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._size - self._position)
        if wanted <= 0:
            return 0
        self.fetch(view[:wanted], self._position)
        self._position += wanted
        return wanted

    def readall(self) -> bytes:
        """The rest of the blob in one range."""
        rest = bytearray(max(self._size - self._position, 0))
        del rest[self.readinto(rest) :]
        return bytes(rest)
