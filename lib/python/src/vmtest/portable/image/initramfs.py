"""A minimal initramfs assembled on the host, in well under a second.

Debian's ``update-initramfs`` is what made the naive arm64 build take 19 minutes
(it ran twice under qemu-user). The test VMs need far less: busybox from the
image, the handful of virtio/9p modules Debian builds as modules, and an /init
that loads them and switches to /dev/vda.
"""

from __future__ import annotations

import gzip
import lzma
import stat
import subprocess
from importlib import resources
from pathlib import Path

from vmtest.errors import ImageBuildError

# What the root disk, the backdoor console, the shared 9p directories and the
# VLAN NICs need before udev runs. Built-in ones are skipped.
EARLY_MODULES = (
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
    "virtio_net",
    "9pnet_virtio",
    "9p",
    "ext4",
    "crc32c_generic",
)


def _canonical(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    for suffix in (".xz", ".zst", ".gz"):
        base = base.removesuffix(suffix)
    return base.removesuffix(".ko").replace("-", "_")


def module_load_order(modules_dir: Path, wanted: tuple[str, ...] = EARLY_MODULES) -> list[str]:
    """Module files (relative to ``modules_dir``) to load, dependencies first."""
    dependencies: dict[str, list[str]] = {}
    paths: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        module, _, deps = line.partition(":")
        paths[_canonical(module)] = module
        dependencies[module] = deps.split()
    builtin = {
        _canonical(line)
        for line in (modules_dir / "modules.builtin").read_text().splitlines()
        if line
    }
    order: list[str] = []

    def visit(module: str) -> None:
        if module in order:
            return
        for dep in reversed(dependencies.get(module, [])):
            visit(dep)
        order.append(module)

    for name in wanted:
        canonical = name.replace("-", "_")
        if canonical in builtin:
            continue
        if canonical not in paths:
            raise ImageBuildError(f"kernel module {name} is neither built in nor in {modules_dir}")
        visit(paths[canonical])
    return order


def _decompressed(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def _newc_entry(name: str, mode: int, data: bytes, ino: int) -> bytes:
    encoded = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
    header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
    entry = header + encoded
    entry += b"\0" * (-len(entry) % 4)
    entry += data + b"\0" * (-len(data) % 4)
    return entry


def write_cpio(entries: list[tuple[str, int, bytes]], output: Path) -> None:
    """Write a newc cpio archive of (name, mode, data) entries."""
    with output.open("wb") as handle:
        for ino, (name, mode, data) in enumerate(entries, 1):
            handle.write(_newc_entry(name, mode, data, ino))
        handle.write(_newc_entry("TRAILER!!!", 0, b"", 0))


def build_initramfs(rootfs: Path, kernel_version: str, output: Path) -> list[str]:
    """Assemble the initramfs for ``rootfs``'s kernel at ``output``; returns the modules loaded."""
    candidates = (rootfs / "usr/lib/modules" / kernel_version, rootfs / "lib/modules" / kernel_version)
    modules_dir = next((d for d in candidates if d.is_dir()), None)
    if modules_dir is None:
        raise ImageBuildError(f"no modules directory for kernel {kernel_version} in {rootfs}")
    busybox = next((p for p in (rootfs / "usr/bin/busybox", rootfs / "bin/busybox") if p.is_file()), None)
    if busybox is None:
        raise ImageBuildError(f"busybox (package busybox-static) is missing from {rootfs}")
    order = module_load_order(modules_dir)
    directory = stat.S_IFDIR | 0o755
    entries: list[tuple[str, int, bytes]] = [
        ("bin", directory, b""),
        ("dev", directory, b""),
        ("modules", directory, b""),
        ("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()),
        ("init", stat.S_IFREG | 0o755,
         resources.files("vmtest.portable.image").joinpath("guest").joinpath("init").read_bytes()),
    ]
    names = []
    for module in order:
        name = _canonical(module) + ".ko"
        names.append(name)
        entries.append((f"modules/{name}", stat.S_IFREG | 0o644, _decompressed(modules_dir / module)))
    entries.append(("modules/load-order", stat.S_IFREG | 0o644, ("\n".join(names) + "\n").encode()))
    write_cpio(entries, output)
    return names
