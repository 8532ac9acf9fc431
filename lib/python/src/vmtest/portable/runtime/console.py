"""The serial console of a QEMU machine: the thread that reads it into the log, and the Machine API's
console methods (upstream's names and semantics)."""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from vmtest.errors import MachineError, RequestedAssertionFailed
from vmtest.portable.runtime.base_machine import BaseMachine
from vmtest.waiting import Deadline, Timeout, timed_out


def follow_console(stream: IO[bytes], log_path: Path, redact: Callable[[str], str], keep: Callable[[str], None],
                   failed: Callable[[OSError], None]) -> None:
    """Read a machine's console output (QEMU's or systemd-nspawn's stdout) to its end, line by line: each
    line to ``keep``, and redacted to ``log_path``. A log that cannot be opened or written goes to
    ``failed`` once and the reading goes on: the writer blocks once the pipe is full."""
    log: IO[str] | None = None
    try:
        log = log_path.open("a", encoding="utf-8", errors="replace")
    except OSError as error:
        failed(error)
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").replace("\r", "").rstrip("\n")
            keep(line)
            if log is not None:
                try:
                    log.write(redact(line) + "\n")
                    log.flush()
                except OSError as error:
                    failed(error)
                    with contextlib.suppress(OSError):
                        log.close()
                    log = None
    finally:
        if log is not None:
            with contextlib.suppress(OSError):
                log.close()


class ConsoleMachine(BaseMachine):
    """A machine whose serial console QEMU prints on its stdout and reads from its stdin."""

    process: subprocess.Popen[bytes] | None
    console_log_path: Path
    full_console_log: list[str]
    last_lines: queue.Queue[str]
    redact: Callable[[str], str]
    serial_write_error: str | None

    def _read_serial(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        follow_console(self.process.stdout, self.console_log_path, self.redact, self._keep_line,
                       self._serial_log_failed)

    def _keep_line(self, line: str) -> None:
        self.full_console_log.append(line)
        self.last_lines.put(line)
        self.log_serial(line)

    def _serial_log_failed(self, error: OSError) -> None:
        self.serial_write_error = f"{self.console_log_path}: {error.strerror or error}"
        self.log(f"WARNING: cannot write the console log {self.serial_write_error}; "
                 "its lines are kept in memory for error messages only")

    def console_tail(self, lines: int = 15) -> str:
        """The last ``lines`` console lines, indented, preceded by a kernel panic line if one scrolled out."""
        tail = self.full_console_log[-lines:]
        panics = [line for line in self.full_console_log[:-lines] if "Kernel panic" in line]
        shown = ([panics[0], "  …"] if panics and not any("Kernel panic" in line for line in tail) else []) + tail
        return self.redact("\n".join(f"  {line}" for line in shown))

    def drain_console_queue(self) -> None:
        """Forget the console lines ``wait_for_console_text`` has not consumed yet."""
        while not self.last_lines.empty():
            self.last_lines.get_nowait()

    def get_console_log(self) -> str:
        """Everything the serial console printed so far."""
        return "\n".join(self.full_console_log)

    def send_console(self, chars: str) -> None:
        """Type ``chars`` on the serial console."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(chars.encode())
        self.process.stdin.flush()

    def wait_for_console_text(self, regex: str, timeout: Timeout | None = None) -> str:
        """Wait until the console text gathered during this call matches ``regex``; returns the match.

        Upstream's semantics: lines consumed by an earlier call are not seen again, and the
        pattern is searched in all the text since the call began, so it may span lines
        (joined with nothing, as upstream's: ``a.*b`` spans them).
        Raises RequestedAssertionFailed after ``timeout`` (None: no limit) and
        MachineError if QEMU exits first.
        """
        pattern = re.compile(regex)
        deadline = Deadline.of(timeout) if timeout is not None else None
        gathered: list[str] = []
        with self.nested(f"waiting for {regex} to appear on console"):
            while True:
                if deadline is not None and deadline.expired():
                    raise RequestedAssertionFailed(
                        timed_out(self.name, f"console text matching {regex!r}", deadline.elapsed(),
                                  deadline.limit)
                        + f"; last console line: {(gathered or [''])[-1][-300:]!r}; console log: "
                        f"{self.console_log_path}"
                    )
                wait = 1.0 if deadline is None else max(0.01, min(deadline.remaining(), 1.0))
                try:
                    gathered.append(self.last_lines.get(timeout=wait))
                except queue.Empty:
                    if self.process is not None and self.process.poll() is not None and self.last_lines.empty():
                        raise MachineError(
                            f"{self.name}: QEMU exited while waiting for {regex!r} on the console; "
                            f"console log: {self.console_log_path}"
                        ) from None
                    continue
                # Take every line already queued before searching: one search per burst.
                while not self.last_lines.empty():
                    gathered.append(self.last_lines.get_nowait())
                match = pattern.search("".join(gathered))
                if match:
                    return match.group(0)

    def console_interact(self) -> None:
        """Forward this terminal's input to the serial console until end of input (Ctrl-D) or Ctrl-C.

        For interactive use, as upstream's; the console's output goes to the log as usual.
        """
        self.log("Terminal is ready (there is no prompt):")
        while True:
            try:
                char = sys.stdin.buffer.read(1)
            except KeyboardInterrupt:
                break
            if not char:
                self.log("Closing connection to the console")
                break
            self.send_console(char.decode(errors="replace"))
