"""Build (or find in the cache) a bootable image from a recipe.

An image is a directory ``<cache>/images/<name>-<arch>-<hash>/`` holding
``vmlinuz``, ``initrd``, ``disk.img`` (raw ext4) and ``image.json``. The hash
covers the recipe, the contents of its files and this builder's version, so an
edit anywhere rebuilds and nothing else does. Directories appear atomically.

``image.json`` records each file's size and a SHA-256 of 64 regions of it, and every use
of a cached image checks them first (about 4 MiB read: milliseconds). A damaged image (a
truncated ``disk.img``: a full disk, a copy cut short) is named in one line, discarded and
built again: the cache holds nothing but what its recipe makes. A build that was killed
(SIGKILL: nothing could clean up) leaves its work directory, with mmdebstrap's mounts;
the next build of that image removes it, under the same lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from vmtest.errors import ImageBuildError
from vmtest.portable.image.build_progress import BuildWatcher, previous_marks
from vmtest.portable.image.initramfs import build_initramfs
from vmtest.portable.image.mounts import remove_build_dir
from vmtest.portable.image.recipe import Recipe
from vmtest.portable.image.steps import CHROOT_PATH, DOC_EXCLUDES, step_line
from vmtest.portable.runtime.process import run_tied, spawn, terminate_group
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


IMAGE_FILES = ("vmlinuz", "initrd", "disk.img")
SAMPLES = 64
SAMPLE_BYTES = 64 * 1024


def file_record(path: Path) -> dict[str, Any]:
    """``path``'s size and the SHA-256 of ``SAMPLES`` regions of ``SAMPLE_BYTES`` spread evenly over it,
    first and last included (of all of it when it is no bigger): what ``image.json`` keeps of each file."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size <= SAMPLES * SAMPLE_BYTES:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
        else:
            last = size - SAMPLE_BYTES
            for index in range(SAMPLES):
                file.seek(last * index // (SAMPLES - 1))
                digest.update(file.read(SAMPLE_BYTES))
    return {"size": size, "sampled_sha256": digest.hexdigest()}


def damage(directory: Path) -> str | None:
    """What is wrong with the image in ``directory`` (one phrase naming the file, what was recorded and
    what is there now), or None when every file matches what its build recorded.

    Images built before the record existed are checked by what they have: every file present, and
    ``disk.img`` of the size ``disk_mb`` says."""
    manifest = directory / "image.json"
    try:
        data = json.loads(manifest.read_text())
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as error:
        return f"{manifest} cannot be read ({getattr(error, 'strerror', None) or error})"
    files = data.get("files")
    if not isinstance(files, dict):
        files = {name: {} for name in IMAGE_FILES}
        if isinstance(data.get("disk_mb"), int):
            files["disk.img"] = {"size": data["disk_mb"] * 1024 * 1024}
    for name, recorded in files.items():
        path = directory / name
        try:
            found = file_record(path) if "sampled_sha256" in recorded else {"size": path.stat().st_size}
        except OSError as error:
            return f"{path} cannot be read ({error.strerror})"
        if "size" in recorded and found["size"] != recorded["size"]:
            return f"{path} is {found['size']} bytes, {recorded['size']} bytes when it was built"
        if "sampled_sha256" in recorded and found["sampled_sha256"] != recorded["sampled_sha256"]:
            return (f"{path} has changed since it was built (sampled SHA-256 {found['sampled_sha256'][:16]}, "
                    f"{recorded['sampled_sha256'][:16]} when it was built)")
    return None


def _load(directory: Path, recipe: Recipe) -> tuple[Image | None, str | None]:
    """The cached image in ``directory`` and None; or None and what is wrong with it (None: not built)."""
    if not (directory / "image.json").is_file():
        return None, None
    problem = damage(directory)
    if problem is not None:
        return None, problem
    data = json.loads((directory / "image.json").read_text())
    return Image(directory, recipe, data["kernel_version"]), None


def _discard(directory: Path, problem: str, say: Log) -> None:
    """Say that the cached image in ``directory`` is damaged and remove it (under its build lock)."""
    say(f"vmtest: the cached image {directory} is damaged: {problem}; discarding it and building it again")
    doomed = directory.parent / f".damaged-{directory.name}-{os.getpid()}"
    try:
        directory.rename(doomed)
        remove_build_dir(doomed)
    except OSError as error:
        raise ImageBuildError(
            f"the cached image {directory} is damaged ({problem}) and cannot be removed: "
            f"{error.strerror or error}; remove it (rm -rf {shlex.quote(str(directory))}) and run again"
        ) from None


def _sweep_stale_work(directory: Path, say: Log) -> None:
    """Remove what killed builds of ``directory``'s image left (work directories, mounts included, and
    discarded images): the caller holds the image's build lock, so no live build owns any of them."""
    for stale in sorted([*directory.parent.glob(f".build-{directory.name}-*"),
                         *directory.parent.glob(f".damaged-{directory.name}-*")]):
        try:
            remove_build_dir(stale)
        except OSError as error:
            say(f"vmtest: cannot remove {stale}, left by a build that was killed: {error}")
            continue
        say(f"vmtest: removed {stale}, left by a build that was killed")


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
        # (mmdebstrap and its hooks) and then removes what it left. If vmtest dies without that
        # (SIGKILL), mmdebstrap gets SIGTERM, on which it unmounts what it mounted; the next build
        # of the image removes the work directory.
        process = spawn(argv, death_signal=signal.SIGTERM, env=env, stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
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
    image, problem = _load(directory, recipe)
    if image is not None:
        return image
    if problem is None:
        _check_build_tools(recipe)  # before anything is written into the cache
    directory.parent.mkdir(parents=True, exist_ok=True)
    with (directory.parent / f".{directory.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Again under the lock: another build may have made (or replaced) it meanwhile.
        image, problem = _load(directory, recipe)
        if image is not None:
            return image
        if problem is not None:
            _discard(directory, problem, say)
        _sweep_stale_work(directory, say)
        _check_build_tools(recipe)
        ensure_foreign_arch(recipe.arch)
        started = time.monotonic()
        work = directory.parent / f".build-{directory.name}-{os.getpid()}"
        work.mkdir()
        logs = directory.parent.parent / "logs"
        # Read before this build's log replaces a log of the same name (an interrupted build's).
        watcher = BuildWatcher(progress or _unwatched, directory.name, f"{recipe.name} image",
                               previous_marks(logs, f"{recipe.name}-{recipe.arch}"))
        try:
            say(f"vmtest: building image {recipe.name} ({recipe.suite}/{recipe.arch}) from {recipe.path}")
            watcher.begin(f"building ({recipe.suite}/{recipe.arch})")
            logs.mkdir(parents=True, exist_ok=True)
            build_log = BuildLog(logs / f"{directory.name}.log", watcher.line)
            made = _make_image_files(recipe, work, build_log)
            seconds = time.monotonic() - started
            (work / "image.json").write_text(json.dumps({
                "recipe": str(recipe.path), "name": recipe.name, "suite": recipe.suite,
                "arch": recipe.arch, **made, "build_seconds": round(seconds, 1),
                "builder_version": BUILDER_VERSION,
                # Checked at every use (damage()): a damaged image is rebuilt, not booted.
                "files": {name: file_record(work / name) for name in IMAGE_FILES},
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
        return Image(directory, recipe, made["kernel_version"])


def _check_build_tools(recipe: Recipe) -> None:
    for tool in ("mmdebstrap", "mke2fs", "dpkg-divert"):
        if shutil.which(tool) is None:
            raise ImageBuildError(f"building {recipe.path} needs `{tool}` (apt-get install mmdebstrap e2fsprogs)")


def _make_image_files(recipe: Recipe, work: Path, build_log: BuildLog) -> dict[str, Any]:
    """Bootstrap the root, then write ``vmlinuz``, ``initrd`` and ``disk.img`` into ``work``; returns
    what ``image.json`` says of them (kernel version, disk size, initramfs modules)."""
    rootfs = work / "rootfs"
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
    mkfs = run_tied(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "root", "-m", "0", "-E", "root_owner=0:0",
         "-d", str(rootfs), str(work / "disk.img"), f"{size_mb}M"],
        capture_output=True, text=True, check=False,
    )
    if mkfs.returncode != 0:
        raise ImageBuildError(f"recipe {recipe.path}: mke2fs failed: {mkfs.stderr.strip()}")
    remove_build_dir(rootfs)
    build_log.step_done("disk image", step_started)
    return {"kernel_version": kernel_version, "disk_mb": size_mb, "initramfs_modules": modules}
