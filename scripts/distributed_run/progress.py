"""How the run talks: progress lines timed from the driver's start, section headers, and
``RunFailed``, the error that ends a run with its reason on the last line."""

from __future__ import annotations

import time

STARTED = time.monotonic()
"""When the driver started (its progress lines count seconds from here)."""


class RunFailed(Exception):
    """A step could not be done; the message says which and why."""


def say(message: str = "") -> None:
    """Print one progress line, prefixed with the seconds since the driver started."""
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}" if message else "", flush=True)


def section(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)
