"""Configure a freshly bootstrapped root file system for the test driver.

Runs as mmdebstrap's customize hook (``python -m vmtest.portable.image.configure ROOT
RECIPE``), with /proc and /dev already mounted in ROOT. Host-side tools do
the work (useradd --root, systemctl --root) so that foreign-architecture
images need emulation only for the recipe's own ``setup`` commands.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from vmtest.errors import ImageBuildError
from vmtest.portable.image.foreign import install_helper_shadows, install_packages_natively_unpacked
from vmtest.portable.image.recipe import Recipe, load_recipe
from vmtest.portable.image.steps import apt_config, apt_env, run, step_done

SERIAL_DEVICE = {"amd64": "ttyS0", "arm64": "ttyAMA0"}
KERNEL_PACKAGE = {"amd64": "linux-image-amd64", "arm64": "linux-image-arm64"}
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
    return resources.files("vmtest.portable.image").joinpath("guest").joinpath(name).read_text()


def _write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    target.write_text(text)
    target.chmod(mode)


def _mask(root: Path, unit: str) -> None:
    link = root / "etc/systemd/system" / unit
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to("/dev/null")


def install_kernel(root: Path, recipe: Recipe) -> None:
    """Unpack the kernel package with the host's apt and dpkg-deb, then run depmod natively.

    Installed through dpkg inside the image, the kernel's 70 MB of modules are
    decompressed by an emulated dpkg-deb for foreign architectures, the slowest
    step of an arm64 build. Nothing in its maintainer scripts matters here: the
    initramfs is vmtest's own.
    """
    config = apt_config(recipe)
    meta = KERNEL_PACKAGE[recipe.arch]
    depends = run(recipe, "kernel", ["apt-cache", "depends", "--important", meta], env=apt_env(recipe), check=False)
    versioned = [
        line.split(":", 1)[1].strip()
        for line in depends.stdout.splitlines()
        if line.strip().startswith("Depends:") and line.split(":", 1)[1].strip().startswith("linux-image-")
    ]
    if depends.returncode != 0 or not versioned:
        raise ImageBuildError(f"recipe {recipe.path}: cannot resolve {meta}: {depends.stderr.strip()}")
    with tempfile.TemporaryDirectory(prefix="vmtest-kernel-") as download:
        run(recipe, "kernel", ["sh", "-c", f"cd {shlex.quote(download)} && APT_CONFIG={shlex.quote(config)} "
                                            f"apt-get download -q {shlex.quote(versioned[0])}"])
        for deb in Path(download).glob("*.deb"):
            run(recipe, "kernel", ["dpkg-deb", "-x", str(deb), str(root)])
    versions = [path.name for path in (root / "usr/lib/modules").iterdir() if path.is_dir()]
    for version in versions:
        run(recipe, "kernel", ["depmod", "-b", str(root), version])


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
    for unit in ("serial-getty@hvc0.service", f"serial-getty@{serial}.service", *NOISY_UNITS):
        _mask(root, unit)
    run(recipe, "test instrumentation", ["usermod", "--root", str(root), "-p", "", "root"])


def add_groups_and_users(root: Path, recipe: Recipe) -> None:
    """Create the recipe's groups, then its users with their groups and SSH keys."""
    existing = (root / "etc/group").read_text()
    for group in recipe.groups:
        if f"\n{group}:" not in f"\n{existing}":
            run(recipe, f"groups: {group}", ["groupadd", "--root", str(root), group])
    for user in recipe.users:
        argv = ["useradd", "--root", str(root), "--create-home", "--shell", user.shell]
        if user.uid is not None:
            argv += ["--uid", str(user.uid)]
        if user.groups:
            argv += ["--groups", ",".join(user.groups)]
        run(recipe, f"users.{user.name}", [*argv, user.name])
        run(recipe, f"users.{user.name}", ["usermod", "--root", str(root), "-p", user.password_hash or "*", user.name])
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
        if spec.source is not None and Path(spec.source).is_dir():
            # Directories keep their files' modes (executables stay executable).
            shutil.copytree(spec.source, root / spec.path.lstrip("/"), dirs_exist_ok=True)
            _chown_tree(root, recipe, spec.path, spec.owner)
            continue
        text = spec.text if spec.text is not None else Path(str(spec.source)).read_text()
        _write(root, spec.path, text, int(spec.mode, 8))
        uid, gid = _owner_ids(root, recipe, spec.path, spec.owner)
        os.chown(root / spec.path.lstrip("/"), uid, gid)


