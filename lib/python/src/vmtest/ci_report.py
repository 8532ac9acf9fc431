"""CI outcomes: one JUnit file and summary for a job of several suite runs (``vmtest report DIR``),
and the verdict on a Nix test's artifacts (``vmtest verdict DIR``).

Each run directory under DIR (one per architecture, e.g. ``out/vm/x86_64``) holds the
suites' ``<suite>-junit.xml`` and ``vm-validation-perf.json``; the merged
``DIR/junit.xml`` names every suite after its run (``x86_64/boot``), and
``DIR/summary.json`` has the totals, each failed case and the performance records.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from vmtest.portable.outdir import PREVIOUS_SUFFIX


def suite_files(root: Path) -> list[Path]:
    """The suites' JUnit files under ``root`` (not the driver's own ``vmtest-junit.xml``)."""
    return sorted(path for path in root.glob("*/*-junit.xml")
                  if path.name != "vmtest-junit.xml" and path.parent != root
                  and not path.parent.name.endswith(PREVIOUS_SUFFIX))


def failed_cases(document: ET.Element, suite_name: str) -> list[str]:
    """``suite: case`` for every failed or errored case of one JUnit document."""
    failed = []
    for suite in ([document] if document.tag == "testsuite" else document.iter("testsuite")):
        name = suite.get("name") or suite_name
        failed += [f"{name}: {case.get('name')}" for case in suite.iter("testcase")
                   if case.find("failure") is not None or case.find("error") is not None]
    return failed


DRIVER_EXIT_STATUS = "driver-exit-status"


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


def merge(root: Path) -> tuple[Path, Path]:
    """Write ``root/junit.xml`` and ``root/summary.json`` from the runs under ``root``.

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
    for record in sorted(root.glob("*/vm-validation-perf*.json")):
        run = performance.setdefault(record.parent.name, {})
        for machine, entry in json.loads(record.read_text()).items():
            merged = run.setdefault(machine, {"suites": {}})
            merged["suites"].update(entry.get("suites", {}))
            merged.update({key: value for key, value in entry.items() if key != "suites"})
    summary = {
        "result": "passed" if totals["tests"] and not failed else "failed",
        "tests": totals,
        "failed_cases": failed,
        "runs": sorted({path.parent.name for path in files}),
        "performance": performance,
    }
    summary_path = root / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return junit, summary_path
