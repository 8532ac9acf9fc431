"""SIGINT and SIGTERM during a run: the first one unwinds it, later ones cannot interrupt the teardown.

``RunSignals`` covers a whole ``vmtest run`` or ``vmtest build``, image builds
included: the first signal raises (``KeyboardInterrupt`` or ``Terminated``) so
that the run unwinds through its cleanup; any further signal is noted and
ignored, because the teardown that is now running must reap every QEMU and
vde_switch and write the artifacts. ``shielded`` does the same for one block
(``Driver.terminate``) for callers that install no handlers of their own.
Signal handlers can only be set in the main thread; elsewhere both do nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)
Note = Callable[[str], None]


class Terminated(BaseException):
    """SIGTERM arrived: unwind so that every machine is released."""


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _noting_handler(note: Note, received: list[int]) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        note(f"{signal.Signals(signum).name} ignored: tearing down (every QEMU and vde_switch is being "
             "stopped and the artifacts written)")
    return handler


@contextmanager
def shielded(note: Note) -> Iterator[list[int]]:
    """Within the block SIGINT and SIGTERM are noted and ignored; yields the signals that arrived."""
    received: list[int] = []
    if not _in_main_thread():
        yield received
        return
    handler = _noting_handler(note, received)
    previous = {signum: signal.signal(signum, handler) for signum in HANDLED}
    try:
        yield received
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class RunSignals:
    """Handlers for one run: the first SIGINT/SIGTERM raises, every later one is noted and ignored."""

    def __init__(self, note: Note) -> None:
        self.note = note
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    @property
    def first(self) -> str | None:
        """The name of the signal that ended the run (``SIGINT``), or None."""
        return signal.Signals(self.received[0]).name if self.received else None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if len(self.received) > 1:
            self.note(f"{signal.Signals(signum).name} ignored: already stopping after "
                      f"{signal.Signals(self.received[0]).name}")
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt()
        raise Terminated()

    def __enter__(self) -> RunSignals:
        if _in_main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in HANDLED}
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for signum, old in self._previous.items():
            signal.signal(signum, old)
