"""The CLI's progress bars follow the engine's byte counts: per layer, the whole push, restarts."""

from __future__ import annotations

import io
import logging
import re

import pytest

from airflow_ecr_layers.core.engine.progress import ProgressLog
from airflow_ecr_layers.progress_bars import ProgressBars, short_name

MiB = 1024 * 1024


def test_the_total_is_the_sum_of_the_layers_and_follows_a_restart() -> None:
    out = io.StringIO()
    bars = ProgressBars(out)
    bars.planned({"s3://b/a.bin": 10 * MiB, "s3://b/b.bin": 6 * MiB})
    assert (bars.total.total, bars.total.n) == (16 * MiB, 0)
    bars.advanced("s3://b/a.bin", 0, 10 * MiB)
    bars.advanced("s3://b/a.bin", 5 * MiB, 10 * MiB)
    bars.advanced("s3://b/b.bin", 6 * MiB, 6 * MiB)  # done: its bar is closed
    assert bars.total.n == 11 * MiB
    bars.advanced("s3://b/a.bin", 0, 10 * MiB)  # the upload expired: a restart from byte 0
    assert bars.total.n == 6 * MiB
    bars.advanced("s3://b/a.bin", 10 * MiB, 10 * MiB)
    assert bars.total.n == bars.total.total == 16 * MiB
    bars.advanced("<OCI empty config>", 2, 2)  # not one of the push's layers: no bar, not counted
    assert bars.total.n == 16 * MiB
    bars.close()
    screen = out.getvalue()
    assert "total (2 layers): 100%" in screen and "16.0M/16.0M" in screen
    assert "s3://b/a.bin:   0%" in screen and "<OCI empty config>" not in screen


def test_a_layer_that_finishes_within_the_redraw_interval_still_shows_its_finished_bar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tqdm draws at most every ``mininterval``: a clock that never moves stands in for a layer
    sent faster than that, and its 100% must still be drawn before the bar is cleared."""
    import tqdm.std

    monkeypatch.setattr(tqdm.std, "time", lambda: 1_000.0)
    out = io.StringIO()
    bars = ProgressBars(out)
    bars.planned({"s3://b/a.bin": 10 * MiB})
    bars.advanced("s3://b/a.bin", 0, 10 * MiB)
    bars.advanced("s3://b/a.bin", 10 * MiB, 10 * MiB)
    bars.close()
    assert re.search(r"s3://b/a\.bin: 100%\|[^\r\n]*\| 10\.0M/10\.0M", out.getvalue())


def test_the_engine_progress_log_tells_its_listener_every_count_and_logs_every_ten_percent() -> None:
    heard: list[tuple[str, int, int]] = []

    class Listener:
        def planned(self, sizes: object) -> None:
            raise AssertionError("the engine's ProgressLog does not plan")

        def advanced(self, name: str, done: int, total: int) -> None:
            heard.append((name, done, total))

    logger = logging.getLogger("test_progress_bars")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        progress = ProgressLog("s3://b/a.bin", 100, logger, listener=Listener())
        progress.notify(0)
        for done in (3, 6, 12, 100):
            progress.update(done)
    finally:
        logger.removeHandler(handler)
    assert heard == [("s3://b/a.bin", done, 100) for done in (0, 3, 6, 12, 100)]
    assert [re.search(r"(\d+/\d+) bytes", r.getMessage()).group(1) for r in records] == ["12/100", "100/100"]  # type: ignore[union-attr]


def test_short_names_keep_the_end() -> None:
    assert short_name("file:///tmp/a.bin") == "file:///tmp/a.bin"
    name = "s3://bucket/" + "x" * 40 + "/model.safetensors"
    assert short_name(name) == "…" + name[-31:] and short_name(name).endswith("/model.safetensors")
    assert len(short_name(name)) == 32
