"""Rehearse a Python package's Nix build and check phase here, under its builder's conditions.

``buildPythonPackage`` builds from the ``src`` fileset only, with the declared inputs only, and
runs ``pytestCheckHook`` in the sandbox: the unpacked source as the working directory, a PATH of
stdenv's tools and the declared check inputs, ``HOME=/homeless-shelter``, no network. A test
that imports an undeclared module, reads a file outside the fileset or calls a tool nobody
declared passes in ``make test`` and fails there. The rehearsal reads what package.nix
declares by evaluating it (``nix/python-package-args.nix``: real nixpkgs lib, stub packages)
and reproduces those conditions:

- source: exactly the fileset's files (those git tracks, as a flake's source holds), copied
  into an empty directory;
- dependencies: a fresh venv with only the declared Python inputs (PYPI_NAMES maps them);
- build: ``pip install --no-deps --no-build-isolation --no-index`` into a prefix of its own,
  as pypaBuildHook and pypaInstallHook do, without network;
- pythonImportsCheck, then the check phase as pytestCheckHook forms it, without network, with
  PATH = stdenv's tools + the declared non-Python check inputs (HOST_COMMANDS maps them) + the
  venv's Python.

Not reproduced: the sandbox's file system (its /usr/bin/env is missing, here it exists), the
build user, and the interpreter's exact version (the venv's Python runs, not nixpkgs' python3).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .flake_eval import EvaluationError, instantiate_json

HERE = Path(__file__).resolve().parent
ARGS_EXPRESSION = HERE / "nix" / "python-package-args.nix"

# nixpkgs attribute -> PyPI distribution. An input without a mapping is an error, not a skip.
PYPI_NAMES = {
    "setuptools": "setuptools",
    "colorama": "colorama",
    "junit-xml": "junit-xml",
    "rich": "rich",
    "pytestCheckHook": "pytest",
    "pytest": "pytest",
}
# What buildPythonPackage's own hooks bring (pypaBuildHook builds a wheel), beside the declared inputs.
BUILD_TOOLING = ("wheel",)
# Non-Python nixpkgs packages a check phase may declare -> the commands they put on PATH.
HOST_COMMANDS = {
    "cpio": ("cpio",),
    "procps": ("ps", "pgrep", "pkill"),
    "iproute2": ("ss", "ip"),
    "util-linux": ("unshare", "findmnt", "mount", "umount"),
    "zstd": ("zstd",),
}
# stdenv's initial path (pkgs/stdenv/generic/common-path.nix) as Debian packages.
STDENV_PACKAGES = ("coreutils", "findutils", "diffutils", "sed", "grep", "gawk", "mawk", "tar", "gzip",
                   "bzip2", "xz-utils", "make", "bash", "patch", "file")
# What pytestCheckHook and buildPythonPackage understand that the rehearsal reproduces; any
# other attribute in package.nix fails the rehearsal until it is taught what it means.
KNOWN_ATTRS = {
    "pname", "version", "pyproject", "src", "build-system", "dependencies", "nativeCheckInputs",
    "checkInputs", "enabledTestPaths", "disabledTestPaths", "disabledTests", "pytestFlags",
    "pythonImportsCheck", "doCheck", "meta",
}


class RehearsalError(Exception):
    """The package cannot even be rehearsed: evaluation failed or it declares what we cannot map."""


@dataclass(frozen=True)
class PythonPackage:
    """What package.nix gives buildPythonPackage."""

    pname: str
    root: Path
    files: tuple[Path, ...]
    build_system: tuple[str, ...]
    dependencies: tuple[str, ...]
    check_inputs: tuple[str, ...]
    enabled_test_paths: tuple[str, ...]
    disabled_test_paths: tuple[str, ...] = ()
    disabled_tests: tuple[str, ...] = ()
    pytest_flags: tuple[str, ...] = ()
    imports_check: tuple[str, ...] = ()
    do_check: bool = True

    @property
    def python_inputs(self) -> tuple[str, ...]:
        return tuple(name for name in (*self.build_system, *self.dependencies, *self.check_inputs)
                     if name not in HOST_COMMANDS)

    @property
    def host_inputs(self) -> tuple[str, ...]:
        return tuple(name for name in self.check_inputs if name in HOST_COMMANDS)


@dataclass
class Rehearsal:
    """The outcome: the phase that ended it and everything it printed."""

    package: PythonPackage
    phase: str  # "check" when every phase ran
    returncode: int
    output: str
    commands: list[list[str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.phase == "check" and self.returncode == 0


def evaluate_python_package(package_nix: Path) -> PythonPackage:
    """Evaluate ``package_nix`` as callPackage would (stub lib and packages); raise RehearsalError."""
    try:
        attrs = instantiate_json(["--arg", "package", str(package_nix.resolve()), str(ARGS_EXPRESSION)])
    except EvaluationError as error:
        raise RehearsalError(f"{package_nix}: evaluation failed:\n{error}") from None
    unknown = sorted(set(attrs) - KNOWN_ATTRS)
    if unknown:
        raise RehearsalError(f"{package_nix}: the rehearsal does not reproduce {', '.join(unknown)}")
    source = attrs["src"]
    unmapped = sorted({name for key in ("build-system", "dependencies", "nativeCheckInputs", "checkInputs")
                       for name in attrs.get(key, []) if name not in PYPI_NAMES and name not in HOST_COMMANDS})
    if unmapped:
        raise RehearsalError(f"{package_nix}: no PyPI or host mapping for {', '.join(unmapped)} "
                             "(add it to PYPI_NAMES or HOST_COMMANDS)")
    return PythonPackage(
        pname=attrs["pname"],
        root=Path(source["root"]),
        files=tuple(Path(name) for name in source["files"]),
        build_system=tuple(attrs.get("build-system", [])),
        dependencies=tuple(attrs.get("dependencies", [])),
        check_inputs=tuple(attrs.get("nativeCheckInputs", [])) + tuple(attrs.get("checkInputs", [])),
        enabled_test_paths=tuple(attrs.get("enabledTestPaths", [])),
        disabled_test_paths=tuple(attrs.get("disabledTestPaths", [])),
        disabled_tests=tuple(attrs.get("disabledTests", [])),
        pytest_flags=tuple(attrs.get("pytestFlags", [])),
        imports_check=tuple(attrs.get("pythonImportsCheck", [])),
        do_check=bool(attrs.get("doCheck", True)),
    )


def _tracked(root: Path, files: tuple[Path, ...]) -> list[Path]:
    """The files a flake's source would hold: those git tracks (all of them outside a work tree)."""
    listing = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "."],
                             capture_output=True, check=False)
    if listing.returncode != 0:
        return list(files)
    tracked = {(root / name).resolve() for name in listing.stdout.decode().split("\0") if name}
    return [path for path in files if path.resolve() in tracked]


