"""``retry`` with the upstream driver's semantics (monotonic clock, one last try)."""

from __future__ import annotations

import time
from collections.abc import Callable

from vmtest.errors import RequestedAssertionFailed
from vmtest.timeouts import Timeout, format_seconds, to_seconds


def retry(fn: Callable[[bool], object], timeout: Timeout = 900, *, timeout_seconds: Timeout | None = None) -> None:
    """Call ``fn(last_try)`` every second until it is truthy or ``timeout`` passes.

    After the deadline ``fn(True)`` runs once more; if that is falsy too,
    raises RequestedAssertionFailed with the elapsed time and the timeout.
    ``timeout_seconds`` is the pre-2026 keyword, still accepted.
    """
    limit = to_seconds(timeout_seconds if timeout_seconds is not None else timeout)
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if fn(False):
            return
        time.sleep(1)
    if not fn(True):
        elapsed = time.monotonic() - started
        raise RequestedAssertionFailed(
            f"action timed out after {format_seconds(elapsed)} (timeout={format_seconds(limit)})"
        )
