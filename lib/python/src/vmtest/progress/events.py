"""Internal: Progress events, and the board of what is running that every renderer keeps from them.

Sources (the image builder, the runtime's log sections and machines, the guest-results
follower) emit events; the events carry no time: the source (``source.Progress``) hands each
to the renderers with its clock's reading, so tests choose the times. Renderers fold the
events into a ``Board`` and describe it with the same words (``event_line``, ``Row.text``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from vmtest.waiting import format_seconds

# The scope of log sections that belong to no machine (subtests, the driver's own).
SCRIPT_SCOPE = "test script"
OUTCOME_WORDS = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP"}
# Section names can be whole shell commands: a row shows their start.
WHAT_CHARS = 100


@dataclass(frozen=True)
class Began:
    """Work ``key`` began: ``scope`` (a machine, an image) is doing ``what``; ``expected``: its likely seconds."""

    key: str
    scope: str
    what: str
    expected: float | None = None


@dataclass(frozen=True)
class Stepped:
    """Work ``key`` is now at ``step`` (``""``: still at the one before), ``done`` just ended (or ``""``);
    ``remaining``: its likely seconds left."""

    key: str
    step: str
    done: str = ""
    remaining: float | None = None


@dataclass(frozen=True)
class Ended:
    """Work ``key`` ended, however it ended."""

    key: str


@dataclass(frozen=True)
class MachineStarted:
    """Machine ``scope`` was started (its QEMU launched)."""

    scope: str


@dataclass(frozen=True)
class MachineStopped:
    """Machine ``scope`` is off (powered off or released)."""

    scope: str


@dataclass(frozen=True)
class GuestResult:
    """One piece of long guest work ended (a browser test): ``outcome`` is passed, failed, error or skipped."""

    scope: str
    name: str
    outcome: str
    seconds: float
    message: str = ""

    def line(self) -> str:
        """``PASS name (1.23 s)``, and the failure's first line after a colon."""
        word = OUTCOME_WORDS.get(self.outcome, self.outcome.upper())
        return f"{word} {self.name} ({format_seconds(self.seconds)})" + (f": {self.message}" if self.message else "")

    def redacted(self, redact: Callable[[str], str]) -> GuestResult:
        """This result with ``redact`` applied to the guest's words (the name and the message)."""
        return dataclasses.replace(self, name=redact(self.name), message=redact(self.message))


@dataclass(frozen=True)
class Heartbeat:
    """Time passes (the source's ticker, about once a second); a renderer may say what is still running."""


Event = Began | Stepped | Ended | MachineStarted | MachineStopped | GuestResult | Heartbeat
Emit = Callable[[Event], None]


def _short(text: str) -> str:
    return text if len(text) <= WHAT_CHARS else text[: WHAT_CHARS - 1] + "…"


@dataclass
class Activity:
    """Open work on the board."""

    scope: str
    what: str
    began: float
    step: str = ""
    done: str = ""
    expected_end: float | None = None


@dataclass(frozen=True)
class Row:
    """What one scope is doing at ``now``: its innermost open work, for how long, and what is left."""

    scope: str
    up: float | None  # seconds since the machine started; None for an image
    what: str  # "" for a machine with no open work
    step: str  # what it is at now, or ""
    done: str  # what it finished last, or ""
    running: float  # seconds the innermost work has run
    left: float | None  # seconds likely left (negative: over the expectation)
    tally: str

    def left_text(self) -> str:
        """``~12.0 s left``, ``1.5 s over the last build``, or ``""``."""
        if self.left is None:
            return ""
        if self.left >= 0:
            return f"~{format_seconds(self.left)} left"
        return f"{format_seconds(-self.left)} over the last time"

    def steps(self) -> str:
        """``, now kernel`` or ``, kernel took 3.1 s`` for work with steps, else ``""``."""
        return f", now {self.step}" if self.step else f", {self.done}" if self.done else ""

    def doing(self) -> str:
        """What the work is, and its step: ``building (trixie/amd64), now kernel``."""
        return _short(self.what) + self.steps()

    def text(self) -> str:
        """The row as one line: ``client (up 2 min 05 s): waiting for … for 1 min 30 s; 3 passed``."""
        head = self.scope + (f" (up {format_seconds(self.up)})" if self.up is not None else "")
        if not self.what:  # a machine with no open work
            return head + (f"; {self.tally}" if self.tally else "")
        extra = "; ".join(part for part in (self.left_text(), self.tally) if part)
        return (f"{head}: {_short(self.what)} for {format_seconds(self.running)}{self.steps()}"
                + (f"; {extra}" if extra else ""))


