"""A build's progress from its log: the step being run, and the time left by the last build of the recipe.

The builder stamps every line of the build log with the seconds since the build started
(``[   12.3s] …``). Two kinds of line mark progress: mmdebstrap's phases (``I: downloading
packages with apt...``), each the start of one, and ``vmtest-step: LABEL took N s``
(``steps.step_line``: the customize hook's steps and the builder's own last ones), each the
end of one. ``BuildWatcher`` turns the marks of a running build into progress events, with
the time left read from the same marks in the newest complete log of the recipe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vmtest.progress.events import Began, Emit, Ended, Stepped

_STAMPED = re.compile(r"^\[ *([0-9.]+)s\] (.*)$")
_STEP = re.compile(r"^vmtest-step: (.+) took ([0-9.]+) s$")
_PHASE = re.compile(r"^I: (.+?)(?: in shell: .*| directly: .*)?$")
# mmdebstrap's last line: the log of a build that got this far is complete.
SUCCESS = "success in"


@dataclass(frozen=True)
class Mark:
    """A point in a build: ``seconds`` since its start; step ``label`` ``ends`` there, or starts."""

    seconds: float
    label: str
    ends: bool
    text: str

    @property
    def key(self) -> str:
        """The label with numbers blanked, to match the same step across builds (``unpack of # debs``)."""
        return re.sub(r"[0-9.]+", "#", self.label)


def mark_of(seconds: float, text: str) -> Mark | None:
    """The mark a log line's text (without its stamp) makes ``seconds`` into the build, if any."""
    text = text.strip()
    step = _STEP.match(text)
    if step:
        return Mark(seconds, step.group(1), True, text)
    phase = _PHASE.match(text)
    if phase:
        return Mark(seconds, phase.group(1).rstrip(". "), False, text)
    return None


def read_marks(log: str) -> list[Mark]:
    """Every mark of a build log's text, in order."""
    marks = []
    for line in log.splitlines():
        stamped = _STAMPED.match(line)
        mark = mark_of(float(stamped.group(1)), stamped.group(2)) if stamped else None
        if mark is not None:
            marks.append(mark)
    return marks


def complete(marks: list[Mark]) -> bool:
    """Whether the build these marks come from got to mmdebstrap's success."""
    return any(mark.label.startswith(SUCCESS) for mark in marks)


def previous_marks(logs: Path, prefix: str) -> list[Mark]:
    """The marks of the newest complete log ``<logs>/<prefix>-*.log`` (the last build of the recipe), or []."""
    candidates = sorted(logs.glob(f"{prefix}-*.log"), key=lambda path: path.stat().st_mtime, reverse=True)
    for path in candidates:
        try:
            marks = read_marks(path.read_text(errors="replace"))
        except OSError:
            continue
        if complete(marks):
            return marks
    return []


class BuildWatcher:
    """Turns a running build's log lines into Began/Stepped/Ended events for its image.

    ``previous`` (the last build's marks) gives the expected total, the time left at each
    mark, and the name of a customize-hook step while it runs (its own line comes at its end).
    """

    def __init__(self, emit: Emit, key: str, scope: str, previous: list[Mark]) -> None:
        self.emit = emit
        self.key = key
        self.scope = scope
        self.previous = previous
        self.total = previous[-1].seconds if previous else None
        self._position = 0

    def begin(self, what: str) -> None:
        """The build began."""
        self.emit(Began(self.key, self.scope, what, self.total))

    def _counterpart(self, mark: Mark) -> int | None:
        for index in range(self._position, len(self.previous)):
            if self.previous[index].key == mark.key:
                return index
        return None

    def line(self, seconds: float, text: str) -> None:
        """A log line ``seconds`` into the build: a Stepped event if it marks progress."""
        mark = mark_of(seconds, text)
        if mark is None:
            return
        index = self._counterpart(mark)
        remaining = None
        following = None
        if index is not None and self.total is not None:
            self._position = index + 1
            remaining = max(0.0, self.total - self.previous[index].seconds)
            following = self.previous[index + 1] if index + 1 < len(self.previous) else None
        # A hook step's own line comes at its end: while it runs, the last build's next mark names it.
        predicted = following.label if following is not None and following.ends else ""
        step = predicted or ("" if mark.ends else mark.label)
        done = mark.text.removeprefix("vmtest-step: ") if mark.ends else ""
        self.emit(Stepped(self.key, step, done, remaining))

    def end(self) -> None:
        """The build ended (built, failed or stopped)."""
        self.emit(Ended(self.key))