def copy_source(package: PythonPackage, destination: Path) -> Path:
    """Copy exactly the fileset's (tracked) files, relative to its root, into ``destination``."""
    for path in _tracked(package.root, package.files):
        target = destination / path.relative_to(package.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return destination


def make_venv(package: PythonPackage, directory: Path) -> Path:
    """A fresh venv holding only the declared Python inputs (with what they need themselves)."""
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    python = directory / "bin" / "python"
    distributions = sorted({PYPI_NAMES[name] for name in package.python_inputs} | set(BUILD_TOOLING))
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                *distributions], capture_output=True, text=True, check=False)
    if installed.returncode != 0:
        raise RehearsalError(f"pip could not install {', '.join(distributions)}:\n{installed.stderr}")
    return python


def stdenv_path(package: PythonPackage, directory: Path) -> Path:
    """A directory of links to stdenv's tools and the declared non-Python inputs' commands only."""
    directory.mkdir(parents=True, exist_ok=True)
    commands: set[Path] = set()
    for debian_package in STDENV_PACKAGES:
        listing = subprocess.run(["dpkg-query", "-L", debian_package], capture_output=True, text=True, check=False)
        commands |= {Path(line) for line in listing.stdout.splitlines()
                     if line.startswith(("/bin/", "/usr/bin/", "/usr/sbin/", "/sbin/"))}
    for name in package.host_inputs:
        for command in HOST_COMMANDS[name]:
            found = shutil.which(command)
            if found is None:
                raise RehearsalError(f"{package.pname}: declared input {name} needs {command} on this host")
            commands.add(Path(found))
    for command in commands:
        link = directory / command.name
        if (command.is_file() or command.is_symlink()) and not link.exists():
            link.symlink_to(command.resolve() if command.is_symlink() else command)
    # Names Debian gives through alternatives, which stdenv has: gawk's awk, bash's sh.
    for alias, targets in (("awk", ("gawk", "mawk")), ("sh", ("bash",))):
        target = next((directory / name for name in targets if (directory / name).exists()), None)
        if target is not None and not (directory / alias).exists():
            (directory / alias).symlink_to(target.resolve())
    return directory


