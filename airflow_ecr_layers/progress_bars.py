"""The CLI's progress bars on a terminal: one per layer being uploaded, one for the whole push.

:class:`ProgressBars` is a :class:`~airflow_ecr_layers.core.engine.progress.ProgressListener`:
the engine counts the bytes ECR confirms and tells it; it only draws them, with tqdm
(bytes, rate, ETA), on stderr. A layer's bar shows while it uploads and is cleared
when it is done; the whole push's bar stays. :func:`bars_and_logs` keeps log lines
(``-v``) from cutting through the bars.

tqdm is imported only here, and this module only when stderr is a terminal.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import IO, Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

NAME_WIDTH = 32
"""Characters of a layer's name shown before its bar (the end of the name: the file)."""


def short_name(name: str, width: int = NAME_WIDTH) -> str:
    """The last ``width`` characters of ``name``, with ``…`` where it was cut."""
    return name if len(name) <= width else "…" + name[-(width - 1) :]


class ProgressBars:
    """tqdm bars for a push: the engine's :class:`~airflow_ecr_layers.core.engine.progress.ProgressListener`."""

    def __init__(self, file: IO[str]) -> None:
        self.file = file
        self._lock = threading.Lock()
        self._planned: dict[str, int] = {}
        self._layers: dict[str, Any] = {}
        self._done: dict[str, int] = {}
        self.total: Any = None
        """The whole push's bar (a tqdm), once a push has said what it will upload."""

    def _bar(self, description: str, total: int, *, leave: bool) -> Any:
        return tqdm(
            total=total,
            desc=description,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=self.file,
            leave=leave,
            dynamic_ncols=True,
            miniters=1,
        )

    def planned(self, sizes: Mapping[str, int]) -> None:
        with self._lock:
            self._planned.update(sizes)
            total = sum(self._planned.values())
            count = len(self._planned)
            description = f"total ({count} layer{'s' if count > 1 else ''})"
            if self.total is None:
                self.total = self._bar(description, total, leave=True)
            else:
                self.total.total = total
                self.total.set_description(description, refresh=True)

    def advanced(self, name: str, done: int, total: int) -> None:
        """Move ``name``'s bar (and the total) to ``done``; blobs outside the plan (an empty
        config) get no bar."""
        with self._lock:
            if name not in self._planned:
                return
            bar = self._layers.get(name)
            if bar is None:
                bar = self._layers[name] = self._bar(short_name(name), total, leave=False)
            bar.update(done - bar.n)
            self.total.update(done - self._done.get(name, 0))
            self._done[name] = done
            if done >= total:  # a later restart of this blob gets a new bar
                # update() draws at most every mininterval: draw the finished bar once, whatever the clock says
                bar.refresh()
                self._layers.pop(name).close()

    def close(self) -> None:
        with self._lock:
            for bar in self._layers.values():
                bar.close()
            self._layers.clear()
            if self.total is not None:
                self.total.close()


@contextlib.contextmanager
def bars_and_logs(file: IO[str]) -> Iterator[ProgressBars]:
    """Progress bars on ``file`` for the block's push; log lines are written above them."""
    bars = ProgressBars(file)
    try:
        with logging_redirect_tqdm(tqdm_class=tqdm):
            yield bars
    finally:
        bars.close()
