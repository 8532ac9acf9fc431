"""``vmtest doctor``: is everything the portable runtime needs on this host?

Each check is a small function returning a :class:`CheckResult`; what a check
looks at comes in a :class:`Host` (PATH, binfmt_misc, cache), so tests pass a
fake one. ``TOOLS`` is the one table of commands and the Debian packages that
provide them: every fix hint is derived from it. ``vmtest run``/``build`` run
the same checks as a cheap preflight (:func:`preflight`) before any work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vmtest.errors import ImageBuildError
from vmtest.portable.accel import HOST_MACHINE, Accelerator, select_accelerator
from vmtest.portable.image.builder import cache_dir, debian_mirror, image_directory
from vmtest.portable.image.recipe import SUITES, Recipe
from vmtest.portable.image.steps import CHROOT_PATH

ARCHES = ("x86_64", "aarch64")
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# Where Debian installs commands: one found here but not on PATH (a user PATH lacks the sbin
# directories) is installed, and the fix is the PATH, not apt-get.
STANDARD_PATH = CHROOT_PATH
# An image build peaks at about 2 GB (root file system plus disk image); a few images fill 5 GiB.
MIN_FREE_CACHE_BYTES = 5 * 1024**3
MIRROR_TIMEOUT = 5.0
VERSION_TIMEOUT = 10.0

# "run": booting a machine of that arch; "build": building an image of that arch.
Stage = Literal["run", "build"]


@dataclass(frozen=True)
class Tool:
    """A command the runtime calls, the Debian package providing it, and when it is needed."""

    command: str
    package: str
    why: str
    stage: Stage
    guest_arch: str | None = None  # only for guests/images of this arch; None: every arch
    foreign_only: bool = False  # only when that arch is not the host's (emulated image builds)
    required: bool = True  # False: the runtime works without it, a feature or speed is lost
    show_version: bool = False

    def needed_for(self, arch: str, host_machine: str) -> bool:
        """Whether a guest or image of ``arch`` needs this tool on a ``host_machine`` host."""
        if self.guest_arch not in (None, arch):
            return False
        return not (self.foreign_only and arch == host_machine)


TOOLS: tuple[Tool, ...] = (
    Tool("qemu-system-x86_64", "qemu-system-x86", "boots x86_64 guests", "run", "x86_64", show_version=True),
    Tool("qemu-system-aarch64", "qemu-system-arm", "boots aarch64 guests", "run", "aarch64", show_version=True),
    Tool("qemu-img", "qemu-utils", "creates each machine's qcow2 overlay", "run", show_version=True),
    Tool("vde_switch", "vde2", "one hub per VLAN", "run"),
    Tool("socat", "socat", "shell_interact and the interactive shell's terminal", "run", required=False),
    Tool("systemd-nspawn", "systemd-container", "boots machines of kind \"container\"", "run", required=False),
    Tool("mmdebstrap", "mmdebstrap", "builds every image's root file system", "build"),
    Tool("mke2fs", "e2fsprogs", "writes the image's ext4 disk", "build"),
    Tool("dpkg-divert", "dpkg", "diverts update-initramfs while an image is built", "build"),
    Tool("depmod", "kmod", "indexes the image kernel's modules", "build"),
    Tool("zstd", "zstd", "decompresses the kernel modules for the initramfs", "build"),
    Tool("cpio", "cpio", "reads initramfs archives (tests, debugging an initrd)", "build", required=False),
    Tool("arch-test", "arch-test", "mmdebstrap's check that a foreign architecture can run", "build",
         foreign_only=True),
    Tool("qemu-aarch64-static", "qemu-user-static", "runs aarch64 maintainer scripts while building",
         "build", "aarch64", foreign_only=True),
    Tool("qemu-x86_64-static", "qemu-user-static", "runs x86_64 maintainer scripts while building",
         "build", "x86_64", foreign_only=True),
    Tool("update-binfmts", "binfmt-support", "registers qemu-user with binfmt_misc", "build", foreign_only=True),
    Tool("systemctl", "systemd", "systemctl --root replays a foreign image's unit presets natively", "build",
         foreign_only=True),
    Tool("systemd-hwdb", "udev", "compiles a foreign image's hardware database natively (else 40 s emulated)",
         "build", foreign_only=True, required=False),
)
_TOOLS_BY_COMMAND = {tool.command: tool for tool in TOOLS}


def install_hint(*commands: str) -> str:
    """``apt-get install`` of the packages providing ``commands`` (looked up in ``TOOLS``)."""
    packages = dict.fromkeys(_TOOLS_BY_COMMAND[command].package for command in commands)
    return "apt-get install " + " ".join(packages)


@dataclass(frozen=True)
class Host:
    """What the checks look at: a fake one makes them testable."""

    path: str  # the PATH commands are looked up in
    machine: str  # uname -m
    binfmt_dir: Path
    cache: Path
    standard_path: str = ""  # where a command missing from PATH may be installed all the same

    @classmethod
    def current(cls) -> Host:
        """This host, as the environment describes it now."""
        return cls(os.environ.get("PATH", os.defpath), HOST_MACHINE, BINFMT_DIR, cache_dir(), STANDARD_PATH)


@dataclass(frozen=True)
class CheckResult:
    """One finding: what was checked, whether it holds, and how to fix it if not."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True
    arches: tuple[str, ...] = ARCHES  # the guest architectures that need it
    stage: Stage = "build"

    @property
    def status(self) -> str:
        """``ok``, ``FAIL`` (a required check failed) or ``warn``."""
        if self.ok:
            return "ok"
        return "FAIL" if self.required else "warn"

    def line(self) -> str:
        """The report line of this result."""
        detail = " | ".join(part.strip() for part in self.detail.splitlines() if part.strip())
        text = f"{self.status:<4}  {self.name}: {detail}"
        return text if self.ok or not self.fix else f"{text} (fix: {self.fix})"


