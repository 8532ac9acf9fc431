from __future__ import annotations

import time
from datetime import timedelta

import pytest

from vmtest.errors import RequestedAssertionFailed
from vmtest.timeouts import format_seconds, to_seconds, to_whole_seconds
from vmtest.waiting import retry


def test_int_float_and_timedelta_are_accepted() -> None:
    assert to_seconds(5) == 5.0
    assert to_seconds(2.5) == 2.5
    assert to_seconds(timedelta(minutes=2)) == 120.0
    assert to_whole_seconds(0.2) == 1 and to_whole_seconds(timedelta(seconds=2.1)) == 3
    with pytest.raises(ValueError, match="non-negative"):
        to_seconds(-1)


def test_format_seconds() -> None:
    assert format_seconds(0.4213) == "0.42 s"
    assert format_seconds(12.34) == "12.3 s"
    assert format_seconds(245) == "4 min 05 s"


def test_retry_returns_on_success_and_gives_a_last_try() -> None:
    calls: list[bool] = []
    retry(lambda last: calls.append(last) or len(calls) == 2, timeout=10)
    assert calls == [False, False]
    calls.clear()
    retry(lambda last: calls.append(last) or last, timeout=0)
    assert calls == [True], "after the deadline fn(True) runs once more"


def test_retry_times_out_with_elapsed_and_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(RequestedAssertionFailed, match=r"action timed out after 1\.\d+ s \(timeout=1\.00 s\)"):
        retry(lambda last: False, timeout=timedelta(seconds=1))
    assert time.monotonic() - started < 3
    with pytest.raises(RequestedAssertionFailed):
        retry(lambda last: False, timeout_seconds=0)
