"""Internal: The names of a run's artifacts in its output directory: one list, read by the helpers that report
on a run (``vmtest.reporting``, the suites) and by the portable runtime that writes one.

A name here is a contract with the Nix library too: lib/nix/test-with-artifacts.nix writes
``driver-exit-status`` beside the driver's output, and ``vmtest verdict`` reads it.
"""

from __future__ import annotations

from pathlib import Path

# What the portable runtime's driver writes into its output directory.
RUN_RECORD = "vmtest-run.json"
DRIVER_JUNIT = "vmtest-junit.xml"
SERIAL_LOGS = "serial"
# What marks a directory as an earlier vmtest run's output.
RUN_MARKERS = (RUN_RECORD, DRIVER_JUNIT, SERIAL_LOGS)
# The output directory's lock, and where an earlier run's artifacts are moved.
OUTPUT_LOCK = ".vmtest-lock"
PREVIOUS_SUFFIX = ".previous"
# What the Nix library writes beside a NixOS test's output: the driver's exit status.
DRIVER_EXIT_STATUS = "driver-exit-status"
# The validation suites' performance record, merged across suites (and across runs by ``vmtest report``).
PERFORMANCE_RECORD = "vm-validation-perf.json"
PERFORMANCE_RECORDS_GLOB = "vm-validation-perf*.json"
# A suite's own files: ``<suite>-junit.xml``, ``<suite>-summary.json``, ``<suite>-report.html``.
SUITE_JUNIT_SUFFIX = "-junit.xml"
SUITE_SUMMARY_SUFFIX = "-summary.json"
SUITE_PAGE_SUFFIX = "-report.html"


def previous_path(out_dir: Path) -> Path:
    """Where an earlier run's artifacts in ``out_dir`` are moved."""
    return out_dir.with_name(out_dir.name + PREVIOUS_SUFFIX)


def suite_summary_for(junit: Path) -> Path:
    """The summary a suite writes beside its JUnit file ``<suite>-junit.xml``."""
    return junit.with_name(junit.name.removesuffix(SUITE_JUNIT_SUFFIX) + SUITE_SUMMARY_SUFFIX)