def check_tool(tool: Tool, host: Host, arches: tuple[str, ...]) -> CheckResult:
    """Whether ``tool.command`` is on the host's PATH (and, for QEMU, answers ``--version``)."""
    def result(ok: bool, detail: str) -> CheckResult:
        return CheckResult(tool.command, ok, detail, "" if ok else install_hint(tool.command),
                           tool.required, arches, tool.stage)

    found = shutil.which(tool.command, path=host.path)
    if found is None:
        elsewhere = shutil.which(tool.command, path=host.standard_path) if host.standard_path else None
        if elsewhere is not None:
            directory = os.path.dirname(elsewhere)
            return CheckResult(tool.command, False, f"installed as {elsewhere}, but {directory} is not on PATH",
                               f"add {directory} to PATH", tool.required, arches, tool.stage)
        return result(False, f"not found on PATH (package {tool.package}; {tool.why})")
    if not tool.show_version:
        return result(True, found)
    try:
        answer = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT,
                                check=False, env={**os.environ, "PATH": host.path})
    except (OSError, subprocess.TimeoutExpired) as error:
        return result(False, f"{found} --version failed: {error}")
    first_line = (answer.stdout.strip().splitlines() or [""])[0]
    if answer.returncode != 0 or not first_line:
        return result(False, f"{found} --version exited with {answer.returncode}: {answer.stderr.strip()[:200]}")
    return result(True, f"{first_line} ({found})")


def check_binfmt(arch: str, host: Host) -> CheckResult:
    """Whether binfmt_misc is mounted with an enabled ``qemu-<arch>`` entry (emulated image builds)."""
    entry = f"qemu-{arch}"
    fix = f"{install_hint(f'qemu-{arch}-static', 'update-binfmts')} && update-binfmts --enable {entry}"
    name = f"binfmt_misc {entry}"
    if not (host.binfmt_dir / "status").exists():
        mount = f"mount -t binfmt_misc binfmt_misc {host.binfmt_dir}"
        return CheckResult(name, False, f"binfmt_misc is not mounted at {host.binfmt_dir}",
                           f"{mount} && {fix}", arches=(arch,))
    try:
        state = (host.binfmt_dir / entry).read_text()
    except OSError:
        return CheckResult(name, False, f"no {entry} entry in {host.binfmt_dir}", fix, arches=(arch,))
    if state.splitlines()[:1] != ["enabled"]:
        return CheckResult(name, False, f"the {entry} entry is disabled", f"update-binfmts --enable {entry}",
                           arches=(arch,))
    interpreter = next((line.split(None, 1)[1] for line in state.splitlines() if line.startswith("interpreter ")),
                       "?")
    return CheckResult(name, True, f"enabled ({interpreter})", arches=(arch,))


def check_accelerator(arch: str, select: Callable[[str], Accelerator] = select_accelerator) -> CheckResult:
    """The accelerator ``arch`` guests get (KVM probe, cached per boot); TCG is information, not a failure.

    Fails only when ``VMTEST_ACCEL`` is invalid (``select`` raises ValueError).
    """
    name = f"accelerator ({arch})"
    try:
        accelerator = select(arch)
    except ValueError as error:
        return CheckResult(name, False, str(error), "unset VMTEST_ACCEL or set it to kvm or tcg",
                           arches=(arch,), stage="run")
    return CheckResult(name, True, f"{accelerator.name}: {accelerator.reason}", arches=(arch,), stage="run")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_cache(host: Host, arches: tuple[str, ...] = ARCHES,
                min_free_bytes: int = MIN_FREE_CACHE_BYTES) -> CheckResult:
    """Whether the image cache exists or can be created, is writable, and has ``min_free_bytes`` free."""
    name = "image cache"
    existing = _nearest_existing(host.cache)
    if not existing.is_dir():
        what = "is not a directory" if existing == host.cache else f"cannot be created: {existing} is not a directory"
        return CheckResult(name, False, f"{host.cache} {what}", "set VMTEST_CACHE to a writable directory",
                           arches=arches)
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == host.cache else f"cannot be created ({existing} is not writable)"
        return CheckResult(name, False, f"{host.cache} {what}",
                           "chown it to this user or set VMTEST_CACHE to a writable directory", arches=arches)
    free = shutil.disk_usage(existing).free
    gib = f"{free / 1024**3:.1f} GiB free"
    state = "exists" if existing == host.cache else "will be created"
    if free < min_free_bytes:
        return CheckResult(name, False, f"{host.cache} {state}, only {gib} (needs {min_free_bytes / 1024**3:.0f})",
                           "free space there or set VMTEST_CACHE to a roomier file system", arches=arches)
    return CheckResult(name, True, f"{host.cache} {state}, writable, {gib}", arches=arches)


