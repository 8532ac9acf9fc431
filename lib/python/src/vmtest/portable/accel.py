"""Choose the QEMU accelerator: KVM only if it really runs a guest, else TCG, said loudly.

``/dev/kvm`` can open fine while guests hang (nested virtualisation without
vmx, as on this project's build machines). A 5-instruction boot sector that
writes to QEMU's isa-debug-exit port proves KVM executes guest code; the
verdict is cached per host boot.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vmtest.portable.runtime.process import run_tied

PROBE_DEADLINE = 5.0
# The probe takes ~0.2 s under TCG; a KVM slower than this is of no use.
PROBE_FAST_ENOUGH = 1.5
# mov al,1 ; out 0xf4,al ; hlt ; jmp $ -- QEMU exits with status (1 << 1) | 1 = 3
_BOOT_SECTOR = bytes([0xB0, 0x01, 0xE6, 0xF4, 0xF4, 0xEB, 0xFE]).ljust(510, b"\0") + b"\x55\xaa"
HOST_MACHINE = platform.machine()
# How much longer things take under TCG than under KVM, for budgets and timeouts.
TCG_SLOWDOWN = 4.0


@dataclass(frozen=True)
class Accelerator:
    """The accelerator a guest of ``guest_arch`` gets, and why."""

    name: str  # "kvm" or "tcg"
    reason: str
    guest_arch: str

    @property
    def timeout_factor(self) -> float:
        """Multiply KVM-calibrated budgets by this."""
        return 1.0 if self.name == "kvm" else TCG_SLOWDOWN


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def probe_kvm(deadline: float = PROBE_DEADLINE) -> tuple[bool, str]:
    """Boot the probe sector under KVM; (works, explanation)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    if HOST_MACHINE != "x86_64":
        return False, f"the KVM probe only exists for x86_64 hosts (this is {HOST_MACHINE})"
    with tempfile.TemporaryDirectory(prefix="vmtest-kvm-probe-") as directory:
        disk = Path(directory) / "probe.img"
        disk.write_bytes(_BOOT_SECTOR)
        started = time.monotonic()
        try:
            # Tied to vmtest: a probe guest that hangs must not outlive a vmtest that was killed.
            result = run_tied(
                ["qemu-system-x86_64", "-machine", "pc,accel=kvm", "-cpu", "max", "-nodefaults", "-display", "none",
                 "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                 "-drive", f"file={disk},format=raw,index=0,media=disk"],
                capture_output=True, timeout=deadline, check=False,
            )
        except subprocess.TimeoutExpired:
            return False, f"/dev/kvm opens but a probe guest did not run within {deadline:.0f} s (no usable VT-x/AMD-V)"
        except FileNotFoundError:
            return False, "qemu-system-x86_64 is not installed"
        elapsed = time.monotonic() - started
        if result.returncode == 3 and elapsed <= PROBE_FAST_ENOUGH:
            return True, f"a probe guest ran under KVM in {elapsed:.2f} s"
        if result.returncode == 3:
            return False, (f"a probe guest ran under KVM but took {elapsed:.1f} s "
                           f"(TCG needs about 0.2 s): KVM is nested or emulated here")
        stderr = result.stderr.decode(errors="replace").strip()[:300]
        return False, f"the KVM probe exited with {result.returncode}: {stderr}"


def select_accelerator(guest_arch: str, cache: Path | None = None) -> Accelerator:
    """The accelerator for a ``guest_arch`` (x86_64/aarch64) guest; ``VMTEST_ACCEL`` forces one."""
    forced = os.environ.get("VMTEST_ACCEL", "").strip().lower()
    if forced in ("kvm", "tcg"):
        return Accelerator(forced, f"forced by VMTEST_ACCEL={forced}", guest_arch)
    if forced:
        raise ValueError(f"VMTEST_ACCEL must be 'kvm' or 'tcg', not {forced!r}")
    if guest_arch != HOST_MACHINE:
        return Accelerator("tcg", f"{guest_arch} guest on a {HOST_MACHINE} host is emulated", guest_arch)
    cache_file = (cache or Path.home() / ".cache" / "vmtest") / f"kvm-probe-{_boot_id()}.json"
    try:
        works, reason = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        works, reason = probe_kvm()
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps([works, reason]))
    if works:
        return Accelerator("kvm", reason, guest_arch)
    fallback = f"KVM unusable: {reason}; falling back to TCG (about {TCG_SLOWDOWN:.0f}x slower)"
    return Accelerator("tcg", fallback, guest_arch)


def describe(accelerator: Accelerator) -> dict[str, str]:
    """The accelerator as a flat dict for reports."""
    return {key: str(value) for key, value in asdict(accelerator).items()}
