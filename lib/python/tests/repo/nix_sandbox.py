"""Real Nix sandbox builds here: Debian's nix-bin builds this repository's derivations in its sandbox.

There is no nixpkgs and no binary cache on these machines, so the inputs a derivation declares
are made into store paths from this machine's own files:

- ``debian-libs``: the shared libraries every binary below needs, with their loader;
- ``stdenv-tools``: what stdenv gives every build (bash, coreutils, findutils, diffutils, sed,
  grep, gawk, tar, gzip, bzip2, xz, make, patch), Debian's binaries copied and
  ``patchelf``'d onto ``debian-libs`` (interpreter and a forced RPATH), scripts' shebangs
  rewritten to the store as patchShebangs does;
- ``python3``: Debian's python3.11 and its standard library, patched the same way, with no
  site-packages of its own;
- one ``python3-<name>`` per Python input (``lib/python3.11/site-packages``, with what that
  package needs itself, as nixpkgs propagates it), from PyPI;
- one path per non-Python input (``cpio``, ``iproute2``, ``procps``) with the commands nixpkgs'
  package of that name puts in ``bin``.

Builds run with ``nix-build --option sandbox true`` (no fallback to an unsandboxed build) as
NixOS configures the sandbox: ``/bin/sh`` is a static busybox and nothing else is in ``/bin``;
``/usr`` does not exist; ``HOME=/homeless-shelter``; no network. Root builds without build
users (``build-users-group`` empty), so the builder runs as nixbld (uid 1000) in its own
user namespace.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vmtest.portable.image.builder import cache_dir

HERE = Path(__file__).resolve().parent
SANDBOX_NIX = HERE / "nix" / "sandbox"
BUSYBOX = Path("/usr/bin/busybox")  # Debian's busybox-static: NixOS's sandbox /bin/sh is a busybox too
DEBIAN_PYTHON = Path("/usr/bin/python3.11")
PYTHON_VERSION = "3.11"
SITE_PACKAGES = f"lib/python{PYTHON_VERSION}/site-packages"

# stdenv's initial path (pkgs/stdenv/generic/common-path.nix), as Debian packages.
STDENV_PACKAGES = ("bash", "coreutils", "findutils", "diffutils", "sed", "grep", "gawk", "tar", "gzip", "bzip2",
                   "xz-utils", "make", "patch")
# Names nixpkgs' packages put in bin that Debian gives through its alternatives: gawk's awk, bash's sh.
STDENV_ALIASES = {"awk": "gawk", "sh": "bash"}
# A non-Python nixpkgs package -> the commands its ``bin`` has that our derivations call.
HOST_PACKAGES = {
    "cpio": ("cpio",),
    "procps": ("ps", "pgrep", "pkill", "sysctl"),
    "iproute2": ("ip", "ss"),
    "util-linux": ("unshare", "findmnt", "mount", "umount"),
    "zstd": ("zstd",),
    "gzip": ("gzip",),
    "jq": ("jq",),
    "curl": ("curl",),
    "systemd": ("journalctl", "systemctl"),
    "shellcheck": ("shellcheck",),
}
# A nixpkgs Python attribute -> the PyPI distributions its store path holds (itself and what it
# propagates). ``pytestCheckHook`` is pytest; the build hooks are what pypaBuildHook and
# pypaInstallHook run (``python -m build``, ``python -m installer``).
PYTHON_PACKAGES = {
    "setuptools": ("setuptools",),
    "colorama": ("colorama",),
    "junit-xml": ("junit-xml",),
    "rich": ("rich",),
    "pytest": ("pytest",),
    "pytestCheckHook": ("pytest",),
    "pyyaml": ("pyyaml",),
    "aiohttp": ("aiohttp",),
    "psycopg": ("psycopg",),
    "playwright": ("playwright",),
    "pytest-playwright": ("pytest-playwright",),
    "build-hooks": ("build", "installer", "wheel"),
}
NIX_OPTIONS = (
    "--option", "sandbox", "true",
    "--option", "sandbox-fallback", "false",
    "--option", "build-users-group", "",
    "--option", "substituters", "",
    "--option", "sandbox-paths", f"/bin/sh={BUSYBOX}",
    # What a NixOS test derivation requires (run.nix): the stand-in drivers here need no KVM.
    "--option", "system-features", "benchmark big-parallel nixos-test kvm",
)


class SandboxUnavailable(Exception):
    """This machine cannot build in a Nix sandbox: the message says what is missing."""


@dataclass(frozen=True)
class Build:
    """One nix-build: its exit status, output path (when it built) and the build log."""

    returncode: int
    out: Path | None
    log: str

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and self.out is not None


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]


def missing_requirements() -> list[str]:
    """What this host lacks for sandbox builds (empty: nothing)."""
    problems = [f"{tool} is not on PATH" for tool in ("nix-build", "nix-store", "patchelf") if not shutil.which(tool)]
    if not BUSYBOX.is_file():
        problems.append(f"{BUSYBOX} is missing (Debian's busybox-static)")
    if not DEBIAN_PYTHON.is_file():
        problems.append(f"{DEBIAN_PYTHON} is missing (Debian's python3.11)")
    if os.geteuid() != 0:
        problems.append("sandbox builds without a nix-daemon need root")
    return problems


def add_to_store(directory: Path) -> str:
    """``nix-store --add DIRECTORY``: its store path (named after the directory)."""
    done = _run(["nix-store", "--add", str(directory)])
    if done.returncode != 0:
        raise SandboxUnavailable(f"nix-store --add {directory} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def register_references(path: str, references: list[str]) -> None:
    """Record what ``path`` refers to, as Nix's scan of a built output would (``nix-store --add`` records
    nothing), so that a build's sandbox holds the path's closure, the libraries with the tools."""
    listing = f"{path}\n\n{len(references)}\n" + "".join(f"{reference}\n" for reference in references)
    done = _run(["nix-store", "--register-validity", "--reregister"], input=listing)
    if done.returncode != 0:
        raise SandboxUnavailable(f"nix-store --register-validity {path} failed: {done.stderr.strip()}")


def _is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"\x7fELF"


def _needed_libraries(binaries: list[Path]) -> set[Path]:
    """The shared libraries (resolved) these ELF files load, by ldd."""
    found: set[Path] = set()
    for binary in binaries:
        for line in _run(["ldd", str(binary)]).stdout.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
                found.add(Path(parts[2]))
            elif parts and parts[0].startswith("/") and "ld-linux" in parts[0]:
                found.add(Path(parts[0]))
    return found


def _loader(libraries: set[Path]) -> Path:
    return next(path for path in libraries if "ld-linux" in path.name)


def _patch(path: Path, libs: str, loader_name: str) -> None:
    """Point an ELF file at the store's libraries: its interpreter (executables) and RPATH."""
    if not _is_elf(path):
        return
    interpreter = _run(["patchelf", "--print-interpreter", str(path)])
    argv = ["patchelf", "--force-rpath", "--set-rpath", f"{libs}/lib"]
    if interpreter.returncode == 0 and interpreter.stdout.strip():
        argv += ["--set-interpreter", f"{libs}/lib/{loader_name}"]
    done = _run([*argv, str(path)])
    if done.returncode != 0:
        raise SandboxUnavailable(f"patchelf {path}: {done.stderr.strip()}")


