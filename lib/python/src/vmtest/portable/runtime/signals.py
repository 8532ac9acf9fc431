"""SIGINT and SIGTERM during a run: the first one unwinds it, later ones cannot interrupt the teardown.

``RunSignals`` covers a whole ``vmtest run`` or ``vmtest build``, image builds
included: the first signal raises (``KeyboardInterrupt`` or ``Terminated``) so
that the run unwinds through its cleanup; any further signal is noted and
ignored, because the teardown that is now running must reap every QEMU and
vde_switch and write the artifacts. ``shielded`` does the same for one block
(``Driver.terminate``) for callers that install no handlers of their own.
Signal handlers can only be set in the main thread; elsewhere both do nothing.
The handlers say what they ignored straight on stderr (``os.write``): a handler that
took the loggers' lock could deadlock the main thread it interrupted inside a log call.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Terminated(BaseException):
    """SIGTERM arrived: unwind so that every machine is released."""


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def say(message: str) -> None:
    """Write ``vmtest: message`` on stderr without any lock (safe in a signal handler)."""
    with contextlib.suppress(OSError):
        os.write(2, f"vmtest: {message}\n".encode())


def _noting_handler(received: list[int]) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        say(f"{signal.Signals(signum).name} ignored: tearing down (every QEMU and vde_switch is being "
            "stopped and the artifacts written)")
    return handler


@contextmanager
def shielded() -> Iterator[list[int]]:
    """Within the block SIGINT and SIGTERM are noted and ignored; yields the signals that arrived."""
    received: list[int] = []
    if not _in_main_thread():
        yield received
        return
    handler = _noting_handler(received)
    previous = {signum: signal.signal(signum, handler) for signum in HANDLED}
    try:
        yield received
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class RunSignals:
    """Handlers for one run: a SIGINT/SIGTERM raises until the run says it is stopping; then they are ignored.

    The caller sets ``stopping`` as soon as it has caught the interruption (or the run is
    over). Until then every signal raises again, as the first one did: an exception the
    handler raised inside code that swallows it (C code that clears errors) must not
    leave the run going with later signals ignored.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.stopping = False
        self._previous: dict[int, Any] = {}

    @property
    def first(self) -> str | None:
        """The name of the signal that ended the run (``SIGINT``), or None."""
        return signal.Signals(self.received[0]).name if self.received else None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.stopping:
            say(f"{signal.Signals(signum).name} ignored: already stopping after "
                f"{signal.Signals(self.received[0]).name}")
            return
        # The first signal decides how the run ends, whichever raises last.
        if self.received[0] == signal.SIGINT:
            raise KeyboardInterrupt()
        raise Terminated()

    def __enter__(self) -> RunSignals:
        if _in_main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in HANDLED}
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # A run a signal stopped is ending: later signals are ignored by the kernel (SIG_IGN, which
        # the interpreter keeps through its finalization) so that they cannot cut its exit short
        # or change its exit status. Otherwise the previous handlers come back.
        for signum, old in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if self.received else old)
