"""Configure a freshly bootstrapped root file system for the test driver.

Runs as mmdebstrap's customize hook (``python -m vmtest.image.configure ROOT
RECIPE``), with /proc and /dev already mounted in ROOT. Host-side tools do
the work (useradd --root, systemctl --root) so that foreign-architecture
images need emulation only for the recipe's own ``setup`` commands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from vmtest.errors import ImageBuildError
from vmtest.image.recipe import Recipe, load_recipe

SERIAL_DEVICE = {"amd64": "ttyS0", "arm64": "ttyAMA0"}
# Timers and services that only cost boot time in a throw-away test VM.
NOISY_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "man-db.timer",
    "logrotate.timer",
    "systemd-timesyncd.service",
)


def _guest_file(name: str) -> str:
    return resources.files("vmtest.image").joinpath("guest").joinpath(name).read_text()


def _write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    target.write_text(text)
    target.chmod(mode)


def _run(recipe: Recipe, item: str, argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ImageBuildError(
            f"recipe {recipe.path}: {item}: `{' '.join(argv)}` failed "
            f"(exit {result.returncode}): {(result.stderr or result.stdout).strip()[-2000:]}"
        )


def _mask(root: Path, unit: str) -> None:
    link = root / "etc/systemd/system" / unit
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to("/dev/null")


def install_test_instrumentation(root: Path, recipe: Recipe) -> None:
    """Backdoor shell, console logging, network from the command line, no gettys on consoles."""
    serial = SERIAL_DEVICE[recipe.arch]
    _write(root, "/usr/local/lib/vmtest/backdoor", _guest_file("backdoor.sh").replace("@SERIAL@", serial), 0o755)
    _write(root, "/etc/systemd/system/backdoor.service", _guest_file("backdoor.service").replace("@SERIAL@", serial))
    _write(root, "/usr/local/lib/vmtest/network", _guest_file("network.sh"), 0o755)
    _write(root, "/etc/systemd/system/vmtest-network.service", _guest_file("network.service"))
    _write(
        root,
        "/etc/systemd/journald.conf.d/vmtest.conf",
        f"[Journal]\nForwardToConsole=yes\nTTYPath=/dev/{serial}\nMaxLevelConsole=info\n",
    )
    _write(
        root,
        "/etc/systemd/system.conf.d/vmtest.conf",
        "[Manager]\nShowStatus=no\nDefaultTimeoutStartSec=300\nDefaultDeviceTimeoutSec=300\n",
    )
    _write(root, "/etc/sysctl.d/50-vmtest.conf", "kernel.hung_task_timeout_secs = 600\n")
    _write(
        root,
        "/etc/fstab",
        "/dev/vda / ext4 rw,errors=remount-ro 0 1\n"
        "shared /tmp/shared 9p trans=virtio,version=9p2000.L,msize=1048576,nofail,"
        "x-systemd.device-timeout=5 0 0\n"
        "xchg /tmp/xchg 9p trans=virtio,version=9p2000.L,msize=1048576,nofail,"
        "x-systemd.device-timeout=5 0 0\n",
    )
    _write(root, "/etc/hostname", "vmtest\n")
    _write(root, "/etc/resolv.conf", "")
    for unit in ("serial-getty@hvc0.service", f"serial-getty@{serial}.service", *NOISY_UNITS):
        _mask(root, unit)
    _run(recipe, "test instrumentation", ["usermod", "--root", str(root), "-p", "", "root"])


def add_groups_and_users(root: Path, recipe: Recipe) -> None:
    """Create the recipe's groups, then its users with their groups and SSH keys."""
    existing = (root / "etc/group").read_text()
    for group in recipe.groups:
        if f"\n{group}:" not in f"\n{existing}":
            _run(recipe, f"groups: {group}", ["groupadd", "--root", str(root), group])
    for user in recipe.users:
        argv = ["useradd", "--root", str(root), "--create-home", "--shell", user.shell]
        if user.uid is not None:
            argv += ["--uid", str(user.uid)]
        if user.groups:
            argv += ["--groups", ",".join(user.groups)]
        _run(recipe, f"users.{user.name}", [*argv, user.name])
        _run(recipe, f"users.{user.name}", ["usermod", "--root", str(root), "-p", user.password_hash or "*", user.name])
        if user.authorized_keys:
            home = root / "home" / user.name
            ssh = home / ".ssh"
            ssh.mkdir(mode=0o700, exist_ok=True)
            (ssh / "authorized_keys").write_text("\n".join(user.authorized_keys) + "\n")
            (ssh / "authorized_keys").chmod(0o600)
            uid, gid = _ids(root, user.name)
            for path in (ssh, ssh / "authorized_keys"):
                os.chown(path, uid, gid)


def _ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise KeyError(user)


def _group_id(root: Path, group: str) -> int:
    for line in (root / "etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return int(fields[2])
    raise KeyError(group)


def place_files(root: Path, recipe: Recipe) -> None:
    """Write the recipe's files with their modes and owners."""
    for spec in recipe.files:
        text = spec.text if spec.text is not None else Path(str(spec.source)).read_text()
        _write(root, spec.path, text, int(spec.mode, 8))
        user, _, group = spec.owner.partition(":")
        try:
            uid = _ids(root, user)[0] if not user.isdigit() else int(user)
            gid = _group_id(root, group or user) if not (group or user).isdigit() else int(group or user)
        except KeyError as missing:
            raise ImageBuildError(
                f"recipe {recipe.path}: files.{spec.path!r}: owner {spec.owner!r}: no such user or group {missing}"
            ) from None
        os.chown(root / spec.path.lstrip("/"), uid, gid)


def configure_units(root: Path, recipe: Recipe) -> None:
    """Enable the instrumentation and the recipe's units; mask what it asks to mask."""
    for unit in recipe.mask:
        _mask(root, unit)
    units = ["backdoor.service", "vmtest-network.service", *recipe.enable]
    _run(recipe, "enable", ["systemctl", f"--root={root}", "enable", *units])
    _run(recipe, "default target", ["systemctl", f"--root={root}", "set-default", "multi-user.target"])


def run_setup(root: Path, recipe: Recipe) -> None:
    """Run the recipe's setup commands in the image (under emulation for foreign arches)."""
    for number, command in enumerate(recipe.setup, 1):
        result = subprocess.run(
            ["chroot", str(root), "/bin/sh", "-euc", command],
            capture_output=True, text=True, check=False,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C.UTF-8"},
        )
        if result.returncode != 0:
            raise ImageBuildError(
                f"recipe {recipe.path}: setup[{number}] `{command}` failed (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr).strip()[-2000:]}"
            )


def configure(root: Path, recipe: Recipe) -> None:
    """Apply every step of the recipe to ``root``."""
    install_test_instrumentation(root, recipe)
    add_groups_and_users(root, recipe)
    place_files(root, recipe)
    configure_units(root, recipe)
    run_setup(root, recipe)
    # Leave no apt lists or caches in the image: they only cost disk and build time.
    for leftover in ("var/lib/apt/lists", "var/cache/apt/archives"):
        shutil.rmtree(root / leftover, ignore_errors=True)
        (root / leftover / "partial").mkdir(parents=True, exist_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m vmtest.image.configure ROOT RECIPE", file=sys.stderr)
        return 2
    try:
        configure(Path(args[0]), load_recipe(args[1]))
    except Exception as error:  # reported to mmdebstrap's log, read by the builder
        print(f"vmtest: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