def _package_commands(package: str) -> list[Path]:
    listing = _run(["dpkg-query", "-L", package])
    if listing.returncode != 0:
        raise SandboxUnavailable(f"Debian package {package} is not installed")
    return sorted({Path(line) for line in listing.stdout.splitlines()
                   if line.startswith(("/bin/", "/usr/bin/", "/sbin/", "/usr/sbin/"))
                   and (Path(line).is_file() or Path(line).is_symlink())})


def _copy_commands(commands: list[Path], bin_dir: Path) -> list[Path]:
    bin_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for command in commands:
        target = bin_dir / command.name
        if target.exists() or not command.exists():
            continue
        shutil.copy2(command.resolve(), target)
        target.chmod(0o755)
        copied.append(target)
    return copied


def _patch_shebangs(bin_dir: Path, store_bins: dict[str, str]) -> None:
    """As patchShebangs: ``#!/bin/x`` and ``#!/usr/bin/x`` become the store's x (``/bin/sh`` stays)."""
    for script in bin_dir.iterdir():
        if script.is_symlink() or _is_elf(script):
            continue
        first, newline, rest = script.read_bytes().partition(b"\n")
        if not first.startswith(b"#!"):
            continue
        interpreter, space, arguments = first[2:].strip().partition(b" ")
        name = Path(interpreter.decode()).name
        if interpreter != b"/bin/sh" and name in store_bins:
            script.write_bytes(b"#!" + store_bins[name].encode() + space + arguments + newline + rest)


