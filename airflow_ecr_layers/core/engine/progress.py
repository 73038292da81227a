"""Progress of uploads: log lines for long ones, and events for whoever draws bars.

:class:`ProgressLog` is what the engine keeps per blob it streams: every byte count
ECR confirms goes through :meth:`ProgressLog.update`, which logs a line every 10 % or
every 10 s (whichever comes first) and tells the engine's :class:`ProgressListener`,
if it has one (the CLI's bars, :mod:`airflow_ecr_layers.progress_bars`). The engine
counts the bytes; listeners only show them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Protocol

from airflow_ecr_layers.core.limits import MiB


class ProgressListener(Protocol):
    """What hears of a push's progress. Called from the threads that upload layers."""

    def planned(self, sizes: Mapping[str, int]) -> None:
        """The blobs a push is about to upload, by name, with their sizes."""

    def advanced(self, name: str, done: int, total: int) -> None:
        """``done`` of blob ``name``'s ``total`` bytes are in ECR (a restart may move it back)."""


class ProgressLog:
    def __init__(
        self,
        name: str,
        total: int,
        logger: logging.Logger,
        *,
        every_percent: float = 10.0,
        every_seconds: float = 10.0,
        listener: ProgressListener | None = None,
    ) -> None:
        self.name = name
        self.total = total
        self.log = logger
        self.every_percent = every_percent
        self.every_seconds = every_seconds
        self.listener = listener
        self.started = time.monotonic()
        self._last_time = self.started
        self._last_percent = 0.0

    def rate(self, done: int) -> float:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return done / MiB / elapsed

    def notify(self, done: int) -> None:
        """Tell the listener only (no log line): the upload starts with ``done`` bytes already in
        ECR (a resumed one), or a resume or restart moved back to ``done``."""
        if self.listener is not None:
            self.listener.advanced(self.name, done, self.total)

    def update(self, done: int) -> None:
        if self.listener is not None:
            self.listener.advanced(self.name, done, self.total)
        now = time.monotonic()
        percent = 100.0 * done / self.total if self.total else 100.0
        if done < self.total and (
            percent - self._last_percent < self.every_percent and now - self._last_time < self.every_seconds
        ):
            return
        self._last_time, self._last_percent = now, percent
        rate = self.rate(done)
        eta = (self.total - done) / MiB / rate if rate > 0 else float("inf")
        self.log.info(
            "upload %s: %d/%d bytes (%.0f%%) at %.1f MiB/s, ETA %.0fs",
            self.name,
            done,
            self.total,
            percent,
            rate,
            eta,
        )