def _owner_ids(root: Path, recipe: Recipe, path: str, owner: str) -> tuple[int, int]:
    user, _, group = owner.partition(":")
    group = group or user
    try:
        uid = int(user) if user.isdigit() else _ids(root, user)[0]
        gid = int(group) if group.isdigit() else _group_id(root, group)
    except KeyError as missing:
        raise ImageBuildError(
            f"recipe {recipe.path}: files.{path!r}: owner {owner!r}: no such user or group {missing}"
        ) from None
    return uid, gid


def _chown_tree(root: Path, recipe: Recipe, path: str, owner: str) -> None:
    uid, gid = _owner_ids(root, recipe, path, owner)
    top = root / path.lstrip("/")
    for member in [top, *top.rglob("*")]:
        os.lchown(member, uid, gid)


def configure_units(root: Path, recipe: Recipe) -> None:
    """Enable the instrumentation and the recipe's units; mask what it asks to mask."""
    for unit in recipe.mask:
        _mask(root, unit)
    units = ["backdoor.service", "vmtest-network.service", *recipe.enable]
    run(recipe, "enable", ["systemctl", f"--root={root}", "enable", *units])
    run(recipe, "default target", ["systemctl", f"--root={root}", "set-default", "multi-user.target"])


PIP_PLATFORMS = {
    "amd64": ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "arm64": ("manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"),
}


def install_pip_packages(root: Path, recipe: Recipe) -> None:
    """Install the recipe's ``pip`` requirements: wheels fetched by the host, installed offline in the image.

    The host's pip (and its registry configuration) does the network part, for
    the image's Python version and architecture; the image needs python3-pip.
    """
    if not recipe.pip:
        return
    versions = sorted(
        (match.group(1) for p in root.glob("usr/bin/python3.*") if (match := re.fullmatch(r"python(3\.\d+)", p.name))),
        key=lambda version: int(version.split(".")[1]),
    )
    if not versions or not (root / "usr/lib/python3/dist-packages/pip").is_dir():
        raise ImageBuildError(f"recipe {recipe.path}: pip: the image needs the packages python3 and python3-pip")
    wheels = root / "tmp/vmtest-wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    platforms = [arg for platform in PIP_PLATFORMS[recipe.arch] for arg in ("--platform", platform)]
    download = run(recipe, "pip", [
        sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheels), "--only-binary=:all:",
        "--implementation", "cp", "--python-version", versions[-1], *platforms, *recipe.pip,
    ], check=False)
    if download.returncode != 0:
        raise ImageBuildError(
            f"recipe {recipe.path}: pip: {' '.join(recipe.pip)}: cannot download wheels for Python "
            f"{versions[-1]} on {recipe.arch}: {download.stderr.strip()[-1500:]}"
        )
    try:
        run(recipe, "pip", ["chroot", str(root), "python3", "-m", "pip", "install", "--quiet", "--no-index",
                             "--find-links", "/tmp/vmtest-wheels", "--break-system-packages",
                             "--no-warn-script-location", *recipe.pip])
    finally:
        shutil.rmtree(wheels, ignore_errors=True)


def mark_up_to_date(root: Path) -> None:
    """Write /etc/.updated and /var/.updated as systemd-update-done would after a first boot.

    Every test boot starts from the pristine image, so without them the
    ConditionNeedsUpdate= units (ldconfig, journal catalog, hwdb, update-done)
    run at every boot, seconds of CPU under TCG for caches the build already made.
    """
    usr = (root / "usr").stat()
    for directory in ("etc", "var"):
        marker = root / directory / ".updated"
        marker.write_text(
            "# Written by vmtest's image builder (as systemd-update-done.service would)\n"
            f"TIMESTAMP_NSEC={usr.st_mtime_ns}\n"
        )
        os.utime(marker, ns=(usr.st_mtime_ns, usr.st_mtime_ns))


