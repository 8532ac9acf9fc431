"""Loggers with the upstream driver's interface: terminal (colorama), JUnit (junit-xml), progress, composite.

``nested`` and ``subtest`` are context managers; the JUnit logger turns each
subtest into a test case (plus ``main`` for everything outside subtests), so
a report exists for every run, including crashed and interrupted ones. The
progress logger turns each section into open work on the progress display.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Protocol, TextIO

from colorama import Fore, Style
from junit_xml import TestCase, TestSuite, to_xml_report_string

from vmtest.progress.events import SCRIPT_SCOPE, Began, Emit, Ended


class AbstractLogger(Protocol):
    def log(self, message: str, attributes: dict[str, str] | None = None) -> None: ...
    def info(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def error(self, message: str) -> None: ...
    def log_serial(self, message: str, machine: str) -> None: ...
    def log_test_error(self, message: str) -> None: ...
    def nested(self, message: str, attributes: dict[str, str] | None = None) -> ExitStack: ...
    def subtest(self, name: str, attributes: dict[str, str] | None = None) -> ExitStack: ...
    def print_serial_logs(self, enable: bool) -> None: ...
    def close(self) -> None: ...


def _prefix(attributes: dict[str, str] | None) -> str:
    machine = (attributes or {}).get("machine")
    return f"{machine}: " if machine else ""


class TerminalLogger:
    """Human-readable log on stderr in the upstream driver's colours."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._print_serial = False
        self._lock = threading.Lock()
        self._color = self.stream.isatty()
        # Set when the stream failed (a terminal that hung up: EIO): the run goes on, its
        # messages still reach the JUnit report.
        self.failed: OSError | None = None

    @property
    def stream(self) -> TextIO:
        """The given stream, else sys.stderr as it is now (a live progress display replaces it)."""
        return self._stream or sys.stderr

    def _write(self, text: str, color: str = "") -> None:
        with self._lock:
            if self.failed is not None:
                return
            if self._color and color:
                text = f"{color}{text}{Style.RESET_ALL}"
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except OSError as error:
                self.failed = error

    def log(self, message: str, attributes: dict[str, str] | None = None) -> None:
        self._write(_prefix(attributes) + message)

    def info(self, message: str) -> None:
        self._write(message)

    def warning(self, message: str) -> None:
        self._write(f"warning: {message}", Fore.YELLOW)

    def error(self, message: str) -> None:
        self._write(f"!!! {message}", Fore.RED)

    def log_test_error(self, message: str) -> None:
        self._write(f"!!! {message}", Fore.RED)

    def log_serial(self, message: str, machine: str) -> None:
        if self._print_serial:
            self._write(f"{machine} # {message}", Style.DIM)

    def print_serial_logs(self, enable: bool) -> None:
        self._print_serial = enable

    @contextmanager
    def _section(self, message: str, attributes: dict[str, str] | None) -> Iterator[None]:
        self._write(_prefix(attributes) + message, Style.BRIGHT + Fore.GREEN)
        started = time.monotonic()
        try:
            yield
        finally:
            self._write(f"(finished: {message}, in {time.monotonic() - started:.2f} seconds)")

    def nested(self, message: str, attributes: dict[str, str] | None = None) -> ExitStack:
        stack = ExitStack()
        stack.enter_context(self._section(message, attributes))
        return stack

    def subtest(self, name: str, attributes: dict[str, str] | None = None) -> ExitStack:
        return self.nested(f"subtest: {name}", attributes)

    def close(self) -> None:
        if self.failed is None:
            try:
                self.stream.flush()
            except OSError as error:
                self.failed = error