def pytest_command(package: PythonPackage, python: Path) -> list[str]:
    """The check phase's command line as pytestCheckHook forms it (paths, then exclusions, then flags)."""
    argv = [str(python), "-m", "pytest", *package.enabled_test_paths]
    argv += [f"--deselect={path}" if "::" in path else f"--ignore-glob={path}" for path in package.disabled_test_paths]
    if package.disabled_tests:
        argv += ["-k", " and ".join(f"not ({name})" for name in package.disabled_tests)]
    return [*argv, *package.pytest_flags]


def _sandboxed(argv: list[str]) -> list[str]:
    # A network namespace of its own, with only loopback up, as in the Nix sandbox.
    unshare, ip = shutil.which("unshare"), shutil.which("ip") or "ip"
    if unshare is None:
        raise RehearsalError("the rehearsal needs unshare (util-linux) for a network namespace")
    return [unshare, "--net", "--", "/bin/sh", "-c", f'{ip} link set lo up 2>/dev/null; exec "$@"', "sh", *argv]


def rehearse(package_nix: Path, workdir: Path, python: Path | None = None) -> Rehearsal:
    """Build and check the package as buildPythonPackage would; the phase that ended it and its output.

    ``python`` reuses a venv made by make_venv for the same package (the rehearsal's slow part).
    Raises RehearsalError when package.nix cannot be evaluated or declares unmapped inputs.
    """
    package = evaluate_python_package(package_nix)
    source = copy_source(package, workdir / "source")
    python = python or make_venv(package, workdir / "venv")
    prefix = workdir / "out"
    path = stdenv_path(package, workdir / "stdenv-bin")
    home = Path("/homeless-shelter")
    # Nix builds in /build: a short path (AF_UNIX socket paths are limited to 107 bytes).
    build_tmp = Path(tempfile.mkdtemp(prefix="nixbld-", dir="/tmp"))
    environment = {
        "PATH": f"{path}:{python.parent}",
        "HOME": str(home),
        **dict.fromkeys(("TMPDIR", "TEMPDIR", "TMP", "TEMP", "NIX_BUILD_TOP"), str(build_tmp)),
        "PYTHONPATH": str(prefix),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PIP_NO_CACHE_DIR": "1",
        "LANG": "C.UTF-8",
    }
    rehearsal = Rehearsal(package, "build", 0, "")
    phases: list[tuple[str, list[str]]] = [
        ("build", [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                   "--no-build-isolation", "--no-index", "--target", str(prefix), str(source)]),
    ]
    phases += [("imports", [str(python), "-c", f"import {module}"]) for module in package.imports_check]
    if package.do_check:
        phases.append(("check", pytest_command(package, python)))
    try:
        for phase, argv in phases:
            rehearsal.commands.append(argv)
            done = subprocess.run(_sandboxed(argv), cwd=source, env=environment, capture_output=True, text=True,
                                  check=False)
            rehearsal.phase, rehearsal.returncode = phase, done.returncode
            rehearsal.output += f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}"
            if done.returncode != 0:
                break
    finally:
        shutil.rmtree(build_tmp, ignore_errors=True)
    if home.exists():
        rehearsal.phase, rehearsal.returncode = "check", 1
        rehearsal.output += f"\n{home} exists after the check phase: the sandbox has no home directory\n"
    return rehearsal
