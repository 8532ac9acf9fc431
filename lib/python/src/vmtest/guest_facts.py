"""Facts about a guest, each read once from the guest itself: its virtualisation and the accelerator
that implies, its failed units, its architecture and kernel, and how long it took to boot.

Where a new observation of a guest goes. Checks that judge the facts (a boot budget, an expected
architecture) are the suites'; the waits are ``vmtest.health``'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmtest.machine_api import Machine

__all__ = [
    "CpuTimes", "accelerator_from_virt", "accelerator_of", "architecture", "detect_virt", "failed_units",
    "kernel_release", "parse_analyze_time", "parse_cpu_times", "parse_systemd_duration"
]

# /proc/stat counts in USER_HZ, which the kernel ABI fixes at 100 on x86_64 and arm64.
USER_HZ = 100
TIME_PART = re.compile(r"(?:(\d+)min\s*)?(?:(\d+(?:\.\d+)?)(ms|s|us))?")


# -- virtualisation and accelerator ----------------------------------------------------------------

def detect_virt(machine: Machine) -> str:
    """What ``systemd-detect-virt`` says in the guest (``kvm``, ``qemu``, …; empty for none)."""
    _, virt = machine.execute("systemd-detect-virt 2>/dev/null || true")
    return virt.strip()


def accelerator_from_virt(virt: str, unknown: str) -> str:
    """The accelerator ``systemd-detect-virt`` implies: kvm, tcg (it says ``qemu``), else its answer or ``unknown``."""
    return {"kvm": "kvm", "qemu": "tcg"}.get(virt, virt or unknown)


def accelerator_of(machine: Machine) -> str:
    """``kvm`` or ``tcg`` as the guest sees it (``systemd-detect-virt``: qemu means TCG)."""
    return accelerator_from_virt(detect_virt(machine), "none")


# -- units, architecture, kernel ----------------------------------------------------------------------

def failed_units(machine: Machine) -> list[str]:
    """The names of the units systemd reports as failed."""
    _, output = machine.execute("systemctl list-units --failed --plain --no-legend --no-pager | awk '{print $1}'")
    return output.split()


def architecture(machine: Machine) -> str:
    """The guest's architecture as ``uname -m`` says it (``x86_64``, ``aarch64``)."""
    return machine.succeed("uname -m").strip()


def kernel_release(machine: Machine) -> str:
    """The guest's kernel release (``uname -r``)."""
    return machine.succeed("uname -r").strip()


# -- boot time --------------------------------------------------------------------------------------

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
