"""Progress lines for long uploads: every 10 % or every 10 s, whichever comes first."""

from __future__ import annotations

import logging
import time

from airflow_ecr_layers.core.limits import MiB


class ProgressLog:
    def __init__(
        self,
        name: str,
        total: int,
        logger: logging.Logger,
        *,
        every_percent: float = 10.0,
        every_seconds: float = 10.0,
    ) -> None:
        self.name = name
        self.total = total
        self.log = logger
        self.every_percent = every_percent
        self.every_seconds = every_seconds
        self.started = time.monotonic()
        self._last_time = self.started
        self._last_percent = 0.0

    def rate(self, done: int) -> float:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return done / MiB / elapsed

    def update(self, done: int) -> None:
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
            "%s: %d/%d bytes (%.0f%%) at %.1f MiB/s, ETA %.0fs",
            self.name,
            done,
            self.total,
            percent,
            rate,
            eta,
        )
