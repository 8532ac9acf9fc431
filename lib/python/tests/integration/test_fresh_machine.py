"""A fresh Debian root, not this machine: does install-system-deps.sh give ``vmtest doctor`` everything?

The hosts that run the other tests already have every package, so a line missing
from the install script goes unnoticed there. This test starts from a pristine
mmdebstrap root of the host's release (cached as a tarball, extracted afresh for
each run), runs the script in it with the source tree mounted read-only, installs
vmtest into a venv there and runs the full ``vmtest doctor``, mirror check included:

1. negative control first: the script with arch-test left out (``VMTEST_DEPS_WITHOUT``)
   -> doctor exits non-zero naming arch-test, and nothing else;
2. the whole script on the same root (it then installs only arch-test) -> doctor exits 0.

What a root cannot have of its own is the kernel's: binfmt_misc and KVM are the
host's, and so are their verdicts. Needs root, mmdebstrap, the Debian mirror and PyPI.
Set ``VMTEST_FRESH_TIMINGS`` to a file name to get the timings as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from vmtest.portable.accel import _boot_id
from vmtest.portable.image.builder import HOST_ARCH, cache_dir, debian_mirror

pytestmark = pytest.mark.fresh_root

REPO = Path(__file__).resolve().parents[4]
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SOURCE_IN_ROOT = "vmtest-src"  # the repository, read-only, at /vmtest-src in the root
VENV_IN_ROOT = "opt/vmtest"
HOST_BINFMT = Path("/proc/sys/fs/binfmt_misc")
LEFT_OUT = "arch-test"
# mmdebstrap's own preparation of the root (resolv.conf, policy-rc.d) and our cache format.
ROOT_FORMAT_VERSION = "1"


def host_suite() -> str:
    """The host's Debian release (``VERSION_CODENAME``)."""
    release = Path("/etc/os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", release, re.M)
    if match is None:
        pytest.skip("/etc/os-release names no VERSION_CODENAME: not a Debian host")
    return match.group(1)


def mmdebstrap_argv(suite: str, arch: str, mirror: str, output: Path) -> list[str]:
    """How the pristine root is made.

    minbase (Priority: required, the floor of every Debian system) and no
    ``--include``: python3-venv and ca-certificates must come from the install
    script, and including them here would hide their omission from its list. The
    one exception: an https mirror, which apt cannot reach before ca-certificates.
    """
    includes = ["--include=ca-certificates"] if mirror.startswith("https:") else []
    return ["mmdebstrap", "--mode=root", "--variant=minbase", "--format=tar", f"--arch={arch}", "--quiet",
            *includes, suite, str(output), mirror]


def cached_root_tarball(suite: str, arch: str, mirror: str) -> tuple[Path, float | None]:
    """The pristine root as a tarball, built once per mmdebstrap command line; (path, seconds if built now).

    Cached as images are: ``<cache>/roots/<suite>-<arch>-<key>/root.tar``, the directory
    built beside it and renamed into place. Delete it to pick up a newer point release.
    """
    roots = cache_dir() / "roots"
    key_argv = mmdebstrap_argv(suite, arch, mirror, Path("OUTPUT"))
    key = hashlib.sha256(json.dumps([ROOT_FORMAT_VERSION, *key_argv]).encode()).hexdigest()[:16]
    directory = roots / f"{suite}-{arch}-{key}"
    if (directory / "root.tar").is_file():
        return directory / "root.tar", None
    work = roots / f".build-{directory.name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        started = time.monotonic()
        argv = mmdebstrap_argv(suite, arch, mirror, work / "root.tar")
        built = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
        if built.returncode != 0:
            pytest.fail(f"mmdebstrap failed ({built.returncode}):\n{built.stderr[-3000:]}")
        seconds = time.monotonic() - started
        (work / "mmdebstrap.json").write_text(json.dumps({"argv": argv, "seconds": round(seconds, 1)}, indent=2))
        try:
            work.rename(directory)
        except OSError:  # another run got there first: its root is as good as ours
            if not (directory / "root.tar").is_file():
                raise
        return directory / "root.tar", seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)