@dataclass(frozen=True)
class StoreInputs:
    """The store paths made from this machine's files, by the names the Nix side gives them."""

    paths: dict[str, str]

    def json_file(self, directory: Path) -> Path:
        target = directory / "inputs.json"
        target.write_text(json.dumps(self.paths, indent=1, sort_keys=True))
        return target


def _make_tools(staging: Path, name: str, commands: list[Path], libs: str, loader_name: str,
                store_bins: dict[str, str], aliases: dict[str, str] | None = None) -> str:
    bin_dir = staging / name / "bin"
    for copied in _copy_commands(commands, bin_dir):
        _patch(copied, libs, loader_name)
    for alias, target in (aliases or {}).items():
        if (bin_dir / target).exists() and not (bin_dir / alias).exists():
            (bin_dir / alias).symlink_to(target)
    _patch_shebangs(bin_dir, store_bins)
    path = add_to_store(staging / name)
    register_references(path, [libs, *sorted({value.split("/bin/")[0] for value in store_bins.values()})])
    return path


def _make_python(staging: Path, libs: str, loader_name: str) -> str:
    root = staging / "python3"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(DEBIAN_PYTHON, root / "bin" / f"python{PYTHON_VERSION}")
    for alias in ("python3", "python"):
        (root / "bin" / alias).symlink_to(f"python{PYTHON_VERSION}")
    stdlib = Path(f"/usr/lib/python{PYTHON_VERSION}")
    target = root / "lib" / f"python{PYTHON_VERSION}"
    # No site-packages of its own, no test suite, nothing that needs X11 (tkinter).
    shutil.copytree(stdlib, target, symlinks=False, ignore_dangling_symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "test", "dist-packages", "site-packages",
                                                  "sitecustomize.py", "tkinter", "idlelib", "_tkinter*",
                                                  "EXTERNALLY-MANAGED"))
    (target / "site-packages").mkdir()
    # nixpkgs' python installs into lib/pythonX.Y/site-packages (the posix_prefix scheme); Debian's
    # sysconfig picks its posix_local scheme (local/lib/pythonX.Y/dist-packages) outside a venv.
    sysconfig = target / "sysconfig.py"
    patched = sysconfig.read_text().replace("prefix_scheme = 'posix_local'", "prefix_scheme = 'posix_prefix'")
    if patched == sysconfig.read_text():
        raise SandboxUnavailable(f"{sysconfig}: Debian's posix_local default was not found to undo")
    sysconfig.write_text(patched)
    for path in [root / "bin" / f"python{PYTHON_VERSION}", *sorted((target / "lib-dynload").glob("*.so"))]:
        _patch(path, libs, loader_name)
    store_path = add_to_store(root)
    register_references(store_path, [libs])
    return store_path


def _make_python_package(staging: Path, name: str, distributions: tuple[str, ...]) -> str:
    root = staging / f"python3-{name}"
    site = root / SITE_PACKAGES
    site.mkdir(parents=True)
    done = _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
                 "--target", str(site), *distributions])
    if done.returncode != 0:
        raise SandboxUnavailable(f"pip could not install {' '.join(distributions)}: {done.stderr.strip()}")
    shutil.rmtree(site / "bin", ignore_errors=True)
    return add_to_store(root)


def _key() -> str:
    """What the store inputs are made from: this file, Debian's package versions, the Python."""
    packages = [*STDENV_PACKAGES, "python3.11-minimal", "libpython3.11-stdlib", "busybox-static",
                *{"cpio", "procps", "iproute2", "util-linux", "zstd", "jq", "curl", "systemd", "shellcheck"}]
    versions = _run(["dpkg-query", "-W", *sorted(set(packages))]).stdout
    digest = hashlib.sha256(Path(__file__).read_bytes() + versions.encode() + sys.version.encode())
    return digest.hexdigest()[:16]


