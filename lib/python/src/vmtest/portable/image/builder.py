"""Build (or find in the cache) a bootable image from a recipe.

An image is a directory ``<cache>/images/<name>-<arch>-<hash>/`` holding
``vmlinuz``, ``initrd``, ``disk.img`` (raw ext4) and ``image.json``. The hash
covers the recipe, the contents of its files and this builder's version, so an
edit anywhere rebuilds and nothing else does. Directories appear atomically.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TextIO

from vmtest.errors import ImageBuildError
from vmtest.portable.image.build_progress import BuildWatcher, previous_marks
from vmtest.portable.image.initramfs import build_initramfs
from vmtest.portable.image.mounts import remove_build_dir
from vmtest.portable.image.recipe import Recipe
from vmtest.portable.image.steps import CHROOT_PATH, DOC_EXCLUDES, step_line
from vmtest.portable.runtime.process import terminate_group
from vmtest.portable.runtime.signals import shielded
from vmtest.progress.events import Emit, Event
from vmtest.progress.plain import stamp

BUILDER_VERSION = "6"
BASE_PACKAGES = ("systemd", "systemd-sysv", "udev", "dbus", "iproute2", "kmod", "procps", "busybox-static")
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())

Log = Callable[[str], None]


@dataclass(frozen=True)
class Image:
    """A built image: what QEMU boots."""

    directory: Path
    recipe: Recipe
    kernel_version: str

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd"

    @property
    def disk(self) -> Path:
        return self.directory / "disk.img"


def cache_dir() -> Path:
    """The image cache: ``$VMTEST_CACHE`` or ``~/.cache/vmtest`` (outside any repository)."""
    configured = os.environ.get("VMTEST_CACHE")
    base = Path(configured) if configured else Path.home() / ".cache" / "vmtest"
    return base.expanduser()


def debian_mirror() -> str:
    """The Debian mirror: ``$VMTEST_DEBIAN_MIRROR``, else the one the host's apt uses."""
    configured = os.environ.get("VMTEST_DEBIAN_MIRROR")
    if configured:
        return configured
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in candidates:
        if not source.is_file():
            continue
        for match in re.finditer(r"(?:URIs:|deb)\s+(?:\[[^\]]*\]\s+)?(\S+/debian)/?\s", source.read_text() + "\n"):
            return match.group(1)
    raise ImageBuildError(
        "no Debian mirror found in the host's apt sources; set VMTEST_DEBIAN_MIRROR to one"
    )


def _guest_bytes() -> bytes:
    package = resources.files("vmtest.portable.image")
    guest = package.joinpath("guest")
    parts = sorted((entry.name, entry.read_bytes()) for entry in guest.iterdir() if entry.is_file())
    # The customize hook's code: configure.py and the modules it runs in the image build.
    hook = b"".join(package.joinpath(name).read_bytes()
                    for name in ("configure.py", "foreign.py", "steps.py", "initramfs.py"))
    return b"".join(name.encode() + data for name, data in parts) + hook


def image_key(recipe: Recipe) -> str:
    """The cache key of ``recipe``'s image."""
    return recipe.content_hash(BUILDER_VERSION, _guest_bytes())


def image_directory(recipe: Recipe, cache: Path | None = None) -> Path:
    """Where ``recipe``'s image lives (or will) in the cache."""
    return (cache or cache_dir()) / "images" / f"{recipe.name}-{recipe.arch}-{image_key(recipe)}"


def _load(directory: Path, recipe: Recipe) -> Image | None:
    manifest = directory / "image.json"
    if not manifest.is_file():
        return None
    data = json.loads(manifest.read_text())
    return Image(directory, recipe, data["kernel_version"])


def ensure_foreign_arch(arch: str) -> None:
    """Make sure binfmt_misc runs ``arch`` binaries through qemu-user-static."""
    if arch == HOST_ARCH:
        return
    qemu_name = {"arm64": "qemu-aarch64", "amd64": "qemu-x86_64"}[arch]
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], check=False)
    if not (binfmt / qemu_name).exists() or "enabled" not in (binfmt / qemu_name).read_text():
        subprocess.run(["update-binfmts", "--enable", qemu_name], capture_output=True, check=False)
    if not (binfmt / qemu_name).exists():
        raise ImageBuildError(
            f"cannot build {arch} images: binfmt_misc has no {qemu_name} entry "
            "(install qemu-user-static and binfmt-support, and mount binfmt_misc)"
        )


