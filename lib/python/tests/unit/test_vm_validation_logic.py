"""Pure logic of the VM validation library and the CI report merge (real VMs: tests/integration)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import pytest

from vmtest.reporting import ci as ci_report
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


# The boot budget judges systemd-analyze's total less the guest's steal time (vv.BOOT_BUDGET_KVM_SECONDS).
# A guest that answers check_boot's commands with fixed values; nothing boots.

ANALYZE = "Startup finished in 1.2s (kernel) + 2.0s (initrd) + {userspace}s (userspace) = {total}s\n"


def proc_stat(uptime: float, cpus: int, busy: float, steal: float, iowait: float = 0.0) -> str:
    """`cat /proc/uptime /proc/stat` of a guest with ``cpus`` vCPUs; the times are seconds summed over them."""
    def line(name: str, share: float) -> str:
        ticks = [busy * 0.6, 0, busy * 0.3, uptime * cpus - busy - steal - iowait, iowait, busy * 0.05,
                 busy * 0.05, steal, 0, 0]
        return " ".join([name, *(str(round(value * 100 * share)) for value in ticks)])
    return "\n".join([f"{uptime:.2f} {uptime * cpus * 0.5:.2f}", line("cpu ", 1.0),
                      *(line(f"cpu{n}", 1 / cpus) for n in range(cpus)),
                      "intr 12345 0 0", "ctxt 67890", "btime 1700000000", "processes 812"]) + "\n"


class BootedGuest:
    """Answers what check_boot asks: no failed unit, ``arch``, ``virt``, the given systemd-analyze and /proc."""

    name = "vm"
    out_dir = Path("/nonexistent")
    shared_dir = Path("/nonexistent")

    def __init__(self, total: float, stat: str | None, virt: str = "kvm", arch: str = "x86_64") -> None:
        self.analyze = ANALYZE.format(userspace=round(total - 3.2, 3), total=total)
        self.stat, self.virt, self.arch = stat, virt, arch

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: object = 900) -> tuple[int, str]:
        if "/proc/stat" in command:
            return (0, self.stat) if self.stat is not None else (1, "")
        answers = {"systemctl list-units --failed": "", "systemd-detect-virt": self.virt + "\n",
                   "uname -m": self.arch + "\n", "uname -r": "6.12.30\n", "systemd-analyze time": self.analyze}
        return next((0, answer) for prefix, answer in answers.items() if command.startswith(prefix))

    def succeed(self, *commands: str, timeout: object = None) -> str:
        return "".join(self.execute(command)[1] for command in commands)

    def wait_until_succeeds(self, command: str, timeout: object = 900) -> str:
        return self.succeed(command)

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: object = 900) -> None:
        assert unit == "multi-user.target"

    def is_up(self) -> bool:
        return True

    def get_console_log(self) -> str:
        return ""

    def log(self, msg: str) -> None:
        pass

    def nested(self, msg: str) -> object:
        return nullcontext()


def test_cpu_times_come_from_proc_stat() -> None:
    times = vv.parse_cpu_times(proc_stat(uptime=65.0, cpus=2, busy=30.0, steal=80.0, iowait=4.0))
    assert (times.cpus, times.uptime) == (2, 65.0)
    assert (times.busy, times.steal, times.iowait) == pytest.approx((30.0, 80.0, 4.0))
    # A kernel without the steal field (or any later one) counts it as 0.
    old = "12.5 20.0\ncpu  100 0 50 2000 10 1 1\ncpu0 100 0 50 2000 10 1 1\n"
    assert vv.parse_cpu_times(old) == vv.CpuTimes(cpus=1, busy=1.52, iowait=0.1, steal=0.0, uptime=12.5)
    for garbage in ("", "cat: /proc/stat: No such file or directory", "12.5 20.0\nintr 1 2\n"):
        with pytest.raises(ValueError):
            vv.parse_cpu_times(garbage)


def test_the_steal_credited_is_an_average_vcpus_share_of_the_boot() -> None:
    times = vv.CpuTimes(cpus=2, busy=30.0, iowait=0.0, steal=80.0, uptime=65.0)
    assert vv.stolen_boot_seconds(62.0, times) == pytest.approx(40.0 * 62.0 / 65.0)
    assert vv.stolen_boot_seconds(62.0, None) == 0.0
    assert vv.stolen_boot_seconds(62.0, vv.CpuTimes(2, 30.0, 0.0, 0.0, 65.0)) == 0.0
    # Steal that came after the boot counts only in the boot's share of the uptime.
    assert vv.stolen_boot_seconds(40.0, vv.CpuTimes(2, 30.0, 0.0, 120.0, 600.0)) == pytest.approx(4.0)


def test_a_boot_stretched_by_the_host_passes_on_what_the_guest_spent() -> None:
    # `nix flake check` on a busy runner: 62 s of wall time, of which each vCPU waited 40 s for the host.
    guest = BootedGuest(62.0, proc_stat(uptime=65.0, cpus=2, busy=30.0, steal=80.0))
    facts = vv.check_boot(guest, vv.VmProfile(arch="x86_64"))
    assert facts.phases["total"] == 62.0 and facts.budget_seconds == 30.0
    assert facts.stolen_seconds == pytest.approx(38.154, abs=1e-3)
    assert facts.judged_seconds == pytest.approx(23.846, abs=1e-3)
    assert facts.cpu == vv.CpuTimes(cpus=2, busy=30.0, iowait=0.0, steal=80.0, uptime=65.0)


@pytest.mark.parametrize(("case", "total", "stat", "judged"), [
    # Slow on its own, nothing stolen.
    ("slow guest", 62.0, proc_stat(uptime=64.0, cpus=2, busy=50.0, steal=0.0), 62.0),
    # Slow on its own and on a busy host: what the host took is forgiven, the rest is not.
    ("slow guest on a busy host", 120.0, proc_stat(uptime=125.0, cpus=2, busy=90.0, steal=100.0), 72.0),
    # A unit sleeping out a timeout: little CPU (a CPU-time budget would pass it), no steal.
    ("waiting guest", 95.0, proc_stat(uptime=97.0, cpus=2, busy=4.0, steal=0.0), 95.0),
    # Steal long after the boot cannot excuse it.
    ("steal after the boot", 40.0, proc_stat(uptime=600.0, cpus=2, busy=9.0, steal=120.0), 36.0),
    # No /proc/stat: the wall time is judged.
    ("no /proc/stat", 62.0, None, 62.0),
])
def test_a_truly_slow_guest_still_fails_the_boot_budget(case: str, total: float, stat: str | None,
                                                        judged: float) -> None:
    with pytest.raises(vv.ValidationFailed) as failure:
        vv.check_boot(BootedGuest(total, stat), vv.VmProfile(arch="x86_64"))
    message = str(failure.value)
    assert message.startswith(f"vm: boot time: booted in {judged:.1f} s, over the budget of 30 s (kvm, x86_64): "
                              f"systemd-analyze's {total:.1f} s less "), (case, message)
    assert "systemd-analyze: Startup finished in" in message


def test_under_tcg_the_wall_time_is_judged_against_the_tcg_budget() -> None:
    no_steal = proc_stat(uptime=155.0, cpus=2, busy=200.0, steal=0.0)
    facts = vv.check_boot(BootedGuest(150.0, no_steal, virt="qemu"), vv.VmProfile(arch="x86_64"))
    assert (facts.accelerator, facts.budget_seconds, facts.judged_seconds) == ("tcg", 180.0, 150.0)
    with pytest.raises(vv.ValidationFailed, match=r"booted in 200\.0 s, over the budget of 180 s \(tcg, x86_64\)"):
        vv.check_boot(BootedGuest(200.0, no_steal, virt="qemu"), vv.VmProfile(arch="x86_64"))


def test_the_performance_record_has_the_judged_and_stolen_seconds(tmp_path: Path) -> None:
    facts = vv.check_boot(BootedGuest(62.0, proc_stat(uptime=65.0, cpus=2, busy=30.0, steal=80.0)),
                          vv.VmProfile(arch="x86_64"))
    path = vv.record_performance(tmp_path, "boot", None, 70.0, {"boot": asdict(facts)})
    entry = json.loads(path.read_text())["-"]
    assert (entry["boot_seconds"], entry["boot_budget_seconds"]) == (62.0, 30.0)
    assert (entry["boot_judged_seconds"], entry["boot_stolen_seconds"]) == pytest.approx((23.846, 38.154), abs=1e-3)
