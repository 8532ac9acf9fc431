"""Validate that a VM boots and works: boot, services, integration (seed 002), as reusable checks.

Each check is a plain function of Machines that raises ``ValidationFailed`` (an
``AssertionError``, so both drivers report a test failure) with a message that
names the machine, what was expected, what was seen and the diagnostics
(failed units with their journal, ``systemctl status``). Another flake
validates its own VM in a few lines of testScript::

    from vmtest.suites import vm_validation as vv
    profile = vv.profile_for(vm, arch="aarch64")
    vv.run_suite("boot", [("boots", lambda: vv.check_boot(vm, profile))], [vm], driver.out_dir, subtest)

``profile_for`` tells a NixOS guest (Home Manager, ``sshd.service``) from the
Debian twin (``dotfiles-<user>.service``); everything else is the same check.

The profile and the expectations a flake gives for it are ``vmtest.suites.vm_profile``'s, the
suite runner ``vmtest.suites.suite_runner``'s, the guest facts ``vmtest.guest_facts``' and the
SSH login ``vmtest.ssh``'s; this module names them all, as testScripts use them (``vv.…``).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from vmtest.errors import ValidationFailed
from vmtest.guest_facts import (
    CPU_TIMES_COMMAND,
    CpuTimes,
    accelerator_of,
    architecture,
    failed_units,
    kernel_release,
    parse_analyze_time,
    parse_cpu_times,
    parse_systemd_duration,
)
from vmtest.machine_api import Machine, driver_timeout, run
from vmtest.ssh import SshFacts, ssh_command, wait_for_ssh_login
from vmtest.suites.suite_runner import SuiteResult, record_performance, run_suite
from vmtest.suites.vm_profile import (
    BOOT_BUDGET_KVM_SECONDS,
    DEFAULT_MANAGED_FILES,
    EXPECTATIONS_VARIABLE,
    EXPECTATIONS_VERSION,
    ExpectationsError,
    VmProfile,
    expected_profile,
    parse_expectations,
    profile_for,
)
from vmtest.units import observe_units, parse_properties, show_command, unit_diagnostics

__all__ = [
    "BOOT_BUDGET_KVM_SECONDS", "CPU_TIMES_COMMAND", "DEFAULT_MANAGED_FILES", "EXPECTATIONS_VARIABLE",
    "EXPECTATIONS_VERSION", "GIT_CONFIG", "TCG_SLOWDOWN", "BootFacts", "CpuTimes", "ExpectationsError",
    "SshFacts", "SuiteResult", "ValidationFailed", "VmProfile", "accelerator_of", "boot_budget", "check_boot",
    "check_dev_tools_over_ssh", "check_docker_runs_local_image", "check_name_resolution", "check_no_internet",
    "check_services_active", "check_user_environment", "check_user_groups", "dev_tools_script", "dev_tools_title",
    "expected_profile", "git_identity", "parse_analyze_time", "parse_cpu_times", "parse_expectations",
    "parse_systemd_duration", "profile_for", "record_performance", "run_suite", "ssh_command",
    "stolen_boot_seconds", "wait_for_ssh_login",
]

# Boot budgets: seconds to a finished boot under KVM, multiplied under TCG, which is
# several times slower and slower still when it emulates another architecture.
#
# What is judged is the boot's wall time (systemd-analyze's total) less the part of it the host
# kept the guest from running: its steal time. `nix flake check` builds every VM check at once
# (on x86_64 six VMs, 11 vCPUs, on a 4-vCPU runner): the host runs other VMs' vCPUs while ours
# wait, the wall time stretches, the budget fails, and the failed run is cached (its artifacts
# derivation succeeds whatever the suite did), so the failure sticks. A guest sees exactly that wait: the kernel counts
# it as `steal` in /proc/stat (KVM's paravirtual steal clock, x86_64 and arm64). Why not budget
# the guest's CPU time instead: it drops every second the guest spends waiting (a unit sleeping
# out a timeout, a device that never comes), the commonest way a NixOS boot gets slow, and no
# budget for it was ever measured. Subtracting steal keeps those seconds counted: only time the
# guest wanted to run and the host did not give it is forgiven. The steal of all vCPUs is
# averaged (exact when the boot keeps every vCPU busy, less than the real delay when it runs on
# one, so it errs toward failing), and only the boot's share of the guest's uptime of it is
# credited (steal after the boot finished must not excuse the boot). TCG reports no steal: there
# the wall time stands, as its multiplier (measured on an idle host) allows for.
TCG_SLOWDOWN = {"x86_64": 6.0, "aarch64": 8.0}


def _fail(machine: Machine, check: str, problem: str) -> ValidationFailed:
    return ValidationFailed(f"{machine.name}: {check}: {problem}")


def boot_budget(profile: VmProfile, accelerator: str, arch: str) -> float:
    """The boot-time budget for this accelerator and architecture."""
    return profile.boot_budget_kvm_seconds * (TCG_SLOWDOWN.get(arch, 8.0) if accelerator == "tcg" else 1.0)


def stolen_boot_seconds(total: float, times: CpuTimes | None) -> float:
    """Seconds of a boot that took ``total`` wall seconds the host kept the guest from running.

    The steal of an average vCPU (``steal / cpus``), of which the boot's share of the uptime: the
    boot is ``total`` of the guest's ``uptime`` seconds. 0 when unknown (TCG has no steal clock).
    """
    if times is None or times.steal <= 0 or times.uptime <= 0:
        return 0.0
    return (times.steal / times.cpus) * min(1.0, total / times.uptime)



@dataclass
class BootFacts:
    arch: str
    kernel: str
    accelerator: str
    phases: dict[str, float]
    budget_seconds: float
    # The judged boot time (phases' total less the stolen seconds), and the guest CPU times behind it.
    judged_seconds: float = 0.0
    stolen_seconds: float = 0.0
    cpu: CpuTimes | None = None


def check_boot(machine: Machine, profile: VmProfile, *, timeout: float = 900) -> BootFacts:
    """Wait for ``multi-user.target``; check no unit failed, the architecture, and the boot time budget.

    The boot time judged is systemd-analyze's total less the seconds the host kept the guest from
    running (its steal time; see BOOT_BUDGET_KVM_SECONDS). Raises ValidationFailed listing the failed
    units with their journal, or the architecture seen, or the boot time against its budget.
    """
    machine.wait_for_unit("multi-user.target", timeout=driver_timeout(machine, timeout))
    failed = failed_units(machine)
    if failed:
        diagnostics = "\n".join(unit_diagnostics(machine, unit, journal_lines=15) for unit in failed[:3])
        raise _fail(machine, "systemctl --failed", f"{len(failed)} failed unit(s): {', '.join(failed)}\n{diagnostics}")
    arch = architecture(machine)
    if profile.arch is not None and arch != profile.arch:
        raise _fail(machine, "architecture", f"expected uname -m = {profile.arch}, the guest says {arch}")
    accelerator = accelerator_of(machine)
    budget = boot_budget(profile, accelerator, arch)
    # "Bootup is not yet finished" while jobs (e.g. a slow oneshot) still run.
    output = machine.wait_until_succeeds("systemd-analyze time", timeout=driver_timeout(machine, timeout))
    phases = parse_analyze_time(output)
    # Read once the boot has finished (systemd-analyze answered), so the boot's steal is all counted.
    status, stat = machine.execute(CPU_TIMES_COMMAND)
    try:
        times = parse_cpu_times(stat) if status == 0 else None
    except ValueError:
        times = None  # the wall time is judged, as when there is no steal
    total = phases["total"]
    stolen = stolen_boot_seconds(total, times)
    judged = total - stolen
    facts = BootFacts(arch, kernel_release(machine), accelerator, phases, budget,
                      judged_seconds=round(judged, 3), stolen_seconds=round(stolen, 3), cpu=times)
    if judged > budget:
        cpu = (f"guest CPU busy {times.busy:.1f} s, iowait {times.iowait:.1f} s over {times.cpus} vCPU(s) "
               f"in {times.uptime:.1f} s of uptime" if times is not None else "no /proc/stat")
        raise _fail(machine, "boot time", f"booted in {judged:.1f} s, over the budget of {budget:.0f} s "
                                          f"({accelerator}, {arch}): systemd-analyze's {total:.1f} s less "
                                          f"{stolen:.1f} s of steal time (the host running other work); {cpu}; "
                                          f"systemd-analyze: {output.strip()}")
    return facts


def check_services_active(machine: Machine, services: Iterable[str]) -> None:
    """Each service is active; raises ValidationFailed with its state and diagnostics otherwise."""
    for unit in observe_units(machine, list(services)):
        if unit.properties.get("ActiveState") != "active":
            raise _fail(machine, f"service {unit.unit}",
                        f"is {unit.state} (result {unit.result or '?'}), expected active\n"
                        f"{unit_diagnostics(machine, unit.unit, journal_lines=15)}")


def check_user_groups(machine: Machine, user: str, groups: Iterable[str]) -> None:
    """``user`` exists and belongs to every group; raises ValidationFailed naming the missing ones."""
    status, output = machine.execute(f"id -nG {shlex.quote(user)} 2>&1")
    if status != 0:
        raise _fail(machine, f"user {user}", f"does not exist ({output.strip()})")
    missing = [group for group in groups if group not in output.split()]
    if missing:
        raise _fail(machine, f"user {user}", f"is not in group(s) {', '.join(missing)}; id -nG: {output.strip()}")


def check_docker_runs_local_image(machine: Machine, user: str, rootfs: str, *, timeout: float = 300) -> str:
    """As ``user``, import ``rootfs`` (no registry) and run it; returns what the container printed.

    Raises ValidationFailed with docker's own error when import or run fails or
    the output is not the expected line.
    """
    tag = "vmtest/tiny:latest"
    as_user = f"runuser -u {shlex.quote(user)} --"
    script = (
        f"{as_user} docker import {shlex.quote(rootfs)} {tag} >/dev/null && "
        f"{as_user} docker run --rm --network none {tag} /busybox echo vmtest-container-ok 2>&1"
    )
    status, output = run(machine, f"({script}) 2>&1", timeout)
    if status != 0 or output.strip() != "vmtest-container-ok":
        raise _fail(machine, "docker run", f"expected 'vmtest-container-ok' from a container of {rootfs} "
                                           f"run as {user}; exit {status}, output: {output.strip()[-800:]!r}")
    return output.strip()


def check_user_environment(machine: Machine, profile: VmProfile) -> dict[str, str]:
    """The activation unit (Home Manager or its twin) ran and succeeded, and each managed file is a link
    into ``managed_root`` with exactly the expected content; returns file → link target. A profile
    without an activation unit skips the unit, one without a managed root the link check.

    Raises ValidationFailed naming the unit's result or the file and what differs.
    """
    unit = profile.activation_unit
    if unit is not None:
        _, shown = machine.execute(show_command(
            [unit], ["LoadState", "Result", "ExecMainStatus", "ExecMainStartTimestampMonotonic"]))
        properties = parse_properties(shown)
        ran = properties.get("ExecMainStartTimestampMonotonic", "0") not in ("", "0")
        succeeded = properties.get("Result") == "success" and properties.get("ExecMainStatus") == "0"
        if properties.get("LoadState") != "loaded" or not ran or not succeeded:
            raise _fail(machine, f"user environment ({unit})",
                        f"load state {properties.get('LoadState')}, ran: {ran}, result {properties.get('Result')}, "
                        f"exit status {properties.get('ExecMainStatus')}\n"
                        f"{unit_diagnostics(machine, unit, journal_lines=15)}")
    home = machine.succeed(f"getent passwd {shlex.quote(profile.user)} | cut -d: -f6").strip()
    targets: dict[str, str] = {}
    for relative, expected in profile.managed_files.items():
        path = shlex.quote(f"{home}/{relative}")
        if profile.managed_root is not None:
            status, target = machine.execute(f"test -L {path} && readlink -f {path}")
            if status != 0 or not target.strip().startswith(profile.managed_root):
                raise _fail(machine, f"managed file ~{profile.user}/{relative}",
                            f"expected a link into {profile.managed_root}, found: "
                            f"{machine.execute(f'ls -l {path} 2>&1')[1].strip()}")
        else:
            status, target = machine.execute(f"readlink -f {path}")
            if status != 0 or machine.execute(f"test -f {path}")[0] != 0:
                raise _fail(machine, f"managed file ~{profile.user}/{relative}", "does not exist")
        content = machine.succeed(f"cat {path}")
        if content != expected:
            raise _fail(machine, f"managed file ~{profile.user}/{relative}",
                        f"content differs: expected {expected!r}, found {content!r}")
        targets[relative] = target.strip()
    return targets


def check_no_internet(machine: Machine, address: str = "1.1.1.1", port: int = 443) -> None:
    """The VM cannot open a connection off this machine (the suite must never need one)."""
    status, _ = machine.execute(f"timeout 5 bash -c 'exec 3<>/dev/tcp/{address}/{port}' 2>/dev/null")
    if status == 0:
        raise _fail(machine, "isolation", f"reached {address}:{port}: the VM has a route off this machine")


def check_name_resolution(machine: Machine, peers: Iterable[str]) -> dict[str, str]:
    """Each peer name resolves on ``machine``; returns name → address."""
    addresses = {}
    for peer in peers:
        status, output = machine.execute(f"getent hosts {shlex.quote(peer)}")
        if status != 0 or not output.split():
            raise _fail(machine, "name resolution", f"{peer} does not resolve (getent hosts exit {status})")
        addresses[peer] = output.split()[0]
    return addresses


GIT_CONFIG = ".config/git/config"


def git_identity(profile: VmProfile) -> str:
    """``Name <email>`` from the ``[user]`` section of the profile's managed git config.

    Raises ValueError when the profile manages no git config or it names no user.
    """
    section, user = "", {}
    for line in profile.managed_files.get(GIT_CONFIG, "").splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]").strip().lower()
        elif section == "user" and "=" in line:
            key, _, value = line.partition("=")
            user[key.strip().lower()] = value.strip()
    if "name" not in user or "email" not in user:
        raise ValueError(f"the profile's {GIT_CONFIG} names no [user] name and email")
    return f"{user['name']} <{user['email']}>"


# Without a managed git config the commit needs an identity of its own (git refuses to guess one).
FALLBACK_GIT_NAME, FALLBACK_GIT_EMAIL = "vmtest", "vmtest@vm.invalid"
# The build-and-commit part runs when the profile expects all three on PATH.
BUILD_TOOLS = ("make", "gcc", "git")
DEV_SCRIPT = r"""set -eu
for tool in {tools}; do command -v "$tool" >/dev/null || missing="${{missing:-}} $tool"; done
if [ -n "${{missing:-}}" ]; then echo "missing tools:$missing"; exit 3; fi
echo "tools on PATH:" {tools}
"""
BUILD_SCRIPT = r"""work=$(mktemp -d); cd "$work"
git init -q
printf '#include <stdio.h>\nint main(void) {{ puts("hello from gcc"); return 0; }}\n' > hello.c
printf 'hello: hello.c\n\t$(CC) -O1 -o $@ $<\n' > Makefile
make -s hello
./hello
git add hello.c Makefile
git {identity}commit -q -m "build hello"
git log -1 --format='commit by %an <%ae>'
cd / && rm -rf "$work"
"""


def dev_tools_script(profile: VmProfile) -> tuple[str, list[str]]:
    """The script ``check_dev_tools_over_ssh`` runs as the user, and the last lines it must print.

    Every tool must be on PATH; when make, gcc and git all are expected, a C file is built,
    run and committed, with the managed git config's identity (or vmtest's own when the
    profile manages no git config).
    """
    tools = " ".join(shlex.quote(tool) for tool in profile.tools)
    script = DEV_SCRIPT.format(tools=tools)
    if not set(BUILD_TOOLS) <= set(profile.tools):
        return script, [f"tools on PATH: {' '.join(profile.tools)}"]
    if GIT_CONFIG in profile.managed_files:
        identity, option = git_identity(profile), ""
    else:
        identity = f"{FALLBACK_GIT_NAME} <{FALLBACK_GIT_EMAIL}>"
        option = f"-c user.name={FALLBACK_GIT_NAME} -c user.email={FALLBACK_GIT_EMAIL} "
    return script + BUILD_SCRIPT.format(identity=option), ["hello from gcc", f"commit by {identity}"]


def dev_tools_title(profile: VmProfile) -> str:
    """The dev tools step's name: what it exercises."""
    if set(BUILD_TOOLS) <= set(profile.tools):
        return "dev tools over ssh: make, gcc, git"
    return f"dev tools over ssh: {', '.join(profile.tools) or 'none expected'}"


def check_dev_tools_over_ssh(client: Machine, host: str, profile: VmProfile, key: str,
                             *, timeout: float = 600) -> list[str]:
    """Over SSH as the user: every tool is on PATH, and (when make, gcc and git are expected) make+gcc
    build and run a C file, git commits it with the identity from the managed git config.
    Returns the output lines.

    Raises ValidationFailed naming the missing tools or the failing step and its output.
    """
    script, expected = dev_tools_script(profile)
    status, output = run(client, f"{ssh_command(key, profile.user, host, script)} 2>&1", timeout)
    lines = output.strip().splitlines()
    if status == 3 and lines and lines[-1].startswith("missing tools:"):
        raise _fail(client, f"dev tools on {host}", f"{lines[-1]} (for {profile.user}, over ssh)")
    if status != 0 or lines[-len(expected):] != expected:
        raise _fail(client, f"dev tools on {host}", f"expected {expected} as the last lines; exit {status}, "
                                                    f"output: {output.strip()[-1200:]!r}")
    return lines