def mounts_under(root: Path) -> list[str]:
    """Every mount point at or below ``root``, as findmnt lists them."""
    listed = subprocess.run(["findmnt", "--raw", "--noheadings", "--output", "TARGET"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    prefix = str(root)
    return [target for target in listed if target == prefix or target.startswith(prefix + "/")]


def processes_in(root: Path) -> list[int]:
    """The processes whose root directory is ``root`` (a daemon some maintainer script started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "root") == str(root):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class Mounts:
    """The mounts made under a root, undone in reverse order (lazily if busy), and anything mounted below."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[Path] = []

    def bind(self, source: Path, inside: str, *, read_only: bool = False) -> Path:
        target = self.root / inside
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
        self.made.append(target)
        if read_only:  # a bind mount takes ro only on a remount
            subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
        return target

    def unmount_all(self) -> None:
        # The script under test mounts binfmt_misc itself: whatever was mounted below ours goes first.
        others = [Path(target) for target in mounts_under(self.root) if Path(target) not in self.made]
        for target in [*sorted(others, key=lambda path: len(path.parts), reverse=True), *reversed(self.made)]:
            if subprocess.run(["umount", str(target)], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "--lazy", str(target)], capture_output=True, check=False)
        self.made.clear()


def binfmt_entries() -> dict[str, str]:
    """The host kernel's binfmt_misc registrations (to prove the test added or changed none)."""
    return {entry.name: entry.read_text() for entry in HOST_BINFMT.iterdir() if entry.name != "register"}


def copy_debian_sources(root: Path) -> list[str]:
    """Give the root the host's Debian apt sources (same versions as the host's .deb cache); their names.

    Only files naming nothing but Debian archives: a third-party repository needs a
    key a fresh machine does not have. Without any, mmdebstrap's sources.list stays.
    """
    copied = []
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in candidates:
        if not source.is_file() or source.suffix not in (".list", ".sources"):
            continue
        uris = re.findall(r"(?m)^(?:URIs:|deb)\s+(?:\[[^\]]*\]\s+)?(\S+)", source.read_text())
        if uris and all(re.search(r"/debian(-security)?/?$", uri) for uri in uris):
            shutil.copy(source, root / "etc/apt" / source.relative_to("/etc/apt"))
            copied.append(str(source))
    if copied:
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
    return copied


_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


def copy_network_trust(root: Path) -> int:
    """Give the root the CAs the host trusts beyond Debian's (a TLS-intercepting proxy's); how many.

    They belong to the network, like resolv.conf: without them a fresh machine here
    reaches no https site. ca-certificates, once the script installs it, adds them.
    """
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.is_file():
        return 0
    debian = Path("/usr/share/ca-certificates")
    shipped = {pem for path in debian.rglob("*.crt") for pem in _PEM.findall(path.read_text())}
    extra = [pem for pem in _PEM.findall(bundle.read_text()) if pem not in shipped]
    local = root / "usr/local/share/ca-certificates"
    local.mkdir(parents=True, exist_ok=True)
    for number, pem in enumerate(extra):
        (local / f"host-network-{number}.crt").write_text(pem + "\n")
    return len(extra)


def prepare(root: Path, tarball: Path, mounts: Mounts) -> None:
    """A fresh copy of the pristine root, set up to run apt and the install script in a chroot."""
    root.mkdir()
    subprocess.run(["tar", "--extract", "--numeric-owner", "--preserve-permissions", "--file", str(tarball),
                    "--directory", str(root)], check=True)
    # A chroot must not start services: binfmt-support's init script would register every
    # qemu format in the kernel this root shares with the host.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    copied = copy_debian_sources(root)
    print(f"fresh root: apt sources from the host: {copied or 'none (mmdebstrap sources.list kept)'}; "
          f"{copy_network_trust(root)} CA(s) of the host's network")
    # Read-only: no maintainer script may set a sysctl of the kernel the host shares. Not
    # recursive: binfmt_misc is not mounted in the root until the script mounts it.
    mounts.bind(Path("/proc"), "proc", read_only=True)
    mounts.bind(Path("/sys"), "sys", read_only=True)
    mounts.bind(Path("/dev"), "dev")
    mounts.bind(Path("/dev/pts"), "dev/pts")
    mounts.bind(Path("/var/cache/apt/archives"), "var/cache/apt/archives")  # reuse the host's .debs
    mounts.bind(REPO, SOURCE_IN_ROOT, read_only=True)
    assert not os.access(root / SOURCE_IN_ROOT, os.W_OK), "the source tree must be read-only in the root"
    # The KVM verdict is the host kernel's: reuse the host's cached probe rather than probe again.
    verdict = Path.home() / ".cache" / "vmtest" / f"kvm-probe-{_boot_id()}.json"
    if verdict.is_file():
        (root / "root/.cache/vmtest").mkdir(parents=True, exist_ok=True)
        shutil.copy(verdict, root / "root/.cache/vmtest" / verdict.name)


def in_root(root: Path, argv: list[str], timeout: float, **env: str) -> tuple[int, str]:
    """Run ``argv`` in the root with a clean environment; (status, stdout and stderr), echoed for -s."""
    clean = {"PATH": ROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb", **env}
    # The network's settings, as on the host (a proxy, pip's CA bundle); nothing else leaks in.
    clean |= {name: value for name, value in os.environ.items()
              if name.lower() in ("http_proxy", "https_proxy", "no_proxy") or name == "PIP_CERT"}
    done = subprocess.run(["chroot", str(root), *argv], env=clean, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
    print(f"$ {' '.join(argv)}  (exit {done.returncode})\n{done.stdout.rstrip()}")
    return done.returncode, done.stdout


def installed(root: Path, package: str) -> bool:
    """Whether dpkg in the root has ``package`` installed (``-W`` alone also lists known, absent ones)."""
    status, output = in_root(root, ["dpkg-query", "-W", "-f=${Status}", package], timeout=60)
    return status == 0 and output.strip() == "install ok installed"


def failing_checks(doctor_output: str) -> set[str]:
    return {match.group(1) for match in re.finditer(r"(?m)^FAIL\s+(.+?): ", doctor_output)}


def install_vmtest(root: Path) -> None:
    """A venv in the root with vmtest installed from a writable copy of the read-only source."""
    build = root / "tmp/vmtest-build"
    shutil.copytree(root / SOURCE_IN_ROOT / "lib/python", build,
                    ignore=shutil.ignore_patterns("__pycache__", ".*_cache", "*.egg-info", "build"))
    status, output = in_root(root, ["python3", "-m", "venv", f"/{VENV_IN_ROOT}"], timeout=300)
    assert status == 0, f"python3 -m venv failed (python3-venv from the install script?):\n{output}"
    status, output = in_root(root, [f"/{VENV_IN_ROOT}/bin/pip", "install", "--no-cache-dir", "--quiet",
                                    "/tmp/vmtest-build"], timeout=900)
    assert status == 0, f"pip install of vmtest failed:\n{output}"


def report(timings: dict[str, float | str]) -> None:
    print("fresh-root timings: " + ", ".join(f"{name} {value}" for name, value in timings.items()))
    target = os.environ.get("VMTEST_FRESH_TIMINGS")
    if target:
        Path(target).write_text(json.dumps(timings, indent=2) + "\n")


def test_install_script_gives_a_fresh_root_everything_doctor_checks(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mmdebstrap --mode=root, chroot, bind mounts)")
    for tool in ("mmdebstrap", "chroot", "findmnt", "mount", "tar"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} on the host")
    if HOST_ARCH == "amd64" and "enabled" not in binfmt_entries().get("qemu-aarch64", ""):
        # Else the script in the root would register qemu-aarch64, pointing into the root, in
        # the kernel every other job on this host shares.
        pytest.skip("the host's binfmt_misc has no enabled qemu-aarch64 (run scripts/install-system-deps.sh)")
    binfmt_before = binfmt_entries()
    timings: dict[str, float | str] = {}
    suite = host_suite()
    root = tmp_path / "root"
    mounts = Mounts(root)

    def timed(name: str, started: float) -> None:
        timings[name] = round(time.monotonic() - started, 1)

    tarball, built_seconds = cached_root_tarball(suite, HOST_ARCH, debian_mirror())
    timings["mmdebstrap_s"] = round(built_seconds, 1) if built_seconds is not None else "cached"
    script = f"/{SOURCE_IN_ROOT}/scripts/install-system-deps.sh"
    leftover_mounts: list[str] = []
    leftover_processes: list[int] = []
    try:
        started = time.monotonic()
        prepare(root, tarball, mounts)
        timed("extract_s", started)

        # 1. Negative control: the list without arch-test must not satisfy doctor.
        started = time.monotonic()
        status, output = in_root(root, [script], timeout=3600, VMTEST_DEPS_WITHOUT=LEFT_OUT)
        timed("apt_install_without_arch_test_s", started)
        assert status == 0, f"install-system-deps.sh failed in the fresh root:\n{output}"
        assert not installed(root, LEFT_OUT), f"{LEFT_OUT} got installed anyway"
        started = time.monotonic()
        install_vmtest(root)
        timed("venv_s", started)
        started = time.monotonic()
        status, output = in_root(root, [f"/{VENV_IN_ROOT}/bin/vmtest", "doctor"], timeout=300)
        timed("doctor_s", started)
        assert status != 0, "doctor passed without arch-test"
        assert failing_checks(output) == {LEFT_OUT}, output
        assert f"apt-get install {LEFT_OUT}" in output

        # 2. The whole list on the same root: only arch-test is missing, then nothing.
        started = time.monotonic()
        status, output = in_root(root, [script], timeout=3600)
        timed("apt_install_rest_s", started)
        assert status == 0, f"install-system-deps.sh failed in the fresh root:\n{output}"
        assert f"install-system-deps: installing {LEFT_OUT}\n" in output, output
        assert installed(root, LEFT_OUT)
        status, output = in_root(root, [f"/{VENV_IN_ROOT}/bin/vmtest", "doctor"], timeout=300)
        assert status == 0 and not failing_checks(output), output
        assert re.search(r"(?m)^ok\s+Debian mirror \(" + suite + r"\): ", output), "the mirror check must run"
    finally:
        leftover_processes = processes_in(root)
        for pid in leftover_processes:  # started in our root by a maintainer script: ours to end
            os.kill(pid, 9)
        mounts.unmount_all()
        leftover_mounts = mounts_under(root)
        if leftover_mounts:  # never delete through a mount: the source tree and apt cache are bound in
            print(f"fresh root: NOT removing {root}: still mounted: {leftover_mounts}")
        else:
            shutil.rmtree(root, ignore_errors=True)
        report(timings)
    assert leftover_mounts == [], f"mounts outlived the test: {leftover_mounts}"
    assert leftover_processes == [], f"processes were left running in the root: {leftover_processes}"
    assert not root.exists()
    assert binfmt_entries() == binfmt_before, "the test changed the host kernel's binfmt_misc registrations"