@dataclass
class Board:
    """What is running now, folded from events: open work, started machines, guest results per scope."""

    open: dict[str, Activity] = field(default_factory=dict)
    machines: dict[str, float] = field(default_factory=dict)
    tallies: dict[str, Counter[str]] = field(default_factory=dict)

    def apply(self, event: Event, now: float) -> None:
        """Take ``event``, which happened at ``now``."""
        if isinstance(event, Began):
            expected_end = now + event.expected if event.expected is not None else None
            self.open[event.key] = Activity(event.scope, event.what, now, expected_end=expected_end)
        elif isinstance(event, Stepped) and event.key in self.open:
            activity = self.open[event.key]
            activity.step, activity.done = event.step, event.done
            if event.remaining is not None:
                activity.expected_end = now + event.remaining
        elif isinstance(event, Ended):
            self.open.pop(event.key, None)
        elif isinstance(event, MachineStarted):
            self.machines[event.scope] = now
        elif isinstance(event, MachineStopped):
            self.machines.pop(event.scope, None)
        elif isinstance(event, GuestResult):
            self.tallies.setdefault(event.scope, Counter())[event.outcome] += 1

    def activity(self, key: str) -> Activity | None:
        """The open work ``key``, if any."""
        return self.open.get(key)

    def tally(self, scope: str) -> str:
        """``3 passed, 1 failed`` for ``scope``'s guest results so far, or ``""``."""
        counts = self.tallies.get(scope)
        return ", ".join(f"{count} {outcome}" for outcome, count in counts.items()) if counts else ""

    def rows(self, now: float) -> list[Row]:
        """A row per scope with open work or a running machine, the innermost (latest) work shown."""
        latest: dict[str, Activity] = {}
        for activity in self.open.values():
            if activity.scope not in latest or activity.began >= latest[activity.scope].began:
                latest[activity.scope] = activity
        scopes = list(dict.fromkeys([*self.machines, *latest]))
        rows = []
        for scope in scopes:
            up = now - self.machines[scope] if scope in self.machines else None
            current = latest.get(scope)
            if current is None:
                rows.append(Row(scope, up, "", "", "", 0.0, None, self.tally(scope)))
                continue
            left = current.expected_end - now if current.expected_end is not None else None
            rows.append(Row(scope, up, current.what, current.step, current.done, now - current.began, left,
                            self.tally(scope)))
        return rows


def event_line(event: Event, board: Board, now: float) -> str | None:
    """The line a renderer prints for ``event`` (after the board took it), or None for events only the
    board shows: a step with the work's time and what is left, or a guest result."""
    if isinstance(event, GuestResult):
        return f"{event.scope}: {event.line()}"
    if isinstance(event, Stepped):
        activity = board.activity(event.key)
        if activity is None:
            return None
        row = Row(activity.scope, None, activity.what, event.step, event.done, now - activity.began,
                  activity.expected_end - now if activity.expected_end is not None else None, "")
        said = "; now ".join(part for part in (event.done, event.step) if part)
        left = f", {row.left_text()}" if row.left_text() else ""
        return f"{activity.scope}: {said} ({format_seconds(row.running)} in{left})"
    return None


def heartbeat_line(board: Board, now: float) -> str | None:
    """``still running: <row> | <row>``, or None when nothing runs."""
    rows = board.rows(now)
    return "still running: " + " | ".join(row.text() for row in rows) if rows else None
