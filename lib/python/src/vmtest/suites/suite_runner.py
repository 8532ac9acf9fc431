"""Internal: A validation suite's run: every step a JUnit case, then the machines observed, their logs collected,
the suite's reports written, and its timings merged into the performance record."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vmtest import logs
from vmtest.artifacts import PERFORMANCE_RECORD, SUITE_JUNIT_SUFFIX, SUITE_PAGE_SUFFIX, SUITE_SUMMARY_SUFFIX
from vmtest.errors import ValidationFailed
from vmtest.guest_facts import accelerator_of
from vmtest.machine_api import Machine
from vmtest.reporting.report import Report


@dataclass
class SuiteResult:
    name: str
    seconds: float
    failures: list[str]


def run_suite(
    name: str,
    steps: Sequence[tuple[str, Callable[[], Any]]],
    machines: Sequence[Machine],
    out_dir: str | Path,
    subtest: Callable[[str], AbstractContextManager[Any]] | None = None,
) -> SuiteResult:
    """Run every step (a JUnit case each, through the driver's ``subtest``), then always observe the
    machines, collect logs, write ``<name>-junit.xml``/``<name>-summary.json``/``<name>-report.html``
    and the performance record.

    Later steps run even after a failure, so one run shows every broken check. Raises
    ValidationFailed listing the failed steps, after everything is written.
    """
    out = Path(out_dir)
    report = Report(out, name=f"vm-{name}")
    started = time.monotonic()
    failures: list[str] = []
    results: dict[str, Any] = {}
    try:
        for title, step in steps:
            try:
                with report.step(title, subtest if subtest is not None else (lambda _: nullcontext())):
                    value = step()
                    if value is not None:
                        results[title] = _plain(value)
                        report.observe(title, value)
            except AssertionError as failure:
                failures.append(f"{title}: {str(failure).splitlines()[0] if str(failure) else type(failure).__name__}")
    finally:
        seconds = time.monotonic() - started
        for machine in machines:
            try:
                report.observe_machine(machine)
            except Exception as error:  # observing must never hide the suite's own failure
                report.observe(f"{machine.name}_unobservable", str(error))
            logs.collect_logs(machine, logs.standard_sources(), dest=f"logs/{name}/{machine.name}")
        report.observe("suite_seconds", round(seconds, 2))
        report.write(junit_name=name + SUITE_JUNIT_SUFFIX, summary_name=name + SUITE_SUMMARY_SUFFIX,
                     html_name=name + SUITE_PAGE_SUFFIX)
        report.print_table()
        record_performance(out, name, machines[0] if machines else None, seconds, results)
    if failures:
        raise ValidationFailed(f"suite {name}: {len(failures)} of {len(steps)} check(s) failed:\n  "
                               + "\n  ".join(failures))
    return SuiteResult(name, seconds, failures)


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return value


def record_performance(out: Path, suite: str, machine: Machine | None, seconds: float,
                       results: Mapping[str, Any]) -> Path:
    """Merge this suite's wall time and timings into ``<out>/vm-validation-perf.json``.

    Per machine: architecture and accelerator, ``boot_seconds`` (systemd-analyze; with
    ``boot_stolen_seconds`` of it the host's steal and ``boot_judged_seconds`` the budget judged),
    ``ssh_ready_uptime_seconds`` (guest uptime at the first key login) and each
    suite's wall time.
    """
    path = out / PERFORMANCE_RECORD
    record: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    entry = record.setdefault(machine.name if machine is not None else "-", {"suites": {}})
    if machine is not None and machine.is_up():
        entry["arch"] = machine.execute("uname -m")[1].strip()
        entry["accelerator"] = accelerator_of(machine)
    entry["suites"][suite] = {"seconds": round(seconds, 2)}
    for value in results.values():
        if isinstance(value, dict) and "phases" in value:
            entry["boot_seconds"] = value["phases"].get("total")
            entry["boot_budget_seconds"] = value.get("budget_seconds")
            # What the budget judged: boot_seconds less the host's steal of it.
            entry["boot_judged_seconds"] = value.get("judged_seconds")
            entry["boot_stolen_seconds"] = value.get("stolen_seconds")
        if isinstance(value, dict) and "server_uptime_seconds" in value:
            entry["ssh_ready_uptime_seconds"] = value["server_uptime_seconds"]
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path
