"""Internal: Reports built from what the run observed: JUnit XML, ``summary.json``, ``report.html`` and a coloured
table.

``Report`` records a case per ``with report.case(name):`` block (start, duration,
failure message), folds guest-side JUnit files (e.g. Playwright's) in as their
own suites, records timed spans (a machine's boot, each link of a unit chain) and
writes ``summary.json`` from observations only: unit states queried from the
machines, health results, timings, the accelerator the guest detects
(``systemd-detect-virt``: kvm, or qemu for TCG) and ``uname -m``. ``report.html``
(``vmtest.reporting.page``) shows the same data as one self-contained page.
``write()`` is safe to call from a ``finally:`` so a failed run still reports.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from html import escape as html_escape
from pathlib import Path
from typing import Any, TextIO

from colorama import Fore, Style
from junit_xml import TestCase, TestSuite, to_xml_report_string

from vmtest.guest_facts import accelerator_from_virt, architecture, detect_virt, failed_units, kernel_release
from vmtest.health import ChainResult
from vmtest.machine_api import ExplainsAccelerator, Machine, machine_kind, unwrapped
from vmtest.redaction import Redactor
from vmtest.reporting import page as report_page
from vmtest.reporting.timeline import Span, boot_finished_us, guest_clock, userspace_started_us
from vmtest.units import observe_units

# How far a guest JUnit timestamp may lie outside the run (clock skew) and still place its cases.
TIMESTAMP_SLACK_SECONDS = 60.0


@dataclass
class CaseResult:
    """One case: ``start`` in seconds from the report's start (None: not known); ``kind`` is
    ``step`` for the report's own cases, ``test`` for a guest JUnit file's."""

    name: str
    seconds: float
    passed: bool
    message: str = ""
    suite: str = ""
    start: float | None = None
    kind: str = "step"


@dataclass
class JunitSuite:
    """One ``<testsuite>`` of a JUnit file: as junit_xml's suite (for the merged JUnit) and as cases,
    whose ``start`` counts from ``timestamp``, when the suite started (None: the file does not say)."""

    suite: TestSuite
    cases: list[CaseResult]
    timestamp: datetime | None


def _timestamp(element: ET.Element) -> datetime | None:
    """A JUnit element's ``timestamp`` attribute; None when absent, malformed or without a time zone."""
    try:
        stamp = datetime.fromisoformat(element.get("timestamp") or "")
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else None


def _problem_message(problem: ET.Element) -> str:
    """A failure's message attribute, else the first line of its text (pytest writes both)."""
    text = (problem.text or "").strip()
    return problem.get("message") or (text.splitlines()[0] if text else "") or problem.tag


def read_junit(path: Path, suite_name: str | None = None) -> list[JunitSuite]:
    """The suites of a JUnit XML file, their cases laid out one after the other from the suite's start
    (a case with its own ``timestamp`` at that time instead).

    Raises ET.ParseError for a file that is not XML, OSError for one that cannot be read.
    """
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    read: list[JunitSuite] = []
    for suite in suites:
        name = suite_name or suite.get("name") or path.stem
        began = _timestamp(suite)
        cases, results, cursor = [], [], 0.0
        for element in suite.iter("testcase"):
            case = TestCase(element.get("name", "?"), classname=element.get("classname") or name,
                            elapsed_sec=float(element.get("time") or 0))
            problem = element.find("failure")
            if problem is None:
                problem = element.find("error")
            if problem is not None:
                case.add_failure_info(message=_problem_message(problem), output=problem.text)
            skipped = element.find("skipped")
            if skipped is not None:
                case.add_skipped_info(message=skipped.get("message") or "skipped")
            cases.append(case)
            own = _timestamp(element)
            start = (own - began).total_seconds() if own is not None and began is not None else cursor
            seconds = case.elapsed_sec or 0.0
            results.append(CaseResult(case.name, seconds, problem is None,
                                      _problem_message(problem) if problem is not None else "", name, start, "test"))
            cursor = max(cursor, start + seconds)
        read.append(JunitSuite(TestSuite(name, cases), results, began))
    return read


