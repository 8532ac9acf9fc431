"""Pure logic of the VM validation library and the CI report merge (real VMs: tests/integration)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vmtest import ci_report
from vmtest.suites import vm_validation as vv


@pytest.mark.parametrize(("text", "seconds"), [
    ("12.001s", 12.001), ("850ms", 0.85), ("1min 2.5s", 62.5), ("2min", 120.0), ("300us", 0.0003),
])
def test_systemd_durations(text: str, seconds: float) -> None:
    assert vv.parse_systemd_duration(text) == pytest.approx(seconds)


def test_systemd_analyze_time_phases() -> None:
    output = ("Startup finished in 1.846s (kernel) + 3.520s (initrd) + 1min 4.2s (userspace) = 1min 9.566s\n"
              "multi-user.target reached after 1min 4.1s in userspace.\n")
    assert vv.parse_analyze_time(output) == pytest.approx(
        {"kernel": 1.846, "initrd": 3.52, "userspace": 64.2, "total": 69.566})
    with pytest.raises(ValueError, match="Bootup is not yet finished"):
        vv.parse_analyze_time("Bootup is not yet finished (FinishTimestampMonotonic=0).")
    with pytest.raises(ValueError, match="not a systemd duration"):
        vv.parse_systemd_duration("soon")


def test_boot_budget_scales_with_accelerator_and_architecture() -> None:
    profile = vv.VmProfile(boot_budget_kvm_seconds=30)
    assert vv.boot_budget(profile, "kvm", "aarch64") == 30
    assert vv.boot_budget(profile, "tcg", "x86_64") == 180
    assert vv.boot_budget(profile, "tcg", "aarch64") == 240


def _suite(path: Path, name: str, failing: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    failure = f'<testcase name="{failing}"><failure message="boom"/></testcase>' if failing else ""
    path.write_text(f'<testsuites><testsuite name="{name}" tests="{2 if failing else 1}" '
                    f'failures="{1 if failing else 0}" errors="0"><testcase name="ok"/>{failure}'
                    f"</testsuite></testsuites>")


def test_ci_report_merges_runs_and_names_failures(tmp_path: Path) -> None:
    _suite(tmp_path / "x86_64/boot-junit.xml", "vm-boot")
    _suite(tmp_path / "aarch64/services-junit.xml", "vm-services", failing="docker run")
    (tmp_path / "aarch64/vmtest-junit.xml").write_text("<testsuite/>")  # the driver's own: not merged
    (tmp_path / "aarch64/vm-validation-perf-result.json").write_text(
        json.dumps({"vm": {"boot_seconds": 31.2, "suites": {"boot": {"seconds": 40.0}}}}))
    (tmp_path / "aarch64/vm-validation-perf-result-1.json").write_text(
        json.dumps({"vm": {"suites": {"services": {"seconds": 50.0}}}}))
    junit, summary_path, page = ci_report.merge(tmp_path)
    names = [suite.get("name") for suite in ET.parse(junit).getroot()]
    assert names == ["aarch64/vm-services", "x86_64/vm-boot"]
    summary = json.loads(summary_path.read_text())
    assert summary["result"] == "failed"
    assert summary["tests"] == {"tests": 3, "failures": 1, "errors": 0}
    assert summary["failed_cases"] == ["aarch64/vm-services: docker run"]
    assert summary["performance"] == {"aarch64": {"vm": {
        "boot_seconds": 31.2, "suites": {"boot": {"seconds": 40.0}, "services": {"seconds": 50.0}}}}}
    # No suite wrote a summary here: the page is made from the JUnit files and the performance records.
    text = page.read_text()
    assert '<h3 class="case-name">aarch64/vm-services / docker run</h3>' in text and ">boom</pre>" in text
    assert "<td>aarch64/vm</td><td></td><td></td><td></td><td></td><td></td><td>31.2 s</td>" in text


def test_ci_report_refuses_an_empty_job(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="did any suite run"):
        ci_report.merge(tmp_path)


def test_git_identity_comes_from_the_managed_git_config() -> None:
    assert vv.git_identity(vv.VmProfile()) == "Baleen <baleen@vm.invalid>"
    other = vv.VmProfile(managed_files={vv.GIT_CONFIG: "[user]\n\tname = Ada L\n\temail = ada@example.invalid\n"})
    assert vv.git_identity(other) == "Ada L <ada@example.invalid>"
    with pytest.raises(ValueError, match="names no"):
        vv.git_identity(vv.VmProfile(managed_files={".vimrc": "set number\n"}))