def store_inputs() -> StoreInputs:
    """The store paths, made once per host and kept while the store still has them."""
    problems = missing_requirements()
    if problems:
        raise SandboxUnavailable("; ".join(problems))
    record = cache_dir() / "nix-sandbox-inputs" / f"{_key()}.json"
    if record.is_file():
        paths: dict[str, str] = json.loads(record.read_text())
        if _run(["nix-store", "--check-validity", *paths.values()]).returncode == 0:
            return StoreInputs(paths)
    with tempfile.TemporaryDirectory(prefix="nix-inputs-") as scratch:
        staging = Path(scratch)
        commands = [command for package in STDENV_PACKAGES for command in _package_commands(package)]
        host_commands: dict[str, list[Path]] = {}
        for package, names in HOST_PACKAGES.items():
            found = [Path(path) for path in map(shutil.which, names) if path]
            host_commands[package] = [path.resolve() if path.is_symlink() else path for path in found]
        elves = [path for path in commands + [p for group in host_commands.values() for p in group] + [DEBIAN_PYTHON]
                 if path.exists() and _is_elf(path.resolve())]
        elves += sorted(Path(f"/usr/lib/python{PYTHON_VERSION}/lib-dynload").glob("*.so"))
        libraries = {path for path in _needed_libraries([path.resolve() for path in elves])
                     if not any(part in path.name for part in ("libX", "libtk", "libtcl", "libxcb"))}
        libs_dir = staging / "debian-libs" / "lib"
        libs_dir.mkdir(parents=True)
        for library in libraries:
            shutil.copy2(library, libs_dir / library.name)
        loader_name = _loader(libraries).name
        libs = add_to_store(staging / "debian-libs")
        paths = {"debian-libs": libs}
        stdenv = _make_tools(staging, "stdenv-tools", commands, libs, loader_name, {}, STDENV_ALIASES)
        paths["stdenv-tools"] = stdenv
        store_bins = {name: f"{stdenv}/bin/{name}" for name in ("bash", "sh", "sed", "gawk", "awk", "make")}
        for package, found in host_commands.items():
            paths[package] = _make_tools(staging, package, found, libs, loader_name, store_bins)
        paths["python3"] = _make_python(staging, libs, loader_name)
        for name, distributions in PYTHON_PACKAGES.items():
            paths[f"python3-{name}"] = _make_python_package(staging, name, distributions)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(paths, indent=1, sort_keys=True))
    return StoreInputs(paths)


def nix_build(expression: Path, inputs: StoreInputs, workdir: Path, arguments: dict[str, str] | None = None,
              attribute: str | None = None) -> Build:
    """``nix-build`` EXPRESSION in the real sandbox, called with ``inputs`` (a JSON file of store paths).

    ``arguments`` are passed with ``--arg NAME VALUE`` (Nix expressions). An output already in
    the store is deleted first, so that the build really runs here (a test must not pass on an
    earlier run's output). Returns the build's status, output and log; raises nothing.
    """
    selection = ["--arg", "inputsFile", str(inputs.json_file(workdir))]
    for name, value in (arguments or {}).items():
        selection += ["--arg", name, value]
    if attribute:
        selection += ["-A", attribute]
    instantiated = _run(["nix-instantiate", str(expression), *selection], cwd=workdir)
    if instantiated.returncode != 0:
        return Build(instantiated.returncode, None, _without_host_warnings(instantiated.stderr))
    for derivation in instantiated.stdout.split():
        for output in _run(["nix-store", "-q", "--outputs", derivation]).stdout.split():
            if Path(output).exists():
                delete_from_store(Path(output))
    done = _run(["nix-build", *NIX_OPTIONS, "--no-out-link", "--keep-going", str(expression), *selection],
                cwd=workdir)
    out = done.stdout.strip().splitlines()
    return Build(done.returncode, Path(out[-1]) if done.returncode == 0 and out else None,
                 _without_host_warnings(done.stderr))


def _without_host_warnings(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if not line.startswith("warning: the group 'nixbld'"))


def delete_from_store(path: Path) -> None:
    """Remove a built path and whatever refers to it (nothing here is a GC root: builds use
    --no-out-link); raise SandboxUnavailable if the store keeps it."""
    referrers = _run(["nix-store", "-q", "--referrers-closure", str(path)]).stdout.split()
    done = _run(["nix-store", "--delete", *(referrers or [str(path)])])
    if done.returncode != 0 or path.exists():
        raise SandboxUnavailable(f"nix-store --delete {path} failed: {_without_host_warnings(done.stderr).strip()}")
