"""Internal: Progress as time-stamped lines, for output that is no terminal (CI, Nix build logs, pipes).

Each step and guest result is a line; while work runs and the renderer has been quiet for
``quiet`` seconds, the next heartbeat prints what is still running and for how long. The
source's ticker beats every second, so lines come at most ``quiet`` + 1 s apart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vmtest.progress.events import Board, Event, Heartbeat, event_line, heartbeat_line

# 8 s of quiet, then a heartbeat at the next beat: with a beat a second, a line at least every 10 s.
QUIET_SECONDS = 8.0


def stamp(seconds: float) -> str:
    """The line prefix for ``seconds`` since the start, as the build log stamps its lines: ``[   12.3s]``."""
    return f"[{seconds:7.1f}s]"


class PlainRenderer:
    """Writes one time-stamped line per step and guest result, and heartbeats while work runs."""

    def __init__(self, write: Callable[[str], None], origin: float, quiet: float = QUIET_SECONDS) -> None:
        self.write = write
        self.origin = origin
        self.quiet = quiet
        self.board = Board()
        self.last_line = origin
        self._lock = threading.Lock()

    def handle(self, event: Event, now: float) -> None:
        """Fold ``event`` (at ``now``) into the board and write its line, or a heartbeat when one is due."""
        with self._lock:
            self.board.apply(event, now)
            line = event_line(event, self.board, now)
            if line is None and isinstance(event, Heartbeat) and now - self.last_line >= self.quiet:
                line = heartbeat_line(self.board, now)
            if line is None:
                return
            self.last_line = now
            self.write(f"{stamp(now - self.origin)} {line}")
