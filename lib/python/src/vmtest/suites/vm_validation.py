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

What a flake expects of its own VM reaches the testScripts as JSON: vmtest's
``lib.<system>.vmValidation`` (lib/nix/vm-validation.nix) prepends
``VMTEST_EXPECTATIONS = "<json>"`` to tests/vm/*.py, and ``expected_profile`` reads it
(``parse_expectations`` checks its keys and types). Without it (the portable runtime,
``vmtest run tests/vm/boot.py``) the profile is this repository's VM, as before.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vmtest import logs
from vmtest.machine_api import Machine, driver_timeout, run
from vmtest.report import Report
from vmtest.suites.prepended import prepended_text, versioned_object
from vmtest.units import (
    accelerator_from_virt,
    detect_virt,
    failed_units,
    observe_units,
    parse_properties,
    show_command,
    unit_diagnostics,
)
from vmtest.waiting import Deadline, poll

# Files the user environment manages, relative to the home directory, and their exact
# content: the same files on NixOS (Home Manager) and on the Debian twin (machines/dotfiles).
DEFAULT_MANAGED_FILES: Mapping[str, str] = {
    ".config/git/config": (
        "[init]\n\tdefaultBranch = main\n[user]\n\temail = baleen@vm.invalid\n\tname = Baleen\n"
    ),
    ".vimrc": "set number\nset expandtab\nset shiftwidth=2\n",
}
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
BOOT_BUDGET_KVM_SECONDS = 30.0
TCG_SLOWDOWN = {"x86_64": 6.0, "aarch64": 8.0}
# /proc/stat counts in USER_HZ, which the kernel ABI fixes at 100 on x86_64 and arm64.
USER_HZ = 100
TIME_PART = re.compile(r"(?:(\d+)min\s*)?(?:(\d+(?:\.\d+)?)(ms|s|us))?")


class ValidationFailed(AssertionError):
    """A validation check did not hold; the message names the machine, the check and what was seen."""


@dataclass(frozen=True)
class VmProfile:
    """What the validated VM must provide.

    ``activation_unit`` None: no unit activates the user environment (the files are still
    checked); ``managed_root`` None: the managed files may be anything with the right content
    (no link into a store). ``docker`` False: no container check (and no tiny rootfs needed).
    """

    user: str = "baleen"
    arch: str | None = None
    services: tuple[str, ...] = ("sshd.service", "docker.service")
    user_groups: tuple[str, ...] = ("wheel", "docker")
    tools: tuple[str, ...] = ("git", "vim", "make", "gcc", "ssh")
    activation_unit: str | None = "home-manager-baleen.service"
    managed_root: str | None = "/nix/store/"
    managed_files: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MANAGED_FILES))
    tiny_rootfs: str = "/etc/vmtest/tiny-rootfs.tar"
    boot_budget_kvm_seconds: float = BOOT_BUDGET_KVM_SECONDS
    docker: bool = True


def profile_for(machine: Machine, *, user: str = "baleen", arch: str | None = None, **overrides: Any) -> VmProfile:
    """The profile of ``machine``: Home Manager on NixOS (``/etc/NIXOS``), the dotfiles unit on Debian.

    ``overrides`` are VmProfile fields; they win over what the flavour implies.
    """
    nixos = machine.execute("test -e /etc/NIXOS")[0] == 0
    flavour: dict[str, Any] = {
        "activation_unit": f"home-manager-{user}.service" if nixos else f"dotfiles-{user}.service",
        "managed_root": "/nix/store/" if nixos else f"/usr/share/dotfiles/{user}/",
    }
    return VmProfile(user=user, arch=arch, **{**flavour, **overrides})


# The testScript variable lib/nix/vm-validation.nix prepends: the expectations as JSON text.
EXPECTATIONS_VARIABLE = "VMTEST_EXPECTATIONS"
EXPECTATIONS_VERSION = 1


class ExpectationsError(ValueError):
    """The expectations JSON is malformed: the message names the key and what was wrong."""


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: {key} must be a list of strings, got {value!r}")
    return tuple(value)


def _optional_string(key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: {key} must be a string or null, got {value!r}")
    return value


def _managed_files(value: Any) -> dict[str, str]:
    """``{path: {"text": content}}`` or ``{path: {"source": file}}``: the content, read now (a source is a
    store path on the driver's host, in the testScript's closure)."""
    if not isinstance(value, dict):
        raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: managed_files must be an object, got {value!r}")
    files: dict[str, str] = {}
    for relative, spec in value.items():
        if not isinstance(spec, dict) or len(spec) != 1 or not ({"text", "source"} & set(spec)):
            raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: managed_files[{relative!r}] must be "
                                    f'{{"text": …}} or {{"source": …}}, got {spec!r}')
        if "text" in spec:
            files[relative] = str(spec["text"])
        else:
            try:
                files[relative] = Path(str(spec["source"])).read_text()
            except OSError as error:
                raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: managed_files[{relative!r}]: cannot read "
                                        f"its source: {error}") from error
    return files


def parse_expectations(text: str) -> dict[str, Any]:
    """VmProfile fields from the expectations JSON (version 1); raises ExpectationsError naming the key.

    Keys: ``user`` (required), ``arch``, ``services``, ``groups``, ``tools``, ``docker``,
    ``activation_unit``, ``managed_root``, ``managed_files``, ``boot_budget_kvm_seconds``.
    """
    data = versioned_object(text, EXPECTATIONS_VARIABLE, EXPECTATIONS_VERSION, ExpectationsError)
    known = {"version", "user", "arch", "services", "groups", "tools", "docker", "activation_unit",
             "managed_root", "managed_files", "boot_budget_kvm_seconds"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: unknown key(s) {', '.join(unknown)}")
    if not isinstance(data.get("user"), str) or not data["user"]:
        raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: user must be a non-empty string")
    fields: dict[str, Any] = {"user": data["user"]}
    if "arch" in data:
        fields["arch"] = _optional_string("arch", data["arch"])
    for key, name in (("services", "services"), ("groups", "user_groups"), ("tools", "tools")):
        if key in data:
            fields[name] = _strings(key, data[key])
    if "docker" in data:
        if not isinstance(data["docker"], bool):
            raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: docker must be true or false")
        fields["docker"] = data["docker"]
    for key in ("activation_unit", "managed_root"):
        if key in data:
            fields[key] = _optional_string(key, data[key])
    if "managed_files" in data:
        fields["managed_files"] = _managed_files(data["managed_files"])
    if "boot_budget_kvm_seconds" in data:
        budget = data["boot_budget_kvm_seconds"]
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0:
            raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: boot_budget_kvm_seconds must be a positive number")
        fields["boot_budget_kvm_seconds"] = float(budget)
    return fields


def expected_profile(machine: Machine, namespace: Mapping[str, Any], *, arch: str | None = None) -> VmProfile:
    """The profile the testScript was given (``VMTEST_EXPECTATIONS`` in its namespace), else this repository's.

    ``arch`` is the fallback architecture (the portable make targets' ``VMTEST_EXPECT_ARCH``);
    the expectations' own ``arch`` wins. The guest's flavour (NixOS or Debian) gives the
    activation unit and the managed root unless the expectations name them.
    """
    text = prepended_text(namespace, EXPECTATIONS_VARIABLE, "expectations'", ExpectationsError)
    if text is None:
        return profile_for(machine, arch=arch)
    fields = parse_expectations(text)
    fields.setdefault("arch", arch)
    return profile_for(machine, **fields)


def _fail(machine: Machine, check: str, problem: str) -> ValidationFailed:
    return ValidationFailed(f"{machine.name}: {check}: {problem}")


def parse_systemd_duration(text: str) -> float:
    """Seconds in a systemd duration such as ``1min 2.5s``, ``850ms`` or ``12.001s``."""
    total, matched = 0.0, False
    for minutes, amount, unit in TIME_PART.findall(text.strip()):
        if minutes:
            total, matched = total + 60 * int(minutes), True
        if amount:
            total += float(amount) * {"ms": 1e-3, "us": 1e-6, "s": 1.0}[unit]
            matched = True
    if not matched:
        raise ValueError(f"not a systemd duration: {text!r}")
    return total


def parse_analyze_time(output: str) -> dict[str, float]:
    """The phases of ``systemd-analyze time`` (kernel, initrd, userspace, total) in seconds."""
    first = output.strip().splitlines()[0] if output.strip() else ""
    match = re.match(r"Startup finished in (.+?) = (.+)$", first)
    if not match:
        raise ValueError(f"unexpected systemd-analyze output: {output.strip()[:200]!r}")
    phases = {name: parse_systemd_duration(amount)
              for amount, name in re.findall(r"([\d.]+\w*(?:\s+[\d.]+\w*)?) \((\w+)\)", match.group(1))}
    phases["total"] = parse_systemd_duration(match.group(2))
    return phases


def boot_budget(profile: VmProfile, accelerator: str, arch: str) -> float:
    """The boot-time budget for this accelerator and architecture."""
    return profile.boot_budget_kvm_seconds * (TCG_SLOWDOWN.get(arch, 8.0) if accelerator == "tcg" else 1.0)


@dataclass(frozen=True)
class CpuTimes:
    """The guest's CPU time since its kernel started (/proc/stat's ``cpu`` line), in seconds summed over
    its ``cpus`` vCPUs, and its ``uptime`` then."""

    cpus: int
    busy: float  # user, nice, system, irq, softirq (guest time is already in user and nice)
    iowait: float
    steal: float  # runnable, but the host ran something else
    uptime: float


# `cat /proc/uptime /proc/stat`: one command, one moment.
CPU_TIMES_COMMAND = "cat /proc/uptime /proc/stat"


def parse_cpu_times(output: str) -> CpuTimes:
    """``CpuTimes`` from the output of ``CPU_TIMES_COMMAND``; raises ValueError on anything else."""
    lines = output.strip().splitlines()
    try:
        uptime = float(lines[0].split()[0])
        total = next(line.split()[1:] for line in lines[1:] if line.split()[:1] == ["cpu"])
        ticks = [int(value) for value in total] + [0] * 8  # a field a kernel does not report counts 0
    except (IndexError, StopIteration, ValueError) as error:
        raise ValueError(f"not /proc/uptime and /proc/stat: {output.strip()[:200]!r}") from error
    cpus = sum(1 for line in lines[1:] if re.match(r"cpu\d+\s", line))
    if cpus == 0:
        raise ValueError(f"/proc/stat lists no CPU: {output.strip()[:200]!r}")
    user, nice, system, _idle, iowait, irq, softirq, steal = ticks[:8]
    return CpuTimes(cpus, (user + nice + system + irq + softirq) / USER_HZ, iowait / USER_HZ, steal / USER_HZ, uptime)


def stolen_boot_seconds(total: float, times: CpuTimes | None) -> float:
    """Seconds of a boot that took ``total`` wall seconds the host kept the guest from running.

    The steal of an average vCPU (``steal / cpus``), of which the boot's share of the uptime: the
    boot is ``total`` of the guest's ``uptime`` seconds. 0 when unknown (TCG has no steal clock).
    """
    if times is None or times.steal <= 0 or times.uptime <= 0:
        return 0.0
    return (times.steal / times.cpus) * min(1.0, total / times.uptime)



def accelerator_of(machine: Machine) -> str:
    """``kvm`` or ``tcg`` as the guest sees it (``systemd-detect-virt``: qemu means TCG)."""
    return accelerator_from_virt(detect_virt(machine), "none")


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
    arch = machine.succeed("uname -m").strip()
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
    facts = BootFacts(arch, machine.succeed("uname -r").strip(), accelerator, phases, budget,
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


SSH_OPTIONS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=10"


def ssh_command(key: str, user: str, host: str, script: str) -> str:
    """A shell command that runs ``script`` (any text) over SSH with ``key``; the script travels base64-encoded."""
    encoded = base64.b64encode(script.encode()).decode()
    return (f"ssh -i {shlex.quote(key)} {SSH_OPTIONS} -o LogLevel=ERROR {shlex.quote(f'{user}@{host}')} "
            f"{shlex.quote(f'echo {encoded} | base64 -d | bash -l')}")


@dataclass
class SshFacts:
    """The first successful key login: how long it was waited for, and the server's uptime then."""

    waited_seconds: float
    server_uptime_seconds: float


def wait_for_ssh_login(client: Machine, server: Machine, user: str, key: str, *, timeout: float = 300) -> SshFacts:
    """Retry an SSH key login from ``client`` to ``server`` until it works.

    Raises ValidationFailed with ssh's last error when it never works.
    """
    deadline = Deadline(timeout)
    last = ""

    def logged_in(_last_try: bool) -> bool:
        nonlocal last
        status, output = client.execute(f"{ssh_command(key, user, server.name, 'id -un')} 2>&1")
        last = f"exit {status}: {output.strip()[-400:]}"
        return status == 0 and output.strip() == user

    if not poll(logged_in, deadline, last_try=False):
        raise _fail(client, f"ssh {user}@{server.name}", f"no key login after {timeout:.0f} s; last attempt: {last}")
    uptime = float(server.succeed("cut -d' ' -f1 /proc/uptime").strip())
    return SshFacts(round(deadline.elapsed(), 2), round(uptime, 2))


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
        report.write(junit_name=f"{name}-junit.xml", summary_name=f"{name}-summary.json",
                     html_name=f"{name}-report.html")
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
    path = out / "vm-validation-perf.json"
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
