"""Internal: The one source of progress events: it reads its clock once per event and hands the event to
every renderer, and beats once a second (``Heartbeat``) so that quiet renderers can speak.

``showing_progress`` opens one for a command: the live display when stderr is a terminal,
time-stamped lines otherwise (``auto``), or as asked (``live``, ``plain``, ``off``).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

from vmtest.progress.events import Event, Heartbeat
from vmtest.progress.plain import PlainRenderer
from vmtest.waiting import Deadline, poll

MODES = ("auto", "live", "plain", "off")
BEAT_SECONDS = 1.0


class Renderer(Protocol):
    def handle(self, event: Event, now: float) -> None: ...


class Progress:
    """Hands each event, stamped with ``clock``, to every renderer, in the order they were emitted."""

    def __init__(self, renderers: Sequence[Renderer], clock: Callable[[], float] = time.monotonic) -> None:
        self.renderers = list(renderers)
        self.clock = clock
        self.closed = False
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        """Pass ``event`` on (nothing after ``close``)."""
        with self._lock:
            if self.closed:
                return
            now = self.clock()
            for renderer in self.renderers:
                renderer.handle(event, now)

    def close(self) -> None:
        """Pass nothing on from now (the ticker may beat once more)."""
        with self._lock:
            self.closed = True


def beat(progress: Progress, stopped: threading.Event, interval: float = BEAT_SECONDS) -> threading.Thread:
    """Start a daemon thread that emits a Heartbeat every ``interval`` s until ``stopped`` is set."""
    def tick(_last_try: bool) -> bool:
        if stopped.is_set():
            return True
        progress.emit(Heartbeat())
        return False

    thread = threading.Thread(target=poll, args=(tick, Deadline(math.inf)),
                              kwargs={"interval": interval, "last_try": False}, name="vmtest-progress", daemon=True)
    thread.start()
    return thread


def resolve_mode(mode: str, stream_is_terminal: bool) -> str:
    """``live`` or ``plain`` for ``auto`` (live only on a terminal); other modes as they are."""
    if mode not in MODES:
        raise ValueError(f"progress mode {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "auto":
        return "live" if stream_is_terminal else "plain"
    return mode


def _stderr_line(line: str) -> None:
    # sys.stderr at each write: while a live display runs, rich has replaced it.
    print(line, file=sys.stderr, flush=True)


@contextmanager
def showing_progress(mode: str = "auto") -> Iterator[Progress]:
    """A Progress on stderr for the block, with its ticker; the display is gone when the block ends."""
    from rich.console import Console  # only commands that show progress need rich loaded

    console = Console(stderr=True)
    chosen = resolve_mode(mode, console.is_terminal and not console.is_dumb_terminal)
    origin = time.monotonic()
    if chosen == "off":
        yield Progress([])
        return
    live = None
    renderer: Renderer = PlainRenderer(_stderr_line, origin)
    if chosen == "live":
        from vmtest.progress.live import LiveRenderer

        live = LiveRenderer(console, origin, time.monotonic, redirect_stdout=sys.stdout.isatty())
        live.start()
        renderer = live
    progress = Progress([renderer])
    stopped = threading.Event()
    beat(progress, stopped)
    try:
        yield progress
    finally:
        stopped.set()
        progress.close()
        if live is not None:
            live.stop()
