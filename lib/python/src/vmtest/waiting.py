"""The one way to wait: durations, clocks, sleeps, backoff, deadlines and the timeout message.

Guest side, bash that never forks while it waits (under TCG a process start costs
0.1-0.3 s, which would be most of the readiness latency): ``vmtest_clock``,
``vmtest_sleep``, the run-until-deadline loop, the once-a-second loop of the Machine
API's waits, and the loop that looks again when something wakes it. Host side,
``Deadline``, ``poll`` and upstream's ``retry``. Every wait in vmtest, helpers and
portable runtime alike, is a thin caller of this module.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

# Re-exported: WaitTimedOut was defined here before vmtest.errors held every failure.
from vmtest.errors import WaitTimedOut as WaitTimedOut

__all__ = [
    "Backoff", "Deadline", "Timeout", "WaitTimedOut", "format_seconds", "gave_up", "poll", "retry",
    "retry_or_raise", "timed_out", "to_seconds", "to_whole_seconds"
]

# -- durations: what both driver generations take (int seconds until mid-2026, timedelta since,
# nixpkgs #542374); helpers accept either and convert at the edge.
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


# Bash: vmtest_clock sets $vmtest_now to the milliseconds since the epoch, without forking.
CLOCK_SHELL = "vmtest_clock() { vmtest_now=$(( ${EPOCHREALTIME/[.,]/} / 1000 )); }; "
# Bash: $vmtest_sfd, a pipe nobody writes to; ``read -t`` on it is a sleep that starts no process.
SLEEP_FD_SHELL = "exec {vmtest_sfd}<> <(:); "


@dataclass(frozen=True)
class Backoff:
    """Polling intervals: ``first`` doubling up to ``maximum``, plus up to ``jitter`` of each."""

    first: float = 0.05
    maximum: float = 0.1
    jitter: float = 0.2

    def shell(self) -> str:
        """Bash that defines ``vmtest_sleep`` (one backoff step per call, state in $vmtest_ms) and
        ``vmtest_clock`` (milliseconds into $vmtest_now); neither forks."""
        return (
            f"vmtest_ms={max(1, int(self.first * 1000))}; " + SLEEP_FD_SHELL
            + CLOCK_SHELL
            + "vmtest_sleep() { "
            f"local extra=$(( RANDOM % (vmtest_ms * {int(self.jitter * 100)} / 100 + 1) )); "
            "local total=$(( vmtest_ms + extra )) pause; "
            "printf -v pause '%d.%03d' $(( total / 1000 )) $(( total % 1000 )); "
            'read -r -t "$pause" -u "$vmtest_sfd" || true; '
            f"vmtest_ms=$(( vmtest_ms * 2 > {int(self.maximum * 1000)} ? {int(self.maximum * 1000)} "
            ": vmtest_ms * 2 )); }; "
        )


def until_deadline(condition: str, budget: float, backoff: Backoff, *, prepare: str = "") -> str:
    """Bash that tries ``condition`` (a command list) with ``backoff`` until it holds or ``budget`` s pass.

    Afterwards ``$n`` is the number of tries and ``$vmtest_met`` is 0 if the condition
    held, else 1; ``prepare`` runs once, after the deadline is set.
    """
    return (
        backoff.shell()
        + f"vmtest_clock; vmtest_end=$(( vmtest_now + {int(budget * 1000)} )); n=0; vmtest_met=1; "
        + prepare
        + f"while :; do n=$((n + 1)); if {condition}; then vmtest_met=0; break; fi; "
        'vmtest_clock; [ "$vmtest_now" -ge "$vmtest_end" ] && break; vmtest_sleep; done; '
    )


def once_a_second(command: str, want_success: bool, attempts: int) -> str:
    """Bash that runs ``command`` up to ``attempts`` times a second apart (a fork-free sleep),
    exiting 0 at the first attempt whose success is ``want_success``, else 1; prints the
    last attempt's output."""
    stop = "" if want_success else "!"
    return (
        f"vmtest_check() {{\n{command}\n}}; " + SLEEP_FD_SHELL + "vmtest_out=''; "
        f"for (( vmtest_i = 0; vmtest_i < {attempts}; vmtest_i++ )); do "
        "(( vmtest_i == 0 )) || read -r -t 1 -u \"$vmtest_sfd\" || true; "
        f"if {stop} vmtest_out=$(vmtest_check 2>&1); then printf '%s' \"$vmtest_out\"; exit 0; fi; "
        "done; printf '%s' \"$vmtest_out\"; exit 1"
    )


