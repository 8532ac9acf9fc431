"""pytest plugin: one JSON line per finished test, appended to $E2E_RESULTS as each test ends.

``{"name": nodeid, "outcome": "passed|failed|error|skipped", "seconds": …, "message": first line}``:
the host follows the file while the tests run (``vmtest.guest_results.follow_results``), so
each result is on the host's terminal when its test ends. Without E2E_RESULTS it does nothing
(the runner sets it for the first run only, not for the traced re-run of the failed tests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def _message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        text = str(crash.message)
    elif isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        text = str(report.longrepr[2])
    else:
        text = str(report.longrepr or "")
    return text.strip().split("\n", 1)[0][:300]


def summary(nodeid: str, reports: list[pytest.TestReport]) -> dict[str, object]:
    """One test's line from its setup, call and teardown reports."""
    failed = next((report for report in reports if report.failed), None)
    skipped = next((report for report in reports if report.skipped), None)
    if failed is not None:
        outcome, cause = ("failed" if failed.when == "call" else "error"), failed
    elif skipped is not None:
        outcome, cause = "skipped", skipped
    else:
        outcome, cause = "passed", None
    return {"name": nodeid, "outcome": outcome, "seconds": round(sum(report.duration for report in reports), 3),
            "message": _message(cause) if cause is not None else ""}


class ResultStream:
    """Collects each test's reports and appends its line when the test is finished."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reports: dict[str, list[pytest.TestReport]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.setdefault(report.nodeid, []).append(report)

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        line = json.dumps(summary(nodeid, self.reports.pop(nodeid, [])))
        # One write of a whole line, flushed at once: the host reads the file while it grows.
        with self.path.open("a") as results:
            results.write(line + "\n")


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get("E2E_RESULTS")
    if path:
        config.pluginmanager.register(ResultStream(Path(path)), "e2e-result-stream")
