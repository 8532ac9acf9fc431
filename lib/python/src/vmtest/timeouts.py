"""Timeouts as both driver generations accept them.

The NixOS test driver took ``int`` seconds until mid-2026 and ``timedelta``
since (nixpkgs #542374). Helpers accept either and convert at the edge.
"""

from __future__ import annotations

import math
from datetime import timedelta

Timeout = int | float | timedelta


def to_seconds(timeout: Timeout) -> float:
    """Return ``timeout`` in seconds; raises ValueError for negative values."""
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if seconds < 0 or math.isnan(seconds):
        raise ValueError(f"timeout must be a non-negative duration, got {timeout!r}")
    return seconds


def to_whole_seconds(timeout: Timeout) -> int:
    """Return ``timeout`` rounded up to whole seconds (what guest ``timeout(1)`` takes)."""
    return max(1, math.ceil(to_seconds(timeout)))


def format_seconds(seconds: float) -> str:
    """Format a duration for humans: ``0.42 s``, ``12.3 s`` or ``4 min 05 s``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"
