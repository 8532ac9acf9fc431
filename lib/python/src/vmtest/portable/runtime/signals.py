"""SIGINT, SIGTERM and SIGHUP during a run: the first one unwinds it, later ones cannot interrupt the teardown.

``RunSignals`` covers a whole ``vmtest run`` or ``vmtest build``, image builds
included: the first signal raises (``KeyboardInterrupt``, or ``Terminated`` for
SIGTERM and SIGHUP) so
that the run unwinds through its cleanup; any further signal is noted and
ignored, because the teardown that is now running must reap every QEMU and
vde_switch and write the artifacts. ``shielded`` does the same for one block
(``Driver.terminate``) for callers that install no handlers of their own.
Signal handlers can only be set in the main thread; elsewhere both do nothing.
The handlers say what they ignored straight on stderr (``os.write``): a handler that
took the loggers' lock could deadlock the main thread it interrupted inside a log call.

SIGHUP is what a closed terminal sends (``vmtest run --interactive`` in a window someone
closes, an ssh session that drops): the run ends as on SIGTERM. Every write to a terminal
that hung up fails (EIO), so stdout and stderr, if they were on it, are pointed at /dev/null
first: the teardown's messages cannot fail and the exit status stays the run's (129). Stdin
stays on it: a read there returns end-of-input, which is what ends the interactive shell
(ptpython, which catches the signal's exception, waits for its input on that very terminal:
pointing stdin elsewhere would close the terminal under it and leave it waiting for ever).
A run started under ``nohup`` (SIGHUP ignored) keeps ignoring it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import termios
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind so that every machine is released."""


def _hung_up(fd: int) -> bool:
    """Whether ``fd`` is a terminal that hung up (the kernel answers EIO for it from then on)."""
    try:
        termios.tcgetattr(fd)
    except termios.error as error:
        return bool(error.args) and error.args[0] == errno.EIO
    return False


def detach_hung_up_terminal() -> list[int]:
    """Point stdout and stderr, each if it is on a terminal that hung up, at /dev/null; returns the
    file descriptors it moved. Stdin stays: reading a hung-up terminal gives end-of-input."""
    moved = [fd for fd in (1, 2) if _hung_up(fd)]
    if moved:
        null = os.open(os.devnull, os.O_RDWR)
        try:
            for fd in moved:
                os.dup2(null, fd)
        finally:
            os.close(null)
    return moved


def _handled(signum: int) -> bool:
    """Whether to handle ``signum``: a SIGHUP ignored when vmtest started (``nohup``) stays ignored."""
    return signum != signal.SIGHUP or signal.getsignal(signum) is not signal.SIG_IGN


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def say(message: str) -> None:
    """Write ``vmtest: message`` on stderr without any lock (safe in a signal handler)."""
    with contextlib.suppress(OSError):
        os.write(2, f"vmtest: {message}\n".encode())


def _noting_handler(received: list[int]) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if signum == signal.SIGHUP:
            detach_hung_up_terminal()
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
    previous = {signum: signal.signal(signum, handler) for signum in HANDLED if _handled(signum)}
    try:
        yield received
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class RunSignals:
    """Handlers for one run: a SIGINT/SIGTERM/SIGHUP raises until the run says it is stopping; then they are ignored.

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

    @property
    def first_number(self) -> int | None:
        """The number of the signal that ended the run, or None."""
        return self.received[0] if self.received else None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if signum == signal.SIGHUP:
            detach_hung_up_terminal()
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
            self._previous = {signum: signal.signal(signum, self._handle) for signum in HANDLED if _handled(signum)}
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # A run a signal stopped is ending: later signals are ignored by the kernel (SIG_IGN, which
        # the interpreter keeps through its finalization) so that they cannot cut its exit short
        # or change its exit status. Otherwise the previous handlers come back.
        for signum, old in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if self.received else old)
