"""Reports built from what the run observed: JUnit XML, ``summary.json``, and a coloured table.

``Report`` records a case per ``with report.case(name):`` block (duration,
failure message), folds guest-side JUnit files (e.g. Playwright's) in as their
own suites, and writes ``summary.json`` from observations only: unit states
queried from the machines, health results, timings, the accelerator the guest
detects (``systemd-detect-virt``: kvm, or qemu for TCG) and ``uname -m``.
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
from pathlib import Path
from typing import Any, TextIO

from colorama import Fore, Style
from junit_xml import TestCase, TestSuite, to_xml_report_string

from vmtest.machine_api import Machine
from vmtest.redaction import Redactor
from vmtest.units import accelerator_from_virt, detect_virt, failed_units, observe_units


@dataclass
class CaseResult:
    name: str
    seconds: float
    passed: bool
    message: str = ""
    suite: str = ""


@dataclass
class Report:
    """Collects cases and observations; writes ``junit.xml`` and ``summary.json`` into ``out_dir``."""

    out_dir: Path
    name: str = "vmtest"
    cases: list[CaseResult] = field(default_factory=list)
    guest_suites: list[TestSuite] = field(default_factory=list)
    observations: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    # Both files pass it on their way out (the run's own, from Redactor.for_driver, on the portable runtime).
    redactor: Redactor = field(default_factory=Redactor)

    @contextmanager
    def case(self, name: str) -> Iterator[None]:
        """Time the block as one test case; a raised exception is its failure (and is re-raised)."""
        started = time.monotonic()
        try:
            yield
        except BaseException as error:
            summary = "".join(traceback.format_exception_only(type(error), error)).strip()
            self.cases.append(CaseResult(name, time.monotonic() - started, False, summary, self.name))
            raise
        self.cases.append(CaseResult(name, time.monotonic() - started, True, "", self.name))

    @contextmanager
    def step(self, name: str, subtest: Callable[[str], AbstractContextManager[Any]] | None = None) -> Iterator[None]:
        """One test step: the driver's ``subtest`` (log section, its JUnit) and a case of this report."""
        with ExitStack() as stack:
            if subtest is not None:
                stack.enter_context(subtest(name))
            stack.enter_context(self.case(name))
            yield

    def add_junit_file(self, path: Path, suite_name: str | None = None) -> list[CaseResult]:
        """Fold a JUnit XML file (e.g. from Playwright in the guest) in as suites of their own."""
        root = ET.parse(path).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        folded: list[CaseResult] = []
        for suite in suites:
            name = suite_name or suite.get("name") or path.stem
            cases = []
            for element in suite.iter("testcase"):
                case = TestCase(element.get("name", "?"), classname=element.get("classname") or name,
                                elapsed_sec=float(element.get("time") or 0))
                problem = element.find("failure")
                if problem is None:
                    problem = element.find("error")
                if problem is not None:
                    case.add_failure_info(message=problem.get("message") or "failed", output=problem.text)
                skipped = element.find("skipped")
                if skipped is not None:
                    case.add_skipped_info(message=skipped.get("message") or "skipped")
                cases.append(case)
                folded.append(CaseResult(case.name, case.elapsed_sec or 0.0, problem is None,
                                         (problem.get("message") or "") if problem is not None else "", name))
            self.guest_suites.append(TestSuite(name, cases))
        return folded

    def observe(self, key: str, value: Any) -> None:
        """Record an observation (a dataclass, dict, or plain value) for summary.json."""
        self.observations[key] = _plain(value)

    def observe_machine(self, machine: Machine, units: Sequence[str] = ()) -> dict[str, Any]:
        """Record what ``machine`` reports now: architecture, virtualisation, failed units, unit states.

        A machine that is down (``is_up()`` false) is recorded as such, not booted again.
        """
        if not machine.is_up():
            record_down: dict[str, Any] = {"up": False}
            self.observations.setdefault("machines", {})[machine.name] = record_down
            return record_down
        virt = detect_virt(machine)
        record: dict[str, Any] = {
            "up": True,
            "architecture": machine.succeed("uname -m").strip(),
            "virtualisation": virt or "none",
            "accelerator": accelerator_from_virt(virt, "unknown"),
            "kernel": machine.succeed("uname -r").strip(),
            "failed_units": failed_units(machine),
        }
        if units:
            record["units"] = {
                unit.unit: {"state": unit.state, "result": unit.result} for unit in observe_units(machine, units)
            }
        self.observations.setdefault("machines", {})[machine.name] = record
        return record

    def all_cases(self) -> list[CaseResult]:
        guest = [
            CaseResult(case.name, case.elapsed_sec or 0.0, not (case.is_failure() or case.is_error()),
                       "", suite.name)
            for suite in self.guest_suites for case in suite.test_cases
        ]
        return [*self.cases, *guest]

    def summary(self) -> dict[str, Any]:
        cases = self.all_cases()
        return {
            "name": self.name,
            "result": "passed" if cases and all(case.passed for case in cases) else "failed",
            "duration_seconds": round(time.monotonic() - self.started, 2),
            "tests": {"total": len(cases), "passed": sum(c.passed for c in cases),
                      "failed": sum(not c.passed for c in cases)},
            "cases": [asdict(case) for case in cases],
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

    def write(self, junit_name: str = "junit.xml", summary_name: str = "summary.json") -> tuple[Path, Path]:
        """Write both files (atomically); returns their paths."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        paths = (self.out_dir / junit_name, self.out_dir / summary_name)
        for path, text in zip(paths, (self.junit_xml(), json.dumps(self.summary(), indent=2) + "\n"), strict=True):
            temporary = path.with_suffix(path.suffix + ".tmp")
            temporary.write_text(self.redactor.redact(text))
            temporary.replace(path)
        return paths

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
