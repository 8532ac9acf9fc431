"""Installing packages into a foreign-architecture image with as little emulation as possible.

The host's apt downloads, the host's dpkg unpacks; only maintainer scripts run
under qemu-user, and the helpers they call that are slow under emulation are
recorded and replayed natively.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from vmtest.errors import ImageBuildError
from vmtest.portable.image.recipe import Recipe
from vmtest.portable.image.steps import CHROOT_PATH, DOC_EXCLUDES, apt_env, run, step_done

# Maintainer-script helpers that cost seconds per call under emulation (Perl, systemctl's
# big shared library) and whose effect the host reproduces natively. Shadows earlier in
# PATH (/usr/local, which no package touches) only record their arguments, from the
# essential set's installation on; replay_recorded_helpers then does the work natively.
RECORDED_HELPERS = ("usr/local/bin/deb-systemd-helper", "usr/local/bin/deb-systemd-invoke",
                    "usr/local/sbin/invoke-rc.d", "usr/local/bin/systemd-hwdb")
HELPER_CALLS = "var/lib/vmtest-helper-calls"


def install_helper_shadows(root: Path) -> None:
    """Put the recording shadows of RECORDED_HELPERS into ``root`` (idempotent)."""
    for relative in RECORDED_HELPERS:
        shadow = root / relative
        shadow.parent.mkdir(parents=True, exist_ok=True)
        shadow.write_text(
            f'#!/bin/sh\necho "{shadow.name} $*" >> /{HELPER_CALLS}\n'
            # A fresh install as deb-systemd-helper sees it: no state files yet.
            'for word in "$@"; do case "$word" in debian-installed|is-enabled) exit 1;; esac; done\n'
            "exit 0\n"
        )
        shadow.chmod(0o755)


def remove_helper_shadows(root: Path) -> None:
    for relative in RECORDED_HELPERS:
        (root / relative).unlink(missing_ok=True)


def recorded_unit_enables(calls: str) -> tuple[list[str], list[str]]:
    """The (system, user) units that recorded ``deb-systemd-helper enable`` calls asked for, in order."""
    system: list[str] = []
    user: list[str] = []
    for line in calls.splitlines():
        words = line.split()
        if len(words) < 3 or words[0] != "deb-systemd-helper":
            continue
        options = [word for word in words[1:] if word.startswith("--")]
        arguments = [word for word in words[1:] if not word.startswith("--")]
        if arguments and arguments[0] == "enable":
            target = user if "--user" in options else system
            target.extend(unit for unit in arguments[1:] if unit not in target)
    return system, user


def replay_recorded_helpers(root: Path, recipe: Recipe) -> None:
    """Do natively what the recorded helpers were asked: enable units (systemctl --root), compile hwdb.

    ``invoke-rc.d``/``deb-systemd-invoke`` only start services, which an image
    build never does (policy-rc.d denies it anyway): nothing to replay.
    """
    remove_helper_shadows(root)
    calls_file = root / HELPER_CALLS
    calls = calls_file.read_text() if calls_file.is_file() else ""
    calls_file.unlink(missing_ok=True)
    system, user = recorded_unit_enables(calls)
    for scope, units in (("--system", system), ("--global", user)):
        for unit in units:
            # What deb-systemd-helper enable does on a first install, one unit at a time.
            done = run(recipe, "service links", ["systemctl", f"--root={root}", scope,
                                                 "--preset-mode=enable-only", "preset", unit], check=False)
            if done.returncode != 0:
                print(f"vmtest-step: warning: systemctl {scope} preset {unit}: {done.stderr.strip()}",
                      file=sys.stderr, flush=True)
    if any(line.startswith("systemd-hwdb ") for line in calls.splitlines()):
        compile_hwdb(root, recipe)


def compile_hwdb(root: Path, recipe: Recipe) -> None:
    """Compile udev's hardware database with the host's systemd-hwdb (0.3 s; 40 s emulated).

    The hwdb.bin format is the same across architectures and systemd versions
    (a header records its sizes); without a host systemd-hwdb (package udev),
    the image's own runs under emulation.
    """
    if shutil.which("systemd-hwdb"):
        run(recipe, "hwdb", ["systemd-hwdb", f"--root={root}", "--usr", "update"])
    else:
        print("vmtest-step: no systemd-hwdb on the host (apt-get install udev): compiling hwdb emulated",
              file=sys.stderr, flush=True)
        run(recipe, "hwdb", ["chroot", str(root), "systemd-hwdb", "--usr", "update"])


def install_packages_natively_unpacked(root: Path, recipe: Recipe, packages: list[str]) -> None:
    """Install ``packages`` into a foreign-architecture image with as little emulation as possible.

    apt resolves and downloads on the host; the host's dpkg unpacks (native
    decompression, the bulk of the work); only maintainer scripts run under
    qemu-user, with Python's byte-compilation skipped (Python compiles on
    first import instead): stock, those two steps make an arm64 build several
    times slower.
    """
    started = time.monotonic()
    download = run(recipe, "packages", ["apt-get", "install", "--download-only", "-y", "-q",
                                        "--no-install-recommends", *packages], env=apt_env(recipe), check=False)
    if download.returncode != 0:
        unknown = re.findall(r"Unable to locate package (\S+)", download.stdout + download.stderr)
        if unknown:
            raise ImageBuildError(
                f"recipe {recipe.path}: packages: {', '.join(sorted(set(unknown)))}: "
                f"no such package in Debian {recipe.suite}/{recipe.arch}"
            )
        problem = download.stderr.strip()[-1500:]
        raise ImageBuildError(f"recipe {recipe.path}: apt could not resolve packages: {problem}")
    archives = root / "var/cache/apt/archives"
    debs = sorted(str(path) for path in archives.glob("*.deb"))
    started = step_done("packages: download", started)
    if debs:
        excludes = [f"--path-exclude={pattern}" for pattern in DOC_EXCLUDES]
        run(recipe, "packages (host unpack)", [
            "dpkg", f"--root={root}", "--force-architecture", "--force-depends", "--force-unsafe-io",
            *excludes, "--path-include=/usr/share/doc/*/copyright", "--unpack", *debs,
        ])
    started = step_done(f"packages: host unpack of {len(debs)} debs", started)
    stubbed = _stub_byte_compilers(root)
    install_helper_shadows(root)  # the extract hook put them there already; this covers a direct run
    try:
        returncode, output = _run_into_build_log(
            ["chroot", str(root), "dpkg", "--force-unsafe-io", "--configure", "-a"],
            {"PATH": CHROOT_PATH, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"},
        )
    finally:
        for original, aside in stubbed:
            aside.replace(original)
    if returncode != 0:
        raise ImageBuildError(f"recipe {recipe.path}: configuring packages failed:\n{output.strip()[-2000:]}")
    started = step_done("packages: configure (emulated)", started)
    replay_recorded_helpers(root, recipe)
    step_done("packages: service links and hwdb (native)", started)
    for deb in debs:
        Path(deb).unlink()


def _run_into_build_log(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``argv``, passing each output line on to the build log as it comes; returns (status, output).

    The builder time-stamps the log's lines: "Setting up X" lines then show
    which package's maintainer scripts take the time under emulation.
    """
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace")
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        sys.stderr.write("  " + line)
        sys.stderr.flush()
    return process.wait(), "".join(lines)


def _stub_byte_compilers(root: Path) -> list[tuple[Path, Path]]:
    stubbed = []
    candidates = [*root.glob("usr/lib/python3*/py_compile.py"), root / "usr/bin/py3compile"]
    for original in candidates:
        if original.is_file() and not original.is_symlink():
            aside = original.with_name(original.name + ".vmtest-aside")
            original.replace(aside)
            original.write_text("import sys\nsys.exit(0)\n" if original.suffix == ".py" else "#!/bin/sh\nexit 0\n")
            original.chmod(0o755)
            stubbed.append((original, aside))
    return stubbed