def until_changed(observe: str, previous: str, within: float, wake: str, maximum: float) -> str:
    """Bash that prints ``observe``'s output once it differs from ``previous``, or after ``within`` s.

    It looks again whenever ``wake`` (a command run as a coprocess, e.g. ``journalctl -f``)
    prints a line (a burst counts once), and every ``maximum`` s regardless; if ``wake``
    is gone, it just waits. Exits 3 with the output when ``observe`` fails.
    """
    return (
        f"previous={shlex.quote(previous)}; " + CLOCK_SHELL
        + f"vmtest_clock; vmtest_end=$(( vmtest_now + {int(within * 1000)} )); exec {{vmtest_idle}}<> <(:); "
        + f"coproc vmtest_journal {{ exec {wake} 2>/dev/null; }}; "
        # On every way out (a failed observation included), no coprocess left behind.
        + """trap '[ -z "${vmtest_journal_PID:-}" ] || kill "$vmtest_journal_PID" 2>/dev/null || true' EXIT; """
        + f"while :; do state=$({observe} 2>&1) || {{ printf '%s' \"$state\"; exit 3; }}; "
        + '[ "$state" != "$previous" ] && break; vmtest_clock; [ "$vmtest_now" -ge "$vmtest_end" ] && break; '
        + f'vmtest_rc=0; read -r -t {maximum} -u "${{vmtest_journal[0]:-$vmtest_idle}}" _ || vmtest_rc=$?; '
        + f'if (( vmtest_rc > 0 && vmtest_rc <= 128 )); then read -r -t {maximum} -u "$vmtest_idle" _ || true; '
        + 'else while read -r -t 0.05 -u "${vmtest_journal[0]:-$vmtest_idle}" _; do :; done; fi; done; '
        + "printf '%s' \"$state\""
    )


@dataclass
class Deadline:
    """A host-side budget of ``limit`` seconds on the monotonic clock, started at creation."""

    limit: float
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, timeout: Timeout) -> Deadline:
        """A deadline ``timeout`` (int, float or timedelta) from now; raises ValueError if negative."""
        return cls(to_seconds(timeout))

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self.started

    def remaining(self) -> float:
        """Seconds left, never below 0."""
        return max(0.0, self.limit - self.elapsed())

    def expired(self) -> bool:
        """Whether the budget is spent."""
        return self.elapsed() >= self.limit

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, never past the deadline."""
        time.sleep(min(seconds, self.remaining()))


def poll(check: Callable[[bool], object], deadline: Deadline, *, interval: float = 1.0,
         last_try: bool = True) -> bool:
    """Call ``check(last_try)`` every ``interval`` s until it is truthy or ``deadline`` passes.

    With ``last_try``, ``check(True)`` runs once more after the deadline (upstream's
    ``retry``). Returns whether ``check`` succeeded.
    """
    while not deadline.expired():
        if check(False):
            return True
        time.sleep(interval)
    return bool(last_try and check(True))


def retry(fn: Callable[[bool], object], timeout: Timeout | None = 900, timeout_seconds: Timeout | None = None) -> None:
    """Call ``fn(last_try)`` every second until it is truthy or ``timeout`` passes (upstream's semantics).

    After the deadline ``fn(True)`` runs once more; if that is falsy too, raises
    WaitTimedOut (a RequestedAssertionFailed) with the elapsed time and the timeout.
    Takes every revision's call: ``retry(fn, t)``, ``timeout=`` (nixos-25.11, and
    nixos-unstable's preferred keyword) and ``timeout_seconds=`` (nixos-26.05; deprecated
    in nixos-unstable, which puts it first); int, float or timedelta. Neither given (both None):
    900 seconds, upstream's 15 minutes.
    """
    given = timeout_seconds if timeout_seconds is not None else timeout
    deadline = Deadline.of(900 if given is None else given)
    if not poll(fn, deadline):
        raise WaitTimedOut(deadline.elapsed(), deadline.limit)


def retry_or_raise(fn: Callable[[bool], object], timeout: Timeout,
                   failure: Callable[[WaitTimedOut], AssertionError]) -> None:
    """``retry``, raising ``failure(timed_out)`` instead of WaitTimedOut; other exceptions pass through."""
    try:
        retry(fn, timeout)
    except WaitTimedOut as timed_out:
        raise failure(timed_out) from None


def gave_up(name: str, what: str, elapsed: float, limit: float, detail: str = "") -> str:
    """The message of a wait that gave up: ``{name}: {what} after {elapsed} (timeout {limit}, {detail})``;
    ``what`` says what did not happen (``unit chain a -> b not up``), ``detail`` goes inside the
    parentheses (e.g. the attempt count). Every wait's timeout message is one of these."""
    extra = f", {detail}" if detail else ""
    return f"{name}: {what} after {format_seconds(elapsed)} (timeout {format_seconds(limit)}{extra})"


def timed_out(name: str, description: str, elapsed: float, limit: float, detail: str = "") -> str:
    """The timeout message of a wait for ``description``: machine, target, elapsed and timeout."""
    return gave_up(name, f"timed out waiting for {description}", elapsed, limit, detail)