@dataclass
class Report:
    """Collects cases, spans and observations; writes ``junit.xml``, ``summary.json`` and ``report.html``
    into ``out_dir``."""

    out_dir: Path
    name: str = "vmtest"
    cases: list[CaseResult] = field(default_factory=list)
    guest_suites: list[TestSuite] = field(default_factory=list)
    guest_cases: list[CaseResult] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    observations: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    # The same instant on the wall clock: where guest JUnit timestamps and other runs' reports meet.
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Every file passes it on its way out (the run's own, from Redactor.for_driver, on the portable runtime).
    redactor: Redactor = field(default_factory=Redactor)

    @contextmanager
    def case(self, name: str) -> Iterator[None]:
        """Time the block as one test case; a raised exception is its failure (and is re-raised)."""
        started = time.monotonic()
        offset = started - self.started
        try:
            yield
        except BaseException as error:
            summary = "".join(traceback.format_exception_only(type(error), error)).strip()
            self.cases.append(CaseResult(name, time.monotonic() - started, False, summary, self.name, offset))
            raise
        self.cases.append(CaseResult(name, time.monotonic() - started, True, "", self.name, offset))

    @contextmanager
    def step(self, name: str, subtest: Callable[[str], AbstractContextManager[Any]] | None = None) -> Iterator[None]:
        """One test step: the driver's ``subtest`` (log section, its JUnit) and a case of this report."""
        with ExitStack() as stack:
            if subtest is not None:
                stack.enter_context(subtest(name))
            stack.enter_context(self.case(name))
            yield

    def add_junit_file(self, path: Path, suite_name: str | None = None) -> list[CaseResult]:
        """Fold a JUnit XML file (e.g. from Playwright in the guest) in as suites of their own.

        Each suite's cases go on the timeline from the suite's timestamp when it lies within
        the run, else so that they end now (the file was just copied out of a finished run);
        never so that they end after now, whatever the guest's clock says.
        Raises ET.ParseError for a file that is not XML, OSError for one that cannot be read.
        """
        now = time.monotonic() - self.started
        folded: list[CaseResult] = []
        for read in read_junit(path, suite_name):
            length = max([case.start + case.seconds for case in read.cases if case.start is not None] + [0.0])
            base = now - length
            if read.timestamp is not None:
                stamped = (read.timestamp - self.started_at).total_seconds()
                if -TIMESTAMP_SLACK_SECONDS <= stamped <= now + TIMESTAMP_SLACK_SECONDS:
                    base = min(stamped, base)
            for case in read.cases:
                case.start = base + (case.start or 0.0)
            self.guest_suites.append(read.suite)
            folded += read.cases
        self.guest_cases += folded
        return folded

    def span(self, name: str, start: float, end: float, kind: str, lane: str = "", passed: bool = True) -> Span:
        """Record a timed span for the timeline; ``start`` and ``end`` are ``time.monotonic()`` values
        (an ``end`` before ``start``, from clocks measured apart, is taken as ``start``)."""
        recorded = Span(name, kind, start - self.started, max(start, end) - self.started, lane, passed)
        self.spans.append(recorded)
        return recorded

    def span_chain(self, machine: Machine, chain: ChainResult) -> list[Span]:
        """A span per link of a unit chain that came up on ``machine``: from its activation to its
        readiness, systemd's times placed on the host's by ``guest_clock``.

        Raises ValueError when the guest's clock cannot be read.
        """
        clock = guest_clock(machine)
        return [self.span(unit.unit, clock.host_time(unit.started_at_us or unit.ready_at_us),
                          clock.host_time(unit.ready_at_us), "unit", machine.name)
                for unit in chain.units]

    def observe(self, key: str, value: Any) -> None:
        """Record an observation (a dataclass, dict, or plain value) for summary.json."""
        self.observations[key] = _plain(value)

    def observe_machine(self, machine: Machine, units: Sequence[str] = ()) -> dict[str, Any]:
        """Record what ``machine`` reports now: kind (``vm`` or ``container``), architecture,
        virtualisation, failed units, unit states.

        A machine that is down (``is_up()`` false) is recorded as such, not booted again.
        """
        kind = machine_kind(machine)
        if not machine.is_up():
            record_down: dict[str, Any] = {"up": False, "kind": kind}
            self.observations.setdefault("machines", {})[machine.name] = record_down
            return record_down
        virt = detect_virt(machine)
        container = kind == "container"
        record: dict[str, Any] = {
            "up": True,
            "kind": kind,
            "architecture": architecture(machine),
            "virtualisation": virt or "none",
            # A container runs on the host's kernel: there is no accelerator to speak of.
            "accelerator": "none" if container else accelerator_from_virt(virt, "unknown"),
            "kernel": kernel_release(machine),
            "failed_units": failed_units(machine),
            "boot": self._observe_boot(machine, container),
        }
        # The portable runtime's machines say why the host chose their accelerator; the guest only
        # sees the outcome.
        own_reason = f"a container ({virt or 'systemd-nspawn'}) on the host's kernel" if container else None
        inner = unwrapped(machine)
        known = inner.accelerator_reason if isinstance(inner, ExplainsAccelerator) else None
        record["accelerator_reason"] = known or own_reason or _accelerator_reason(virt)
        if units:
            record["units"] = {
                unit.unit: {"state": unit.state, "result": unit.result} for unit in observe_units(machine, units)
            }
        self.observations.setdefault("machines", {})[machine.name] = record
        return record

    def _observe_boot(self, machine: Machine, container: bool = False) -> dict[str, Any]:
        """The latest boot on the report's clock, and a ``boot`` span for it (to now while unfinished).

        A VM's boot starts at its kernel's (its monotonic clock's zero); a container's, which shares
        the host's kernel and clock, when its systemd started.
        """
        clock = guest_clock(machine)
        started_us = userspace_started_us(machine) if container else 0
        finished_us = boot_finished_us(machine)
        start = clock.host_time(started_us)
        end = clock.host_time(finished_us) if finished_us else time.monotonic()
        self.span("boot", start, end, "boot", machine.name, passed=bool(finished_us))
        return {
            "started_at_s": round(start - self.started, 3),
            "finished_at_s": round(end - self.started, 3) if finished_us else None,
            "seconds": round((finished_us - started_us) / 1e6, 3) if finished_us else None,
        }

    def all_cases(self) -> list[CaseResult]:
        """The report's own cases, then the guest JUnit files' cases."""
        return [*self.cases, *self.guest_cases]

    def summary(self) -> dict[str, Any]:
        """What ``summary.json`` holds (before redaction): outcome, counts, cases, spans, observations."""
        cases = self.all_cases()
        return {
            "name": self.name,
            "result": "passed" if cases and all(case.passed for case in cases) else "failed",
            "started_at": self.started_at.isoformat(),
            "duration_seconds": round(time.monotonic() - self.started, 2),
            "tests": {"total": len(cases), "passed": sum(c.passed for c in cases),
                      "failed": sum(not c.passed for c in cases)},
            "cases": [asdict(case) for case in cases],
            "spans": [asdict(span) for span in self.spans],
            **self.observations,
        }

    def junit_xml(self) -> str:
        own = []
        for result in self.cases:
            case = TestCase(result.name, classname=self.name, elapsed_sec=result.seconds)
            if not result.passed:
                case.add_failure_info(message=result.message.splitlines()[0][:500] if result.message else "failed",
                                      output=result.message)
            own.append(case)
        xml: str = to_xml_report_string([TestSuite(self.name, own), *self.guest_suites])
        return xml

    def write(self, junit_name: str = "junit.xml", summary_name: str = "summary.json",
              html_name: str = "report.html") -> tuple[Path, Path, Path]:
        """Write the JUnit file, the summary and the page (each atomically, redacted); returns their paths.

        The page comes last, so it links the other two. Raises OSError when a file cannot be written.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        summary = self.summary()
        junit, summary_path, page = (self.out_dir / name for name in (junit_name, summary_name, html_name))
        _write_atomically(junit, self.redactor.redact(self.junit_xml()))
        _write_atomically(summary_path, self.redactor.redact(json.dumps(summary, indent=2) + "\n"))
        # The renderer redacts each text before escaping it (an escaped secret would not match).
        try:
            html = report_page.render(summary, self.out_dir, self.redactor, own_name=html_name)
        except Exception as error:  # write() runs in a finally: a page bug must not hide the run's own error
            problem = html_escape(self.redactor.redact(f"{type(error).__name__}: {error}"))
            html = (f"<!doctype html><meta charset=utf-8><title>{html_escape(self.name)}</title>"
                    f"<p>report.html could not be drawn ({problem}); the run's results are in "
                    f'<a href="{html_escape(junit_name)}">{html_escape(junit_name)}</a> and '
                    f'<a href="{html_escape(summary_name)}">{html_escape(summary_name)}</a>.</p>\n')
            print(f"vmtest.report: {page} could not be drawn: {problem}", file=sys.stderr)
        _write_atomically(page, html)
        return junit, summary_path, page

    def print_table(self, stream: TextIO | None = None, color: bool | None = None) -> None:
        """A coloured end-of-run table: one line per case, then the totals."""
        stream = stream or sys.stderr
        use_color = stream.isatty() if color is None else color

        def paint(text: str, tint: str) -> str:
            return f"{tint}{text}{Style.RESET_ALL}" if use_color else text

        cases = self.all_cases()
        width = max([len(f"{c.suite} / {c.name}") for c in cases] + [10])
        for case in cases:
            label = f"{case.suite} / {case.name}".ljust(width)
            verdict = paint("PASS", Fore.GREEN) if case.passed else paint("FAIL", Fore.RED)
            stream.write(f"  {verdict}  {label}  {case.seconds:7.2f} s\n")
        summary = self.summary()["tests"]
        totals = f"{summary['passed']} passed, {summary['failed']} failed"
        stream.write(paint(totals, Fore.GREEN if not summary["failed"] else Fore.RED) + "\n")


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def _accelerator_reason(virt: str) -> str:
    """Why the guest has its accelerator, as far as the guest can tell."""
    if virt == "kvm":
        return "the guest detects KVM (systemd-detect-virt: kvm)"
    if virt == "qemu":
        return "the guest detects plain QEMU (systemd-detect-virt: qemu): no KVM, TCG emulation"
    return f"systemd-detect-virt says {virt or 'nothing'}"


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value
