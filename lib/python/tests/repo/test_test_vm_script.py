"""scripts/test-vm (and the Makefile's test-vm-* targets) against a stand-in Nix.

Each test runs the script in a copy of the repository whose stand-ins record what they were
asked and run nothing real: `nix` on PATH answers `config show`/`show-config`, `eval`, `build`,
`store delete` and `run` as a real Nix would for a host of system x86_64-linux with the features
{benchmark, big-parallel, kvm, nixos-test} and no extra platforms (a build it cannot do fails
with Nix's own "a 'aarch64-linux' with features {…} is required" error); its store is a
directory whose runs hold the files a NixOS test's artifacts hold, and a path still reachable
from an out-link cannot be deleted. scripts/install-system-deps.sh, the Python that `make venv`
calls and the venv's `vmtest` are stand-ins too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .repo_checks import tracked_copy

# Nix's own wording (src/libstore/build/local-derivation-goal.cc, canBuildLocally in
# parsed-derivations.cc); the store delete refusal is nix-store --delete's.
STANDIN_NIX = r'''
import hashlib, json, os, shutil, sys
from pathlib import Path

state = Path(os.environ["STANDIN_STATE"])
store = state / "store"
args = sys.argv[1:]
with (state / "nix-calls.jsonl").open("a") as log:
    log.write(json.dumps(args) + "\n")
while args and args[0] in ("--extra-experimental-features", "--option"):
    args = args[2 if args[0] == "--extra-experimental-features" else 3:]

HOST = os.environ.get("STANDIN_SYSTEM", "x86_64-linux")
FEATURES = os.environ.get("STANDIN_FEATURES", "benchmark big-parallel kvm nixos-test").split()
REQUIRED = ["kvm", "nixos-test"]  # lib/nix/test-with-artifacts.nix on Linux
SUITE_FILES = {"vm-boot": "boot", "vm-service": "services", "vm-integration": "integration"}


def fail(message, code=1):
    sys.stderr.write(message + "\n")
    sys.exit(code)


def config():
    machines = state / "machines"  # written by a test that configures remote builders
    return "".join(f"{key} = {value}\n" for key, value in [
        ("builders", f"@{machines}"), ("cores", "0"), ("experimental-features", "nix-command flakes"),
        ("extra-platforms", ""), ("max-jobs", "1"), ("sandbox", "true"), ("system", HOST),
        ("system-features", " ".join(FEATURES)), ("trusted-users", "root")])


def installable(name):
    # .#packages.<system>.<suite>-artifacts or .#checks.<system>.<suite>
    kind, system, attribute = name.removeprefix(".#").split(".", 2)
    return kind, system, attribute.removesuffix("-artifacts")


def path_of(system, suite):
    base = f"{system}-{suite}-artifacts"
    return store / f"{hashlib.sha256(base.encode()).hexdigest()[:32]}-{suite}-artifacts"


def has_builders():
    machines = state / "machines"
    return machines.exists() and any(line.split("#")[0].strip() for line in machines.read_text().splitlines())


def realise(system, suite):
    """The artifacts of one run: built (the suite runs) unless the store holds them already."""
    path = path_of(system, suite)
    if path.exists():
        return path
    if system != HOST or not set(REQUIRED) <= set(FEATURES):
        if not has_builders():
            fail(f"error: a '{system}' with features {{{', '.join(REQUIRED)}}} is required to build "
                 f"'/nix/store/{path.name}.drv', but I am a '{HOST}' with features {{{', '.join(FEATURES)}}}")
    failing = os.environ.get("STANDIN_FAILING", "").split()
    status = 1 if suite in failing else 0
    stem = SUITE_FILES[suite]
    (path / "logs" / stem / "vm").mkdir(parents=True)
    (path / "logs" / stem / "vm" / "journal.txt").write_text(f"{suite} journal\n")
    failure = '<testcase name="docker run"><failure message="boom"/></testcase>' if status else ""
    (path / f"{stem}-junit.xml").write_text(
        f'<testsuites><testsuite name="{stem}" tests="{1 + bool(status)}" failures="{int(bool(status))}">'
        f'<testcase name="ok"/>{failure}</testsuite></testsuites>')
    (path / "vm-validation-perf.json").write_text(json.dumps({"vm": {"suites": {stem: {"seconds": 1.0}}}}))
    (path / "driver-exit-status").write_text(f"{status}\n")
    for item in [path, *path.rglob("*")]:
        item.chmod(0o555 if item.is_dir() else 0o444)
    with (state / "runs.log").open("a") as runs:
        runs.write(f"{system} {suite} {status}\n")
    return path


def build(rest):
    out_link, names, i = "result", [], 0
    no_link = False
    while i < len(rest):
        if rest[i] in ("--out-link", "-o"):
            out_link, i = rest[i + 1], i + 2
            continue
        if rest[i] == "--no-link":
            no_link = True
        elif not rest[i].startswith("-"):
            names.append(rest[i])
        i += 1
    failed = []
    for index, name in enumerate(names):
        kind, system, suite = installable(name)
        artifacts = realise(system, suite)
        if kind == "checks":
            status = (artifacts / "driver-exit-status").read_text().strip()
            if status != "0":
                sys.stderr.write(
                    f"error: builder for '/nix/store/{suite}.drv' failed with exit code 1;\n"
                    f"       last 2 log lines:\n"
                    f"       > vmtest: the test failed (driver exit status {status}); artifacts in {artifacts}\n"
                    f"       >   FAILED {SUITE_FILES[suite]}: docker run\n")
                failed.append(name)
            continue
        if not no_link:
            link = Path(out_link + (f"-{index}" if index else ""))
            if link.is_symlink():
                link.unlink()
            link.symlink_to(artifacts)
            with (state / "roots").open("a") as roots:
                roots.write(f"{link.absolute()}\n")
    if failed:
        fail(f"error: build of {', '.join(failed)} failed")


def delete(paths):
    roots = (state / "roots").read_text().split() if (state / "roots").exists() else []
    for text in paths:
        path = Path(text)
        if not path.exists():
            fail(f"error: path '{path}' is not valid")
        if any(Path(root).is_symlink() and Path(root).resolve() == path.resolve() for root in roots):
            fail(f"error: Cannot delete path '{path}' since it is still alive. To find out why, use: "
                 "nix-store --query --roots and nix-store --query --referrers")
        for item in [path, *path.rglob("*")]:
            item.chmod(0o755)
        shutil.rmtree(path)
        sys.stderr.write(f"deleting '{path}'\n")
    sys.stderr.write(f"{len(paths)} store paths deleted, 0.01 MiB freed\n")


command = args[:2]
if command == ["config", "show"]:
    if os.environ.get("STANDIN_NIX_BEFORE_2_20"):
        fail("error: 'config' is not a recognised command\nTry 'nix --help' for more information.")
    sys.stdout.write(config())
elif args[:1] == ["show-config"]:
    sys.stdout.write(config())
elif args[:1] == ["eval"]:
    if os.environ.get("STANDIN_EVAL_ERROR"):
        fail("warning: Git tree is dirty\nerror: " + os.environ["STANDIN_EVAL_ERROR"])
    if "--apply" in args:  # what the three runs require, toString'd
        sys.stdout.write(" ".join(["nixos-test kvm"] * 3))
    else:
        sys.stdout.write("/nix/store/00000000000000000000000000000000-vm-boot.drv\n")
elif args[:1] == ["build"]:
    build(args[1:])
elif command == ["store", "delete"]:
    delete([a for a in args[2:] if not a.startswith("-")])
elif args[:1] == ["run"]:
    pass
else:
    fail(f"error: the stand-in nix does not know {args}")
'''

# `make venv`'s Python (PYTHON=…), and the venv's python and vmtest it makes: they record their calls.
STANDIN_PYTHON = r'''
import json, os, sys
from pathlib import Path

state = Path(os.environ["STANDIN_STATE"])
with (state / "python-calls.jsonl").open("a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
if sys.argv[1:3] == ["-m", "venv"]:
    bin_dir = Path(sys.argv[3]) / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("python", "vmtest"):
        (bin_dir / name).write_text(Path(os.environ["STANDIN_BIN"], "venv-" + name).read_text())
        (bin_dir / name).chmod(0o755)
'''

STANDIN_VMTEST = r'''
import json, os, sys
from pathlib import Path

state = Path(os.environ["STANDIN_STATE"])
with (state / "vmtest-calls.jsonl").open("a") as log:
    log.write(json.dumps({"args": sys.argv[1:], "VMTEST_EXPECT_ARCH": os.environ.get("VMTEST_EXPECT_ARCH")}) + "\n")
'''

STANDIN_INSTALL_DEPS = """#!/bin/sh
echo "install-system-deps: (stand-in)" >>"$STANDIN_STATE/install-deps.log"
"""


@dataclass
class Repo:
    root: Path
    state: Path
    env: dict[str, str]

    def run(self, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, cwd=self.root, env={**self.env, **env}, capture_output=True, text=True,
                              timeout=120)

    def test_vm(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run("./scripts/test-vm", *args, **env)

    def make(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run("make", "--no-print-directory", *args, **env)

    def calls(self, name: str) -> list[list[str]]:
        path = self.state / f"{name}-calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def nix_commands(self) -> list[list[str]]:
        """Each nix call without the experimental-features option."""
        commands = []
        for call in self.calls("nix"):
            while call[:1] == ["--extra-experimental-features"]:
                call = call[2:]
            commands.append(call)
        return commands

    def builds(self) -> list[list[str]]:
        return [call for call in self.nix_commands() if call[:1] == ["build"]]

    def installed_deps(self) -> bool:
        return (self.state / "install-deps.log").exists()

    def made_venv(self) -> bool:
        return (self.root / ".venv/.installed").exists() or any(
            call[:2] == ["-m", "venv"] for call in self.calls("python"))

    def runs(self) -> list[str]:
        path = self.state / "runs.log"
        return path.read_text().splitlines() if path.exists() else []


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    root = tracked_copy(tmp_path / "repo")
    state = tmp_path / "state"
    (state / "store").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "nix", STANDIN_NIX)
    _script(bin_dir / "python-for-make", STANDIN_PYTHON)
    _script(bin_dir / "venv-python", "")
    _script(bin_dir / "venv-vmtest", STANDIN_VMTEST)
    _script(bin_dir / "nproc", "print(4)")  # make test-vm-all runs both architectures at once
    install = root / "scripts/install-system-deps.sh"
    install.write_text(STANDIN_INSTALL_DEPS)
    install.chmod(0o755)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MAKE", "MFLAGS", "VMTEST_", "STANDIN_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", STANDIN_STATE=str(state), STANDIN_BIN=str(bin_dir),
               PYTHON=str(bin_dir / "python-for-make"), TMPDIR=str(tmp_path))
    yield Repo(root, state, env)


def _runtime_line(result: subprocess.CompletedProcess[str], arch: str) -> str:
    lines = [line for line in result.stdout.splitlines() if line.startswith(f"test-vm: {arch} through ")]
    assert len(lines) == 1, result.stdout + result.stderr
    return lines[0]


HOST = "this Nix builds x86_64-linux with features {benchmark, big-parallel, kvm, nixos-test}"


@pytest.mark.parametrize("nix_version", ["2.20 or later", "before 2.20"])
def test_aarch64_on_an_x86_64_host_goes_portable_and_says_why_without_building(
        repo: Repo, nix_version: str) -> None:
    env = {"STANDIN_NIX_BEFORE_2_20": "1"} if nix_version == "before 2.20" else {}
    result = repo.test_vm("aarch64", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _runtime_line(result, "aarch64") == (
        f"test-vm: aarch64 through the portable runtime: {HOST}; aarch64-linux with {{kvm, nixos-test}} "
        "needs a builder (README: VM validation)")
    assert repo.builds() == []
    assert ["config", "show"] in repo.nix_commands()
    if nix_version == "before 2.20":
        assert ["show-config"] in repo.nix_commands()
    # the portable runtime is set up, then runs the three suites on the aarch64 machines
    assert repo.installed_deps() and repo.made_venv()
    [vmtest] = repo.calls("vmtest")
    assert vmtest["VMTEST_EXPECT_ARCH"] == "aarch64"
    assert vmtest["args"] == ["run", "tests/vm/boot.py", "tests/vm/services.py", "tests/vm/integration.py",
                              "--machines", "tests/vm/machines-aarch64.toml", "--out", "out/vm/aarch64"]


def test_a_host_without_a_required_feature_goes_portable(repo: Repo) -> None:
    result = repo.test_vm("x86_64", STANDIN_FEATURES="benchmark big-parallel nixos-test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _runtime_line(result, "x86_64") == (
        "test-vm: x86_64 through the portable runtime: this Nix builds x86_64-linux with features "
        "{benchmark, big-parallel, nixos-test}, without {kvm}, which the runs need ({kvm, nixos-test}), "
        "and has no remote builder (README: VM validation)")
    assert repo.builds() == [] and repo.installed_deps() and len(repo.calls("vmtest")) == 1


def test_aarch64_with_remote_builders_goes_through_nix_trusting_them(repo: Repo) -> None:
    (repo.state / "machines").write_text("# the aarch64 box\nssh://arm aarch64-linux /key 4 1 kvm,nixos-test\n")
    result = repo.test_vm("aarch64")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _runtime_line(result, "aarch64") == (
        f"test-vm: aarch64 through Nix: trusting its remote builders (builders = @{repo.state}/machines: "
        "1 machine(s)) to build aarch64-linux with {kvm, nixos-test}; this Nix itself builds x86_64-linux with "
        "features {benchmark, big-parallel, kvm, nixos-test}")
    assert [call[-3:] for call in repo.builds()] == [
        [f".#packages.aarch64-linux.{suite}-artifacts" for suite in ("vm-boot", "vm-service", "vm-integration")],
        [f".#checks.aarch64-linux.{suite}" for suite in ("vm-boot", "vm-service", "vm-integration")]]
    assert not repo.installed_deps() and not repo.made_venv()


@pytest.mark.parametrize("target", ["test-vm-x86_64", "test-vm-ci"])
def test_x86_64_goes_through_nix_and_installs_nothing(repo: Repo, target: str) -> None:
    result = repo.make(target, "VM_ARCHES=x86_64")
    assert not repo.installed_deps() and not repo.made_venv() and repo.calls("vmtest") == []
    assert result.returncode == 0, result.stdout + result.stderr
    assert _runtime_line(result, "x86_64") == (
        f"test-vm: x86_64 through Nix: {HOST}; the runs need {{kvm, nixos-test}}")
    suites = ("vm-boot", "vm-service", "vm-integration")
    assert repo.builds() == [
        ["build", "-L", "--keep-going", "--out-link", "out/vm/x86_64/result",
         *(f".#packages.x86_64-linux.{suite}-artifacts" for suite in suites)],
        ["build", "--no-link", "--keep-going", *(f".#checks.x86_64-linux.{suite}" for suite in suites)]]
    out = repo.root / "out/vm/x86_64"
    assert {path.name for path in out.glob("*-junit.xml")} == {
        "boot-junit.xml", "services-junit.xml", "integration-junit.xml"}
    assert {path.name for path in out.glob("driver-exit-status-*")} == {f"driver-exit-status-{s}" for s in suites}
    assert (out / "logs/services/vm/journal.txt").is_file()
    # passing runs stay where Nix put them, each with its out-link
    assert all((out / link).is_symlink() for link in ("result", "result-1", "result-2"))
    assert not any(call[:2] == ["store", "delete"] for call in repo.nix_commands())
    if target == "test-vm-ci":  # the job's report by the flake's vmtest: no venv
        assert ["run", ".#vmtest", "--", "report", "out/vm"] in repo.nix_commands()


def test_a_failed_run_is_reported_deleted_from_the_store_and_run_again_next_time(repo: Repo) -> None:
    result = repo.test_vm("x86_64", STANDIN_FAILING="vm-service")
    out = repo.root / "out/vm/x86_64"
    # the failed run lost its out-link and left the store; the passing ones did not
    deletes = [call for call in repo.nix_commands() if call[:2] == ["store", "delete"]]
    assert len(deletes) == 1, result.stdout + result.stderr
    failed_run = Path(deletes[0][2])
    assert failed_run.name.endswith("-vm-service-artifacts") and not failed_run.exists()
    assert f"test-vm: deleted the failed run of vm-service from the Nix store ({failed_run})" in result.stdout
    assert not (out / "result-1").exists() and not (out / "result-1").is_symlink()
    assert (out / "result").is_symlink() and (out / "result-2").is_symlink()
    # the suite failed: so does the script, the verdict naming the failed case; its files are in OUT
    assert result.returncode != 0, result.stdout + result.stderr
    assert "FAILED services: docker run" in result.stderr
    assert (out / "driver-exit-status-vm-service").read_text().strip() == "1"
    assert (out / "services-junit.xml").is_file()
    # deleted after the verdicts were built (a verdict needs its run: building it later would run it again)
    commands = [call[:2] for call in repo.nix_commands() if call[:1] in (["build"], ["store"])]
    assert commands == [["build", "-L"], ["build", "--no-link"], ["store", "delete"]]
    assert repo.runs() == ["x86_64-linux vm-boot 0", "x86_64-linux vm-service 1", "x86_64-linux vm-integration 0"]

    # The next invocation runs the failed suite again, and only that one.
    again = repo.test_vm("x86_64")
    assert again.returncode == 0, again.stdout + again.stderr
    assert repo.runs()[3:] == ["x86_64-linux vm-service 0"]
    assert (out / "driver-exit-status-vm-service").read_text().strip() == "0"


def test_vmtest_runtime_forces_a_runtime(repo: Repo) -> None:
    # portable on a host whose Nix could run the suites: no Nix asked, the portable runtime set up
    result = repo.test_vm("x86_64", VMTEST_RUNTIME="portable")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _runtime_line(result, "x86_64") == "test-vm: x86_64 through the portable runtime: VMTEST_RUNTIME=portable"
    assert repo.nix_commands() == []
    assert repo.installed_deps() and repo.made_venv() and len(repo.calls("vmtest")) == 1
    # nix where this Nix cannot build aarch64-linux: Nix is not asked about it, the build fails as Nix says
    forced = repo.test_vm("aarch64", VMTEST_RUNTIME="nix")
    assert forced.returncode != 0
    assert _runtime_line(forced, "aarch64") == "test-vm: aarch64 through Nix: VMTEST_RUNTIME=nix"
    assert "a 'aarch64-linux' with features {kvm, nixos-test} is required" in forced.stderr
    assert len(repo.calls("vmtest")) == 1  # no fallback to the portable runtime


@pytest.mark.parametrize(("args", "env", "message"), [
    (("riscv64",), {}, "unknown architecture 'riscv64' (expected x86_64 or aarch64)"),
    ((), {}, "no architecture given"),
    (("x86_64", "out/vm/x86_64", "extra"), {}, "3 arguments, expected at most 2"),
    (("x86_64",), {"VMTEST_RUNTIME": "docker"}, "VMTEST_RUNTIME='docker' (expected nix or portable, or unset)"),
], ids=["unknown-arch", "no-arch", "extra-argument", "bad-VMTEST_RUNTIME"])
def test_bad_arguments_exit_2_with_one_line_before_any_work(
        repo: Repo, args: tuple[str, ...], env: dict[str, str], message: str) -> None:
    result = repo.test_vm(*args, **env)
    assert (result.returncode, result.stdout) == (2, ""), result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"test-vm: {message}; usage: scripts/test-vm x86_64|aarch64 [OUT] "
        "(VMTEST_RUNTIME=nix|portable forces a runtime)"]
    assert repo.calls("nix") == [] and not repo.installed_deps() and repo.calls("vmtest") == []
    assert not (repo.root / "out").exists()


def test_make_test_vm_all_sets_up_the_portable_runtime_only_for_the_architecture_that_needs_it(
        repo: Repo) -> None:
    result = repo.make("test-vm-all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _runtime_line(result, "x86_64").startswith("test-vm: x86_64 through Nix: ")
    assert _runtime_line(result, "aarch64").startswith("test-vm: aarch64 through the portable runtime: ")
    assert {name for call in repo.builds() for name in call if name.startswith(".#")} == {
        f".#{kind}.x86_64-linux.{suite}{suffix}" for suite in ("vm-boot", "vm-service", "vm-integration")
        for kind, suffix in (("packages", "-artifacts"), ("checks", ""))}
    assert repo.installed_deps() and repo.made_venv()
    assert [call["VMTEST_EXPECT_ARCH"] for call in repo.calls("vmtest")] == ["aarch64"]
    assert "jobserver" not in result.stderr