def check_mirror(suite: str, mirror: Callable[[], str] = debian_mirror, timeout: float = MIRROR_TIMEOUT,
                 arches: tuple[str, ...] = ARCHES) -> CheckResult:
    """Whether ``<mirror>/dists/<suite>/Release`` answers within ``timeout`` seconds."""
    name = f"Debian mirror ({suite})"
    fix = "set VMTEST_DEBIAN_MIRROR to a reachable Debian mirror"
    try:
        base = mirror().rstrip("/")
    except ImageBuildError as error:
        return CheckResult(name, False, str(error), fix, arches=arches)
    url = f"{base}/dists/{suite}/Release"
    try:
        # GET, not HEAD (not every mirror or proxy answers HEAD); only the headers are read.
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            status = getattr(answer, "status", None) or 200
    except urllib.error.HTTPError as error:
        return CheckResult(name, False, f"{url}: HTTP {error.code} {error.reason}", fix, arches=arches)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return CheckResult(name, False, f"{url} is unreachable: {reason}", fix, arches=arches)
    if status != 200:
        return CheckResult(name, False, f"{url}: HTTP {status}", fix, arches=arches)
    return CheckResult(name, True, f"{url} answers", arches=arches)


def tool_checks(host: Host, arches: Collection[str], stage: Stage) -> list[CheckResult]:
    """A check of every ``stage`` tool that a guest or image of one of ``arches`` needs."""
    results = []
    for tool in TOOLS:
        concerned = tuple(arch for arch in ARCHES if arch in arches and tool.needed_for(arch, host.machine))
        if tool.stage == stage and concerned:
            results.append(check_tool(tool, host, concerned))
    return results


def build_checks(host: Host, arches: Collection[str], suites: Iterable[str], *, offline: bool) -> list[CheckResult]:
    """What building images of ``arches`` needs: tools, binfmt_misc for foreign ones, cache, mirror."""
    concerned = tuple(arch for arch in ARCHES if arch in arches)
    results = tool_checks(host, concerned, "build")
    results += [check_binfmt(arch, host) for arch in concerned if arch != host.machine]
    results.append(check_cache(host, concerned))
    if not offline:
        results += [check_mirror(suite, arches=concerned) for suite in suites]
    return results


def run_checks(host: Host, arches: Collection[str] = ARCHES, *, offline: bool = False,
               select: Callable[[str], Accelerator] = select_accelerator) -> list[CheckResult]:
    """Every check ``vmtest doctor`` makes for guests and images of ``arches``."""
    results = tool_checks(host, arches, "run")
    results += [check_accelerator(arch, select) for arch in ARCHES if arch in arches]
    return results + build_checks(host, arches, SUITES, offline=offline)


def passed(results: Iterable[CheckResult]) -> bool:
    """True when no required check failed (warnings do not count)."""
    return all(result.ok or not result.required for result in results)


def preflight(recipes: Sequence[Recipe], *, booting: bool, host: Host | None = None) -> list[str]:
    """One line per required piece missing before ``recipes`` are built (and booted); empty when all is there.

    Cheap: no KVM probe; build tools, cache and mirror only for images not cached yet.
    """
    host = host or Host.current()
    unbuilt = [recipe for recipe in recipes if not (image_directory(recipe, host.cache) / "image.json").is_file()]
    results = tool_checks(host, {recipe.machine_arch for recipe in recipes}, "run") if booting else []
    if unbuilt:
        results += build_checks(host, {recipe.machine_arch for recipe in unbuilt},
                                sorted({recipe.suite for recipe in unbuilt}), offline=False)
    return [_missing_line(result) for result in results if not result.ok and result.required]


def _missing_line(result: CheckResult) -> str:
    what = "machines" if result.stage == "run" else "images"
    subject = result.name if result.name in _TOOLS_BY_COMMAND else f"{result.name}: {result.detail}"
    return f"missing for {' and '.join(result.arches)} {what}: {subject} ({result.fix})"