# Where setup commands find the host's trust store (removed after them): a setup that downloads
# (``npm ci``) trusts what the host's own downloads (apt, pip) trust, a TLS-inspecting proxy's CA
# included, which the image's fresh ca-certificates lacks.
SETUP_CA_BUNDLE = "/run/vmtest-host-ca.crt"
# The variables the setup's tools read a CA bundle from: OpenSSL and curl, Node.js and npm, pip.
SETUP_CA_VARIABLES = ("SSL_CERT_FILE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "npm_config_cafile", "PIP_CERT",
                      "REQUESTS_CA_BUNDLE")


def host_ca_bundle() -> Path | None:
    """The host's CA bundle: ``$SSL_CERT_FILE`` if it names a file, else Debian's, else None."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def run_setup(root: Path, recipe: Recipe) -> None:
    """Run the recipe's setup commands in the image (under emulation for foreign arches), trusting the
    host's CA bundle; raises ImageBuildError naming the first command that fails, with its output."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C.UTF-8"}
    bundle = host_ca_bundle()
    inside = root / SETUP_CA_BUNDLE.lstrip("/")
    if bundle is not None and recipe.setup:
        inside.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle, inside)
        env.update(dict.fromkeys(SETUP_CA_VARIABLES, SETUP_CA_BUNDLE))
    try:
        for number, command in enumerate(recipe.setup, 1):
            result = run(recipe, f"setup[{number}]", ["chroot", str(root), "/bin/sh", "-euc", command], env=env,
                         check=False)
            if result.returncode != 0:
                raise ImageBuildError(
                    f"recipe {recipe.path}: setup[{number}] `{command}` failed (exit {result.returncode}):\n"
                    f"{(result.stdout + result.stderr).strip()[-2000:]}"
                )
    finally:
        inside.unlink(missing_ok=True)


def configure(root: Path, recipe: Recipe, foreign_packages: list[str] | None = None) -> None:
    """Apply every step of the recipe to ``root`` (installing ``foreign_packages`` first, if given).

    Each step's duration goes to stderr, which is the build log.
    """
    steps: list[tuple[str, Callable[[], None]]] = []
    if foreign_packages:
        steps.append(("packages", lambda: install_packages_natively_unpacked(root, recipe, foreign_packages)))
    steps += [
        ("kernel", lambda: install_kernel(root, recipe)),
        ("instrumentation", lambda: install_test_instrumentation(root, recipe)),
        ("users", lambda: add_groups_and_users(root, recipe)),
        ("files", lambda: place_files(root, recipe)),
        ("units", lambda: configure_units(root, recipe)),
        ("pip", lambda: install_pip_packages(root, recipe)),
        ("setup", lambda: run_setup(root, recipe)),
        ("update markers", lambda: mark_up_to_date(root)),
    ]
    for name, step in steps:
        started = time.monotonic()
        step()
        step_done(name, started)
    # Test VMs have no name server: nothing in a test may depend on the outside.
    _write(root, "/etc/resolv.conf", "")
    # Leave no apt lists or caches in the image: they only cost disk and build time.
    for leftover in ("var/lib/apt/lists", "var/cache/apt/archives"):
        shutil.rmtree(root / leftover, ignore_errors=True)
        (root / leftover / "partial").mkdir(parents=True, exist_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--shadow-helpers"] and len(args) == 2:  # mmdebstrap's extract hook
        install_helper_shadows(Path(args[1]))
        return 0
    if len(args) < 2:
        print("usage: python -m vmtest.portable.image.configure ROOT RECIPE [FOREIGN-PACKAGE…]", file=sys.stderr)
        return 2
    try:
        configure(Path(args[0]), load_recipe(args[1]), args[2:])
    except Exception as error:  # reported to mmdebstrap's log, read by the builder
        print(f"vmtest: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