class JunitLogger:
    """Collects a JUnit test case per subtest (and ``main``) and writes them on every ``close``."""

    def __init__(self, path: Path, suite_name: str = "vmtest integration test") -> None:
        self.path = path
        self.suite_name = suite_name
        self.properties: dict[str, str] = {}
        self.cases: list[TestCase] = []
        self._main = TestCase("main", classname=suite_name)
        self._main_output: list[str] = []
        self._current: TestCase | None = None
        self._current_output: list[str] = []
        self.extra_suites: list[TestSuite] = []
        self.redact: Callable[[str], str] = _unchanged

    def _output(self) -> list[str]:
        return self._current_output if self._current is not None else self._main_output

    def log(self, message: str, attributes: dict[str, str] | None = None) -> None:
        self._output().append(_prefix(attributes) + message)

    def info(self, message: str) -> None:
        self._output().append(message)

    def warning(self, message: str) -> None:
        self._output().append(f"warning: {message}")

    def error(self, message: str) -> None:
        self.log_test_error(message)

    def log_test_error(self, message: str) -> None:
        case = self._current or self._main
        if not case.is_failure():
            case.add_failure_info(message=message.splitlines()[0][:500] if message else "failed", output=message)
        self._output().append(message)

    def log_serial(self, message: str, machine: str) -> None:
        self._output().append(f"{machine} # {message}")

    def print_serial_logs(self, enable: bool) -> None:
        return None

    def nested(self, message: str, attributes: dict[str, str] | None = None) -> ExitStack:
        self.log(message, attributes)
        return ExitStack()

    @contextmanager
    def _subtest(self, name: str) -> Iterator[None]:
        case = TestCase(name, classname=self.suite_name)
        outer, outer_output = self._current, self._current_output
        self._current, self._current_output = case, []
        started = time.monotonic()
        try:
            yield
        except BaseException as exception:
            if not case.is_failure():
                text = "".join(traceback.format_exception_only(type(exception), exception)).strip()
                summary = text.splitlines()[0][:500] if text else type(exception).__name__
                case.add_failure_info(message=summary, output=text)
            raise
        finally:
            case.elapsed_sec = time.monotonic() - started
            case.stdout = "\n".join(self._current_output)
            self.cases.append(case)
            self._current, self._current_output = outer, outer_output

    def subtest(self, name: str, attributes: dict[str, str] | None = None) -> ExitStack:
        stack = ExitStack()
        stack.enter_context(self._subtest(name))
        return stack

    def report_xml(self) -> str:
        """The JUnit XML document for everything logged so far."""
        self._main.stdout = "\n".join(self._main_output)
        suite = TestSuite(self.suite_name, [self._main, *self.cases], properties=dict(self.properties))
        report: str = to_xml_report_string([suite, *self.extra_suites])
        return self.redact(report)

    def close(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(self.report_xml())
        temporary.replace(self.path)


def _unchanged(text: str) -> str:
    return text


class ProgressLogger:
    """Turns every ``nested`` section and subtest into open work of its machine (or of the test
    script) for the progress display; logs nothing else."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self._keys = itertools.count()

    def log(self, message: str, attributes: dict[str, str] | None = None) -> None:
        return None

    def info(self, message: str) -> None:
        return None

    def warning(self, message: str) -> None:
        return None

    def error(self, message: str) -> None:
        return None

    def log_test_error(self, message: str) -> None:
        return None

    def log_serial(self, message: str, machine: str) -> None:
        return None

    def print_serial_logs(self, enable: bool) -> None:
        return None

    def nested(self, message: str, attributes: dict[str, str] | None = None) -> ExitStack:
        key = f"section-{next(self._keys)}"
        self.emit(Began(key, (attributes or {}).get("machine") or SCRIPT_SCOPE, message))
        stack = ExitStack()
        stack.callback(self.emit, Ended(key))
        return stack

    def subtest(self, name: str, attributes: dict[str, str] | None = None) -> ExitStack:
        return self.nested(f"subtest: {name}", attributes)

    def close(self) -> None:
        return None


class CompositeLogger:
    """Fans every call out to several loggers, like the upstream ``CompositeLogger``.

    Every message passes ``redact`` first (the run's redactor, set by the driver),
    and loggers with a ``redact`` of their own (JUnit) get it for what they write.
    The sections open right now are kept, so that a timeout can say what was running.
    """

    def __init__(self, loggers: list[AbstractLogger]) -> None:
        self.loggers = loggers
        self._redact: Callable[[str], str] = _unchanged
        self._open: list[tuple[str, float]] = []

    @property
    def redact(self) -> Callable[[str], str]:
        return self._redact

    @redact.setter
    def redact(self, redact: Callable[[str], str]) -> None:
        self._redact = redact
        for logger in self.loggers:
            if hasattr(logger, "redact"):
                logger.redact = redact

    def add(self, logger: AbstractLogger) -> None:
        if hasattr(logger, "redact"):
            logger.redact = self._redact
        self.loggers.append(logger)

    def log(self, message: str, attributes: dict[str, str] | None = None) -> None:
        message = self._redact(message)
        for logger in self.loggers:
            logger.log(message, attributes)

    def info(self, message: str) -> None:
        message = self._redact(message)
        for logger in self.loggers:
            logger.info(message)

    def warning(self, message: str) -> None:
        message = self._redact(message)
        for logger in self.loggers:
            logger.warning(message)

    def error(self, message: str) -> None:
        message = self._redact(message)
        for logger in self.loggers:
            logger.error(message)

    def log_test_error(self, message: str) -> None:
        message = self._redact(message)
        for logger in self.loggers:
            logger.log_test_error(message)

    def log_serial(self, message: str, machine: str) -> None:
        message = self._redact(message)
        for logger in self.loggers:
            logger.log_serial(message, machine)

    def print_serial_logs(self, enable: bool) -> None:
        for logger in self.loggers:
            logger.print_serial_logs(enable)

    def _track(self, stack: ExitStack, message: str, attributes: dict[str, str] | None) -> ExitStack:
        entry = (_prefix(attributes) + message, time.monotonic())
        self._open.append(entry)
        stack.callback(lambda: self._open.remove(entry) if entry in self._open else None)
        return stack

    def doing(self) -> str:
        """What the run is doing right now, innermost section last (``while …``), or ``""``."""
        now = time.monotonic()
        sections = [f"{message} (for {now - started:.1f} s)" for message, started in self._open[-3:]]
        return ("while " + " > ".join(sections)) if sections else ""

    def nested(self, message: str, attributes: dict[str, str] | None = None) -> ExitStack:
        message = self._redact(message)
        stack = ExitStack()
        for logger in self.loggers:
            stack.enter_context(logger.nested(message, attributes))
        return self._track(stack, message, attributes)

    def subtest(self, name: str, attributes: dict[str, str] | None = None) -> ExitStack:
        name = self._redact(name)
        stack = ExitStack()
        for logger in self.loggers:
            stack.enter_context(logger.subtest(name, attributes))
        return self._track(stack, f"subtest: {name}", attributes)

    def close(self) -> None:
        """Close every logger; each one is attempted even when an earlier one fails (then re-raised)."""
        failure: OSError | None = None
        for logger in self.loggers:
            try:
                logger.close()
            except OSError as error:
                failure = failure or error
        if failure is not None:
            raise failure
