"""Internal: CI outcomes: one JUnit file and summary for a job of several suite runs (``vmtest report DIR``),
and the verdict on a Nix test's artifacts (``vmtest verdict DIR``).

Each run directory under DIR (one per architecture, e.g. ``out/vm/x86_64``) holds the
suites' ``<suite>-junit.xml``, ``<suite>-summary.json`` and ``vm-validation-perf.json``; the
merged ``DIR/junit.xml`` names every suite after its run (``x86_64/boot``),
``DIR/summary.json`` has the totals, each failed case and the performance records, and
``DIR/report.html`` is the page of them all (``vmtest.reporting.page``): the runs' cases,
spans and machines on one timeline.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from vmtest.artifacts import (
    DRIVER_EXIT_STATUS,
    DRIVER_JUNIT,
    PERFORMANCE_RECORDS_GLOB,
    PREVIOUS_SUFFIX,
    SUITE_JUNIT_SUFFIX,
    suite_summary_for,
)
from vmtest.redaction import Redactor
from vmtest.reporting import page as report_page
from vmtest.reporting.report import read_junit

# Two boot spans of one machine this close are one boot, seen by two suites of the same run.
SAME_BOOT_SECONDS = 2.0


def suite_files(root: Path) -> list[Path]:
    """The suites' JUnit files under ``root`` (not the driver's own ``vmtest-junit.xml``)."""
    return sorted(path for path in root.glob(f"*/*{SUITE_JUNIT_SUFFIX}")
                  if path.name != DRIVER_JUNIT and path.parent != root
                  and not path.parent.name.endswith(PREVIOUS_SUFFIX))


def failed_cases(document: ET.Element, suite_name: str) -> list[str]:
    """``suite: case`` for every failed or errored case of one JUnit document."""
    failed = []
    for suite in ([document] if document.tag == "testsuite" else document.iter("testsuite")):
        name = suite.get("name") or suite_name
        failed += [f"{name}: {case.get('name')}" for case in suite.iter("testcase")
                   if case.find("failure") is not None or case.find("error") is not None]
    return failed


def verdict(artifacts: Path) -> tuple[bool, str]:
    """Whether the test run that wrote ``artifacts`` passed, and a line saying so (failed cases named).

    ``artifacts`` is a Nix test's artifacts output (lib/nix/test-with-artifacts.nix): the
    driver's output directory plus ``driver-exit-status``. Raises FileNotFoundError when that
    file is missing (not such a directory).
    """
    status_file = artifacts / DRIVER_EXIT_STATUS
    status = status_file.read_text().strip()
    if status == "0":
        return True, f"vmtest: {artifacts}: passed"
    failed: list[str] = []
    for path in sorted(artifacts.rglob("*.xml")):
        try:
            document = ET.parse(path).getroot()
        except ET.ParseError:
            continue
        if document.tag in ("testsuite", "testsuites"):
            failed += failed_cases(document, path.stem)
    cases = "".join(f"\n  FAILED {case}" for case in failed) or "\n  (no failed case in any JUnit file)"
    return False, f"vmtest: the test failed (driver exit status {status}); artifacts in {artifacts}{cases}"


def _suite_summary(junit: Path) -> dict[str, Any]:
    """The summary a suite's Report wrote beside ``junit``; else one made from the JUnit file alone.

    Raises ET.ParseError when it has to read a JUnit file that is not XML.
    """
    written = suite_summary_for(junit)
    try:
        summary: dict[str, Any] = json.loads(written.read_text())
        return summary
    except (OSError, ValueError):
        suites = read_junit(junit)
        stamps = [suite.timestamp for suite in suites if suite.timestamp is not None]
        return {"started_at": min(stamps).isoformat() if stamps else None,
                "cases": [asdict(case) for suite in suites for case in suite.cases]}


def _started(summary: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(summary.get("started_at") or "")
    except (TypeError, ValueError):
        return None


def _page_data(files: list[Path], performance: dict[str, Any], result: str, name: str) -> dict[str, Any]:
    """The summary-shaped data of the merged page: every suite's cases, spans and machines, named
    after their run and placed on one clock (their reports' ``started_at``)."""
    summaries = [(path.parent.name, _suite_summary(path)) for path in files]
    starts = [start for _, summary in summaries if (start := _started(summary)) is not None]
    earliest = min(starts) if starts else None
    cases: list[dict[str, Any]] = []
    spans: list[dict[str, Any]] = []
    machines: dict[str, Any] = {}
    end = 0.0
    for run, summary in summaries:
        start = _started(summary)
        shift = (start - earliest).total_seconds() if start is not None and earliest is not None else 0.0
        end = max(end, shift + float(summary.get("duration_seconds") or 0.0))
        for case in summary.get("cases", []):
            moved = case.get("start")
            cases.append({**case, "suite": f"{run}/{case.get('suite', '')}", "where": run,
                          "start": moved + shift if moved is not None else None})
        for span in summary.get("spans", []):
            placed = {**span, "lane": f"{run}/{span.get('lane', '')}", "start": span["start"] + shift,
                      "end": span["end"] + shift}
            if not any(other["lane"] == placed["lane"] and other["name"] == placed["name"]
                       and other["kind"] == placed["kind"] == "boot"
                       and abs(other["start"] - placed["start"]) < SAME_BOOT_SECONDS for other in spans):
                spans.append(placed)
        for machine, record in (summary.get("machines") or {}).items():
            key = f"{run}/{machine}"
            if isinstance(record, dict) and (record.get("up") or key not in machines):
                machines[key] = record
    for run, entries in performance.items():
        for machine, entry in entries.items():
            machines.setdefault(f"{run}/{machine}", {
                "architecture": entry.get("arch"), "accelerator": entry.get("accelerator"),
                "boot_seconds": entry.get("boot_seconds")})
    return {"name": name, "result": result, "started_at": earliest.isoformat() if earliest else None,
            "duration_seconds": round(end, 2), "cases": cases, "spans": spans, "machines": machines,
            **({"performance": performance} if performance else {})}


def merge(root: Path) -> tuple[Path, Path, Path]:
    """Write ``root/junit.xml``, ``root/summary.json`` and ``root/report.html`` from the runs under ``root``.

    Raises FileNotFoundError when there is no suite file at all (a job that ran
    nothing must not look green).
    """
    files = suite_files(root)
    if not files:
        raise FileNotFoundError(f"no <suite>-junit.xml under {root}/*/: did any suite run?")
    merged = ET.Element("testsuites")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    failed: list[str] = []
    for path in files:
        document = ET.parse(path).getroot()
        for suite in ([document] if document.tag == "testsuite" else document.iter("testsuite")):
            run = path.parent.name
            suite.set("name", f"{run}/{suite.get('name', path.stem)}")
            for key in totals:
                totals[key] += int(suite.get(key) or 0)
            failed += failed_cases(suite, path.stem)
            merged.append(suite)
    for key, value in totals.items():
        merged.set(key, str(value))
    junit = root / "junit.xml"
    ET.ElementTree(merged).write(junit, encoding="unicode", xml_declaration=True)
    performance: dict[str, Any] = {}
    # One record per run, or one per check when Nix ran the suites as separate checks.
    for record in sorted(root.glob(f"*/{PERFORMANCE_RECORDS_GLOB}")):
        run = performance.setdefault(record.parent.name, {})
        for machine, entry in json.loads(record.read_text()).items():
            merged = run.setdefault(machine, {"suites": {}})
            merged["suites"].update(entry.get("suites", {}))
            merged.update({key: value for key, value in entry.items() if key != "suites"})
    result = "passed" if totals["tests"] and not failed else "failed"
    runs = sorted({path.parent.name for path in files})
    summary = {"result": result, "tests": totals, "failed_cases": failed, "runs": runs, "performance": performance}
    summary_path = root / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    page = root / "report.html"
    data = _page_data(files, performance, result, f"vmtest report {root.name} ({', '.join(runs)})")
    # The suites' summaries were redacted when written; the patterns catch what a JUnit file alone brings.
    page.write_text(report_page.render(data, root, Redactor()))
    return junit, summary_path, page