def _explain_mmdebstrap_failure(recipe: Recipe, output: str) -> str:
    unknown = re.findall(r"Unable to locate package (\S+)", output)
    unknown += re.findall(r"Package '?(\S+?)'? has no installation candidate", output)
    if unknown:
        return (
            f"recipe {recipe.path}: packages: {', '.join(sorted(set(unknown)))}: "
            f"no such package in Debian {recipe.suite}/{recipe.arch}"
        )
    errors = [line for line in output.splitlines() if line.startswith(("E:", "dpkg:", "mmdebstrap: error"))]
    tail = "\n".join(errors[-15:] or output.splitlines()[-30:])
    return f"recipe {recipe.path}: mmdebstrap failed for {recipe.suite}/{recipe.arch}:\n{tail}"


def _bootstrap(recipe: Recipe, rootfs: Path, build_log: BuildLog) -> None:
    packages = [*BASE_PACKAGES, *recipe.packages]
    src = Path(__file__).resolve().parents[3]  # src/, above vmtest/portable/image/
    configure = f"PYTHONPATH={shlex.quote(str(src))} {shlex.quote(sys.executable)} -m vmtest.portable.image.configure"
    # A foreign architecture's packages are unpacked by the host (see configure.py); only
    # the native case lets apt inside the image install them.
    foreign = recipe.arch != HOST_ARCH
    include = [] if foreign else [f"--include={','.join(packages)}"]
    hook_packages = " " + shlex.join(packages) if foreign else ""
    # update-initramfs would run twice under emulation for nothing: vmtest assembles its own.
    divert = (
        'dpkg-divert --root "$1" --quiet --local --rename --add /usr/sbin/update-initramfs'
        ' && printf "#!/bin/sh\\nexit 0\\n" > "$1/usr/sbin/update-initramfs"'
        ' && chmod 755 "$1/usr/sbin/update-initramfs"'
    )
    # Foreign: maintainer scripts from the essential set on see recording shadows of the
    # slow service helpers (configure.py, RECORDED_HELPERS), replayed natively at the end.
    shadows = [f'--extract-hook={configure} --shadow-helpers "$1"'] if foreign else []
    argv = [
        "mmdebstrap", "--mode=root", "--variant=apt", f"--arch={recipe.arch}", "--format=directory",
        *include, *shadows,
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in DOC_EXCLUDES),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        f"--essential-hook={divert}",
        f'--customize-hook={configure} "$1" {shlex.quote(str(recipe.path))}{hook_packages}',
        recipe.suite, str(rootfs), debian_mirror(),
    ]
    path = f"{CHROOT_PATH}:{os.environ.get('PATH', '')}"
    returncode = _run_timestamped(argv, build_log, {**os.environ, "PATH": path})
    log_file = build_log.path
    if returncode != 0:
        output = re.sub(r"(?m)^\[ *[0-9.]+s\] ", "", log_file.read_text(errors="replace"))
        configure_errors = [line for line in output.splitlines() if line.startswith("vmtest: ")]
        if configure_errors:
            raise ImageBuildError(configure_errors[-1].removeprefix("vmtest: ") + f" (build log: {log_file})")
        raise ImageBuildError(_explain_mmdebstrap_failure(recipe, output) + f"\n(build log: {log_file})")


class BuildLog:
    """The build log: each line stamped with the seconds since the build started, and passed to
    ``on_line`` (seconds, text) as it is written, which is how a running build shows its progress.

    The stamps are how a slow build is diagnosed: they show which phase
    (download, essential set, hooks, configure steps) took the time.
    """

    def __init__(self, path: Path, on_line: Callable[[float, str], None]) -> None:
        self.path = path
        self.on_line = on_line
        self.started = time.monotonic()

    def stamp(self, log: TextIO, line: str) -> None:
        """Write ``line`` (ending in a newline) stamped to the open log, and report it."""
        seconds = time.monotonic() - self.started
        log.write(f"{stamp(seconds)} {line}")
        log.flush()
        self.on_line(seconds, line.rstrip("\n"))

    def step_done(self, label: str, started: float) -> float:
        """Log the builder's own step ``label`` (begun at ``started``) as the hook logs its steps; returns now."""
        now = time.monotonic()
        with self.path.open("a") as log:
            self.stamp(log, step_line(label, now - started) + "\n")
        return now


