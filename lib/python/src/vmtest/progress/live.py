"""Internal: Progress as a live display on a terminal (rich): a row per machine or image, redrawn as time passes.

Steps and guest results print above the display as the same time-stamped lines the plain
renderer writes, so the terminal keeps a record; the display itself is dropped at the end.
While it runs, what else the process writes to stderr (the run's log) goes above it too
(rich's redirection), and stdout as well when it is the same terminal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from vmtest.progress.events import Board, Event, Row, event_line
from vmtest.progress.plain import stamp
from vmtest.waiting import format_seconds


def rows_table(rows: list[Row], spinner: Callable[[str], RenderableType]) -> RenderableType:
    """The display for ``rows``: ``spinner(scope)``, scope (and machine up-time), what it does, for how
    long, what is left."""
    if not rows:
        return Group()
    table = Table(show_header=False, box=None, padding=(0, 1), expand=False)
    table.add_column(width=1)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="ellipsis", no_wrap=True, ratio=1)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(style="cyan", no_wrap=True)
    for row in rows:
        scope = row.scope + (f" (up {format_seconds(row.up)})" if row.up is not None else "")
        doing = row.doing() if row.what else "running"
        running = format_seconds(row.running) if row.what else ""
        extra = "; ".join(part for part in (row.left_text(), row.tally) if part)
        table.add_row(spinner(row.scope), scope, doing, running, extra)
    return table


class LiveRenderer:
    """A rich ``Live`` display of the board, with each event's line printed above it."""

    def __init__(self, console: Console, origin: float, clock: Callable[[], float],
                 redirect_stdout: bool = False) -> None:
        self.console = console
        self.origin = origin
        self.clock = clock
        self.board = Board()
        # One per scope: a spinner turns with the time since it was made.
        self.spinners: dict[str, Spinner] = {}
        self._lock = threading.Lock()
        self.live = Live(console=console, get_renderable=self.renderable, refresh_per_second=4, transient=True,
                         redirect_stdout=redirect_stdout, redirect_stderr=True)

    def start(self) -> None:
        """Show the display (and send stderr above it) until ``stop``."""
        self.live.start()

    def stop(self) -> None:
        """Drop the display; stderr is the terminal's again."""
        self.live.stop()

    def table(self, now: float) -> RenderableType:
        """The display as it is at ``now``."""
        with self._lock:
            rows = self.board.rows(now)
        return rows_table(rows, lambda scope: self.spinners.setdefault(scope, Spinner("dots")))

    def renderable(self) -> RenderableType:
        """The display now (rich's refresh thread calls it)."""
        return self.table(self.clock())

    def handle(self, event: Event, now: float) -> None:
        """Fold ``event`` into the board; print its line above the display."""
        with self._lock:
            self.board.apply(event, now)
            line = event_line(event, self.board, now)
        # Printed outside the lock: rich's refresh thread holds its own lock while it asks for the table.
        if line is not None:
            self.console.print(Text(f"{stamp(now - self.origin)} {line}"), soft_wrap=True)
