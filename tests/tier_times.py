"""A pytest plugin (loaded by ``conftest.py``): how long each tier took, printed at the end of a run.

With pytest-xdist the workers' reports reach the controller, which adds them up: per tier, the
tests run, the seconds spent in them (setup, call and teardown, summed over the workers) and
the wall time from the start of its first test to the end of its last (tiers run side by side,
so these spans overlap). ``TIER_TIMES_FILE=path`` also writes those lines to ``path``, for
``scripts/test.sh`` to repeat in its closing summary; ``TIER_TIMES_LABEL`` names the run there.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path

import pytest

TIERS = ("unit", "integration", "system")


def tier_of(nodeid: str) -> str | None:
    """The tier of a test id such as ``tests/unit/test_x.py::test_y`` (None outside the tiers)."""
    parts = nodeid.split("::", 1)[0].split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" and parts[1] in TIERS else None


class TierTimes:
    def __init__(self) -> None:
        self.tests: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        tier = tier_of(report.nodeid)
        if tier is None:
            return
        self.seconds[tier] += report.duration
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.tests[tier] += 1
        self.first[tier] = min(self.first.get(tier, report.start), report.start)
        self.last[tier] = max(self.last.get(tier, report.stop), report.stop)

    def lines(self) -> list[str]:
        label = os.environ.get("TIER_TIMES_LABEL", "")
        return [
            f"{label + tier:<20} {self.tests[tier]:4d} tests {self.last[tier] - self.first[tier]:6.0f} s wall"
            f" ({self.seconds[tier]:.0f} s in its tests)"
            for tier in TIERS
            if tier in self.first
        ]

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        lines = self.lines()
        if not lines:
            return
        terminalreporter.write_sep("-", "time per tier")
        for line in lines:
            terminalreporter.write_line(line)
        out = os.environ.get("TIER_TIMES_FILE")
        if out:
            with Path(out).open("a") as file:
                file.writelines(f"{line}\n" for line in lines)


def pytest_configure(config: pytest.Config) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ:  # the controller (or a run without xdist) adds up
        config.pluginmanager.register(TierTimes(), "tier_times_report")
