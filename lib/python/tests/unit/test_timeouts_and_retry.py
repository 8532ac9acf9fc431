from __future__ import annotations

import io
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from vmtest.errors import PollingConditionError, RequestedAssertionFailed
from vmtest.portable.runtime.driver_log import TerminalLogger
from vmtest.portable.runtime.polling_condition import PollingCondition
from vmtest.waiting import (
    Backoff,
    Deadline,
    format_seconds,
    poll,
    retry,
    retry_or_raise,
    to_seconds,
    to_whole_seconds,
    until_deadline,
)


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


def test_retry_or_raise_replaces_only_the_timeout() -> None:
    with pytest.raises(ValueError, match="gave up after 0"):
        retry_or_raise(lambda last: False, 0, lambda timed_out: ValueError(f"gave up after {timed_out.limit:g}"))
    own = RequestedAssertionFailed("the wait's own failure")

    def fails(_last_try: bool) -> bool:
        raise own

    with pytest.raises(RequestedAssertionFailed) as raised:
        retry_or_raise(fails, 10, lambda _: AssertionError("not this"))
    assert raised.value is own, "a failure of the check itself is not a timeout"


def test_poll_without_a_last_try_and_the_deadline() -> None:
    calls: list[bool] = []
    assert not poll(lambda last: calls.append(last), Deadline(0.05), interval=0.01, last_try=False)
    assert calls and not any(calls), "no fn(True) without last_try"
    deadline = Deadline(10)
    assert 9 < deadline.remaining() <= 10 and not deadline.expired()
    assert Deadline(0).expired() and Deadline(0).remaining() == 0


def _until_deadline(condition: str, budget: float) -> tuple[str, float]:
    started = time.monotonic()
    script = until_deadline(condition, budget, Backoff(0.02, 0.05, 0.2)) + 'echo "$vmtest_met $n"'
    done = subprocess.run(["bash", "-c", "set -euo pipefail; " + script], capture_output=True, text=True, timeout=30)
    return done.stdout.strip(), time.monotonic() - started


def test_until_deadline_stops_at_the_condition_or_the_budget(tmp_path: Path) -> None:
    assert _until_deadline("true", 5)[0] == "0 1", "met at the first try"
    output, took = _until_deadline("false", 0.3)
    met, tries = output.split()
    assert met == "1" and int(tries) >= 4 and 0.25 < took < 3, "backoff steps of 20-50 ms until the budget"
    flag = tmp_path / "flag"
    threading.Timer(0.3, flag.touch).start()
    output, took = _until_deadline(f"test -e {flag}", 5)
    assert output.startswith("0 ") and took < 2


def test_a_polling_condition_whose_commands_run_the_callbacks_is_checked_once() -> None:
    # The condition runs a guest command, and every command runs the callbacks, which check
    # the active conditions again: without the guard this recursed until RecursionError.
    calls: list[str] = []
    healthy = True

    def command() -> None:
        condition.check()  # what Machine.run_callbacks does before each command
        calls.append("command")

    def backdoor_answers() -> bool:
        command()
        return healthy

    condition = PollingCondition(backdoor_answers, TerminalLogger(io.StringIO()), seconds_interval=0)
    with condition:
        command()
        assert calls == ["command", "command"]  # the condition's own command, then the script's
        healthy = False
        with pytest.raises(PollingConditionError, match="backdoor_answers"):
            command()

    def raises_something_else() -> bool:
        raise ValueError("not an assertion")

    other = PollingCondition(raises_something_else, TerminalLogger(io.StringIO()), seconds_interval=0)
    with other, pytest.raises(PollingConditionError):  # any exception is a failed condition, as upstream's
        other.check()
