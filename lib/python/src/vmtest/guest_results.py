"""Follow long detached guest work: each result as the guest writes it, until the work says it is done.

The work (started detached, e.g. ``systemctl start --no-block``) appends one JSON object a
line to a results file as each piece ends (``{"name", "outcome", "seconds", "message"}``;
``e2e-test/client/result_stream.py`` writes them for pytest) and writes its done file last.
``follow_results`` waits for the done file through the wait engine (``retry_or_raise``); each
look is a guest-side wait (``until_changed``) that returns as soon as a line is appended
(``tail -F`` wakes it) or the done file appears, so every finished line reaches the host
while the work still runs, once and in order; a line still being written waits for its end.

Only the Machine API is used, so it runs under the NixOS driver as well: there each result
is a line of the driver's log (``machine.log``); on the portable runtime it goes to the
progress display (``show_progress``).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from vmtest.errors import DetachedWorkStopped as DetachedWorkStopped  # its old home, for one release
from vmtest.errors import RequestedAssertionFailed
from vmtest.machine_api import Machine, run
from vmtest.progress.events import Event, GuestResult
from vmtest.waiting import Deadline, Timeout, WaitTimedOut, retry_or_raise, timed_out, until_changed

__all__ = [
    "DetachedWorkStopped", "Followed", "follow_results"
]

# Each look waits in the guest at most this long before going back to the host.
SLICE_SECONDS = 10.0
# ...and looks again at least this often when nothing woke it (the done file, the liveness check).
RELOOK_SECONDS = 5.0
# Ends what the guest prints, so that a line still being written (no newline yet) shows as one.
_END = "<vmtest-end>"


@runtime_checkable
class _ShowsProgress(Protocol):
    def show_progress(self, event: Event) -> None: ...


@dataclass
class Followed:
    """What following the work saw: every result in order, and lines that were no result."""

    results: list[GuestResult] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def parse_result(scope: str, line: str) -> GuestResult | None:
    """The result a results-file line holds, or None if it holds none."""
    try:
        data = json.loads(line)
        return GuestResult(scope, str(data["name"]), str(data["outcome"]), float(data.get("seconds", 0.0)),
                           str(data.get("message") or "").split("\n", 1)[0])
    except (ValueError, KeyError, TypeError):
        return None


def look_command(results: str, done: str, alive: str | None, consumed: int, previous: str, within: float) -> str:
    """Bash that prints ``done``, ``running`` or ``stopped``, then the results file from line
    ``consumed + 1`` on, then the end marker, once that differs from ``previous`` or after ``within`` s."""
    done_q, results_q = shlex.quote(done), shlex.quote(results)
    running = (f"elif {{ {alive}; }} >/dev/null 2>&1; then echo running; else echo stopped; fi" if alive
               else "else echo running; fi")
    observe = (f"{{ if test -e {done_q}; then echo done; {running}; "
               f"tail -n +{consumed + 1} {results_q} 2>/dev/null || true; printf '%s' {shlex.quote(_END)}; }}")
    wake = f"tail -n 0 -q -F {results_q} {done_q}"
    # It reads the clock between looks only: a relook longer than ``within`` would overrun it.
    return until_changed(observe, previous, within, wake, min(RELOOK_SECONDS, within))


@dataclass(frozen=True)
class Look:
    """One look's answer: the work's state, its finished new lines, and the line still being written."""

    state: str
    lines: list[str]
    partial: str

    @property
    def unchanged(self) -> str:
        """What the next look prints if nothing changes (once ``lines`` are consumed)."""
        return f"{self.state}\n{self.partial}{_END}"


def parse_look(output: str) -> Look | None:
    """A look's output as a Look, or None if it did not end (the guest command was cut short)."""
    if not output.endswith(_END):
        return None
    state, _, text = output[: -len(_END)].partition("\n")
    *lines, partial = text.split("\n")
    return Look(state, lines, partial)


def _announcer(machine: Machine, redact: Callable[[str], str]) -> Callable[[GuestResult], None]:
    if isinstance(machine, _ShowsProgress):
        return machine.show_progress  # the portable runtime redacts what it shows
    return lambda result: machine.log(redact(result.line()))


def follow_results(machine: Machine, results: str, done: str, *, timeout: Timeout = 1800,
                   alive: str | None = None, slice_seconds: float = SLICE_SECONDS,
                   redact: Callable[[str], str] = str) -> Followed:
    """Wait until guest file ``done`` exists, announcing each line the work appends to ``results``.

    Under the NixOS driver each result is a ``machine.log`` line, passed through ``redact``
    first (e.g. ``Redactor.redact``).

    ``alive`` (a guest command) must succeed while the work runs: when it fails on two looks
    in a row and ``done`` is still missing, DetachedWorkStopped is raised. Raises
    RequestedAssertionFailed after ``timeout``. Returns every result in order.
    """
    deadline = Deadline.of(timeout)
    followed = Followed()
    announce = _announcer(machine, redact)
    consumed = 0
    previous = ""
    stopped_looks = 0

    def take(lines: list[str]) -> None:
        for line in lines:
            result = parse_result(machine.name, line)
            if result is None:
                followed.unreadable.append(line)
                machine.log(redact(f"{results}: not a result line: {line[:200]!r}"))
                continue
            followed.results.append(result)
            announce(result)

    def look(_last_try: bool) -> bool:
        nonlocal consumed, previous, stopped_looks
        within = max(1.0, min(slice_seconds, deadline.remaining()))
        _, output = run(machine, look_command(results, done, alive, consumed, previous, within), within + 60)
        answer = parse_look(output)
        if answer is None:
            return False
        take(answer.lines)
        consumed += len(answer.lines)
        previous = answer.unchanged
        if answer.state == "done":
            if answer.partial:
                take([answer.partial])  # the work ended without the newline
            return True
        stopped_looks = stopped_looks + 1 if answer.state == "stopped" else 0
        if stopped_looks >= 2:
            raise DetachedWorkStopped(
                f"{machine.name}: the work writing {results} stopped without writing {done} "
                f"(`{alive}` failed twice) after {deadline.elapsed():.1f} s; {len(followed.results)} result(s) so far"
            )
        return False

    def never_done(error: WaitTimedOut) -> RequestedAssertionFailed:
        return RequestedAssertionFailed(
            timed_out(machine.name, f"file {done}", deadline.elapsed(), deadline.limit,
                      f"{len(followed.results)} result(s) in {results} so far")
        )

    with machine.nested(f"waiting for file {done}, following {results}"):
        retry_or_raise(look, deadline.limit, never_done)
    return followed