def _run_timestamped(argv: list[str], build_log: BuildLog, env: dict[str, str]) -> int:
    """Run ``argv`` with its output in ``build_log``, line by line as it comes."""
    with build_log.path.open("w") as log:
        log.write("$ " + shlex.join(argv) + "\n")
        log.flush()
        # Its own session: a terminal's Ctrl-C reaches vmtest only, which stops the whole build
        # (mmdebstrap and its hooks) and then removes what it left.
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace",
                                   start_new_session=True)
        assert process.stdout is not None
        try:
            for line in process.stdout:
                build_log.stamp(log, line)
            return process.wait()
        except BaseException:
            with shielded():
                terminate_group(process, grace=10)
                build_log.stamp(log, "vmtest: build stopped\n")
            raise


def _unwatched(event: Event) -> None:
    return None


def _disk_usage_mb(root: Path) -> int:
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except OSError:
                continue
    return total // (1024 * 1024)


def build_image(recipe: Recipe, cache: Path | None = None, log: Log | None = None,
                progress: Emit | None = None) -> Image:
    """Return ``recipe``'s image, building it first unless the cache has it.

    A build's steps go to ``progress`` as they happen, with the time left from the last
    build of the recipe. Raises ImageBuildError naming the recipe and the failing item
    (unknown package, failing setup command, missing tool).
    """
    say = log or (lambda message: print(message, file=sys.stderr))
    directory = image_directory(recipe, cache)
    image = _load(directory, recipe)
    if image is not None:
        return image
    for tool in ("mmdebstrap", "mke2fs", "dpkg-divert"):
        if shutil.which(tool) is None:
            raise ImageBuildError(f"building {recipe.path} needs `{tool}` (apt-get install mmdebstrap e2fsprogs)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with (directory.parent / f".{directory.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        image = _load(directory, recipe)
        if image is not None:
            return image
        ensure_foreign_arch(recipe.arch)
        started = time.monotonic()
        work = directory.parent / f".build-{directory.name}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        logs = directory.parent.parent / "logs"
        # Read before this build's log replaces a log of the same name (an interrupted build's).
        watcher = BuildWatcher(progress or _unwatched, directory.name, f"{recipe.name} image",
                               previous_marks(logs, f"{recipe.name}-{recipe.arch}"))
        try:
            say(f"vmtest: building image {recipe.name} ({recipe.suite}/{recipe.arch}) from {recipe.path}")
            watcher.begin(f"building ({recipe.suite}/{recipe.arch})")
            rootfs = work / "rootfs"
            logs.mkdir(parents=True, exist_ok=True)
            build_log = BuildLog(logs / f"{directory.name}.log", watcher.line)
            _bootstrap(recipe, rootfs, build_log)
            step_started = time.monotonic()
            kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
            if not kernels:
                raise ImageBuildError(f"recipe {recipe.path}: no kernel in /boot after bootstrap")
            kernel_version = kernels[-1].name.removeprefix("vmlinuz-")
            shutil.copy2(kernels[-1], work / "vmlinuz")
            modules = build_initramfs(rootfs, kernel_version, work / "initrd")
            step_started = build_log.step_done("initramfs", step_started)
            size_mb = int(_disk_usage_mb(rootfs) * 1.15) + recipe.vm.disk_free_mb + 64
            mkfs = subprocess.run(
                ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "root", "-m", "0", "-E", "root_owner=0:0",
                 "-d", str(rootfs), str(work / "disk.img"), f"{size_mb}M"],
                capture_output=True, text=True, check=False,
            )
            if mkfs.returncode != 0:
                raise ImageBuildError(f"recipe {recipe.path}: mke2fs failed: {mkfs.stderr.strip()}")
            remove_build_dir(rootfs)
            build_log.step_done("disk image", step_started)
            seconds = time.monotonic() - started
            (work / "image.json").write_text(json.dumps({
                "recipe": str(recipe.path), "name": recipe.name, "suite": recipe.suite,
                "arch": recipe.arch, "kernel_version": kernel_version, "disk_mb": size_mb,
                "initramfs_modules": modules, "build_seconds": round(seconds, 1),
                "builder_version": BUILDER_VERSION,
            }, indent=2))
            work.rename(directory)
        except BaseException:
            # Whatever ended the build (a failure, SIGINT, SIGTERM), the cache is left as it was:
            # no mounts, no work directory, no partial image. The build log stays in logs/.
            with shielded():
                remove_build_dir(work)
            raise
        finally:
            watcher.end()
        say(f"vmtest: built {recipe.name} in {seconds:.0f} s -> {directory}")
        return Image(directory, recipe, kernel_version)
