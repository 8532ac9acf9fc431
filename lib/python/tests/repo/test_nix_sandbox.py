"""This repository's derivations, built by a real Nix in its real sandbox (nix_sandbox.py): vmtest's
build and check phase, and the artifacts/verdict pair of lib/nix/test-with-artifacts.nix.

Every VM check pulls vmtest in through extraPythonPackages, check phase included, so a unit test
that passes only in this repository fails every Nix check. The build here is package.nix as the
flake calls it, from the files git tracks, with exactly the inputs it declares. The negative
controls plant each kind of such test in a copy of the package: it passes under plain pytest in
the copy (what `make test` would see) and must fail the sandbox build.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from . import nix_sandbox
from .repo_checks import REPO, tracked_copy

PACKAGE = REPO / "lib/python"


@pytest.fixture(scope="module")
def inputs() -> nix_sandbox.StoreInputs:
    return nix_sandbox.store_inputs()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files git tracks, as a flake's source holds them."""
    return tracked_copy(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def vmtest_build(inputs: nix_sandbox.StoreInputs, repo: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> nix_sandbox.Build:
    """vmtest built once, fresh (the artifacts/verdict builds below reuse it, as Nix would)."""
    workdir = tmp_path_factory.mktemp("vmtest-build")
    return nix_sandbox.nix_build(nix_sandbox.SANDBOX_NIX / "default.nix", inputs, workdir, {"repo": str(repo)},
                                 attribute="vmtest")


@pytest.fixture
def built() -> Iterator[list[Path]]:
    """Outputs to remove from the store after the test (nothing roots them)."""
    outputs: list[Path] = []
    yield outputs
    for out in outputs:
        nix_sandbox.delete_from_store(out)


def _build(inputs: nix_sandbox.StoreInputs, repo: Path, workdir: Path, built: list[Path]) -> nix_sandbox.Build:
    workdir.mkdir(parents=True, exist_ok=True)
    build = nix_sandbox.nix_build(nix_sandbox.SANDBOX_NIX / "default.nix", inputs, workdir, {"repo": str(repo)},
                                  attribute="vmtest")
    if build.out is not None:
        built.append(build.out)
    return build


def test_the_sandbox_is_really_on(inputs: nix_sandbox.StoreInputs, tmp_path: Path) -> None:
    """A builder that needs /bin/bash fails; one that looks around finds only what NixOS's sandbox has."""
    probe = tmp_path / "probe.nix"
    probe.write_text(
        "{ inputsFile }: {\n"
        '  bash = derivation { name = "needs-bin-bash"; system = builtins.currentSystem; builder = "/bin/bash";'
        ' args = [ "-c" "echo > $out" ]; };\n'
        '  look = derivation { name = "looks-around"; system = builtins.currentSystem; builder = "/bin/sh";'
        ' args = [ "-c" "test ! -e /usr && test ! -e /bin/bash && test \\"$HOME\\" = /homeless-shelter'
        ' && test ! -e $HOME && echo ok > $out" ]; };\n'
        "}\n")
    needs_bash = nix_sandbox.nix_build(probe, inputs, tmp_path, attribute="bash")
    assert not needs_bash.succeeded and "/bin/bash" in needs_bash.log, needs_bash.log
    looks = nix_sandbox.nix_build(probe, inputs, tmp_path, attribute="look")
    assert looks.succeeded, looks.log
    nix_sandbox.delete_from_store(looks.out)  # type: ignore[arg-type]


def test_vmtest_builds_and_its_check_phase_passes_in_the_sandbox(vmtest_build: nix_sandbox.Build) -> None:
    build = vmtest_build
    assert build.succeeded, build.log[-8000:]
    assert "pythonImportsCheckPhase: vmtest vmtest.health" in build.log
    summary = [line for line in build.log.splitlines() if " passed" in line and "===" in line]
    assert summary and " failed" not in summary[-1] and " error" not in summary[-1], summary
    site = next(build.out.glob("lib/python3*/site-packages"))  # type: ignore[union-attr]
    assert (site / "vmtest" / "py.typed").is_file(), "the wheel carries the package's data"
    assert (site / "vmtest/portable/image/guest/backdoor.sh").is_file()


def _planted_copy(tmp_path: Path, test_body: str) -> Path:
    """A repository-like copy: flake.nix beside lib/python, whose only unit test is ``test_body``."""
    repo = tmp_path / "repo"
    copy = repo / "lib/python"
    copy.mkdir(parents=True)
    (repo / "flake.nix").write_text("{ outputs = _: { }; }\n")
    for name in ("package.nix", "pyproject.toml"):
        shutil.copy(PACKAGE / name, copy / name)
    shutil.copytree(PACKAGE / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(PACKAGE / "tests/recipes", copy / "tests/recipes")
    for name in ("__init__.py", "conftest.py"):
        shutil.copy(PACKAGE / "tests" / name, copy / "tests" / name)
    (copy / "tests/unit").mkdir()
    (copy / "tests/unit/__init__.py").write_text("")
    (copy / "tests/unit/test_planted.py").write_text(test_body)
    return repo


def _passes_in_place(repo: Path) -> bool:
    """Plain pytest in the copy, with this repository's dev venv: what `make test` would see."""
    copy = repo / "lib/python"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"],
                          cwd=copy, capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(copy / "src"), "HOME": str(repo)})
    return done.returncode == 0


_STUB = ("import subprocess\nfrom pathlib import Path\n\ndef test_planted(tmp_path):\n"
         "    stub = tmp_path / 'stub'\n    stub.write_text({text!r})\n    stub.chmod(0o755)\n"
         "    assert subprocess.run([str(stub)], capture_output=True, text=True).stdout == 'ok\\n'\n")
PLANTED = {
    "a #!/bin/bash stub": (_STUB.format(text="#!/bin/bash\necho ok\n"), "test_planted"),
    "a #!/usr/bin/env script": (_STUB.format(text="#!/usr/bin/env sh\necho ok\n"), "test_planted"),
    "an undeclared import": (
        "import yaml\n\ndef test_planted():\n    assert yaml.safe_load('a: 1') == {'a': 1}\n",
        "No module named 'yaml'"),
    "a file outside the fileset": (
        "from pathlib import Path\n\ndef test_planted():\n"
        "    assert (Path(__file__).resolve().parents[4] / 'flake.nix').read_text()\n",
        "No such file or directory"),
    "a network access": (
        "import socket\n\ndef test_planted():\n    socket.getaddrinfo('pypi.org', 443)\n",
        "gaierror"),
    "a write to $HOME": (
        "from pathlib import Path\n\ndef test_planted():\n    (Path.home() / '.cache-planted').write_text('x')\n",
        "homeless-shelter"),
}


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_the_sandbox_build_fails_where_the_repository_passes(kind: str, inputs: nix_sandbox.StoreInputs,
                                                             tmp_path: Path, built: list[Path]) -> None:
    body, expected = PLANTED[kind]
    repo = _planted_copy(tmp_path, body)
    assert _passes_in_place(repo), "the planted test must pass in the repository, as such tests did"
    build = _build(inputs, repo, tmp_path / "work", built)
    assert not build.succeeded, f"{kind} built in the sandbox"
    assert "pytestCheckPhase" in build.log and ("1 failed" in build.log or "1 error" in build.log), build.log[-4000:]
    assert expected in build.log, build.log[-4000:]


# The artifacts and the verdict (lib/nix/test-with-artifacts.nix) around a stand-in driver.

def _pair(inputs: nix_sandbox.StoreInputs, repo: Path, workdir: Path, driver_status: int,
          attribute: str) -> nix_sandbox.Build:
    workdir.mkdir(parents=True, exist_ok=True)
    return nix_sandbox.nix_build(nix_sandbox.SANDBOX_NIX / "artifacts.nix", inputs, workdir,
                                 {"repo": str(repo), "driverStatus": str(driver_status)}, attribute=attribute)


def _references(path: Path) -> list[str]:
    done = subprocess.run(["nix-store", "-q", "--references", str(path)], capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.mark.parametrize("driver_status", [0, 1])
def test_the_artifacts_survive_the_run_and_refer_to_no_store_path(driver_status: int, inputs: nix_sandbox.StoreInputs,
                                                                  repo: Path, tmp_path: Path,
                                                                  built: list[Path]) -> None:
    build = _pair(inputs, repo, tmp_path, driver_status, "artifacts")
    assert build.succeeded, build.log[-4000:]  # the run's derivation always succeeds ...
    built.append(build.out)  # type: ignore[arg-type]
    out = build.out
    assert out is not None
    assert (out / "junit.xml").is_file()  # ... and keeps what the driver wrote
    assert (out / "driver-exit-status").read_text().strip() == str(driver_status)
    assert _references(out) == [], "a store path in a log would make a cache push upload it"
    assert "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-nixos-test-driver-stand-in/init" in (
        out / "logs/dmesg.log").read_text()


def test_a_store_path_left_in_the_artifacts_fails_their_build(inputs: nix_sandbox.StoreInputs, repo: Path,
                                                             tmp_path: Path) -> None:
    """The negative control of the above: without the hashes replaced, Nix refuses the output."""
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    pair = copy / "lib/nix/test-with-artifacts.nix"
    text = pair.read_text()
    scrub = text[text.index("        grep -rlZE"):text.index("        done\n") + len("        done\n")]
    pair.write_text(text.replace(scrub, ""))
    build = _pair(inputs, copy, tmp_path / "work", 1, "artifacts")
    assert not build.succeeded
    assert "is not allowed to refer to" in build.log, build.log[-3000:]


def test_the_verdict_of_a_passing_run_links_to_its_artifacts(vmtest_build: nix_sandbox.Build,
                                                             inputs: nix_sandbox.StoreInputs, repo: Path,
                                                             tmp_path: Path, built: list[Path]) -> None:
    assert vmtest_build.succeeded
    verdict = _pair(inputs, repo, tmp_path, 0, "verdict")
    assert verdict.succeeded, verdict.log[-4000:]
    built.append(verdict.out)  # type: ignore[arg-type]
    assert verdict.out is not None and verdict.out.resolve().name.endswith("-alicia-e2e-artifacts")


def test_the_verdict_of_a_failed_run_names_the_case_and_how_to_run_it_again(
        vmtest_build: nix_sandbox.Build, inputs: nix_sandbox.StoreInputs, repo: Path, tmp_path: Path) -> None:
    assert vmtest_build.succeeded
    verdict = _pair(inputs, repo, tmp_path, 1, "verdict")
    assert not verdict.succeeded
    assert "FAILED alicia-e2e: server stack comes up in order" in verdict.log, verdict.log[-4000:]
    assert re.search(r"nix store delete /nix/store/[0-9a-z]{32}-alicia-e2e-artifacts", verdict.log), verdict.log[-4000:]


# The e2e suite's packages and the server's scripts, built as the flake's overlay and the NixOS
# modules define them, then run here. What cannot be made from this machine's files is an empty
# stand-in store path named so (PostgreSQL 17, Playwright's browsers, the DejaVu fonts).

def _e2e_build(inputs: nix_sandbox.StoreInputs, repo: Path, tmp_path: Path, attribute: str) -> Path:
    build = nix_sandbox.nix_build(nix_sandbox.SANDBOX_NIX / "default.nix", inputs, tmp_path, {"repo": str(repo)},
                                  attribute=attribute)
    assert build.succeeded and build.out is not None, build.log[-4000:]
    return build.out


def test_the_browser_runner_builds_and_keeps_its_contract(inputs: nix_sandbox.StoreInputs, repo: Path,
                                                          tmp_path: Path) -> None:
    package = _e2e_build(inputs, repo, tmp_path, "alicia-e2e-client-tests")
    runner = package / "libexec/e2e-run-browser-tests"
    assert runner.read_text().startswith("#!/nix/store/"), "patchShebangs gave the runner the store's bash"
    out = tmp_path / "out"
    done = subprocess.run([str(package / "bin/e2e-run-browser-tests"), str(out)], capture_output=True, text=True,
                          timeout=300, check=False)
    # No browser here (the stand-in is empty) and no server: every test errors, and the runner
    # still writes what the testScript reads.
    assert done.returncode != 0 and (out / "exit-status").read_text().strip() == str(done.returncode)
    for name in ("pytest.log", "junit-browser.xml", "results.jsonl"):
        assert (out / name).is_file(), name
    cases = re.findall(r"<testcase ", (out / "junit-browser.xml").read_text())
    assert len(cases) == 12
    # The full Chromium from PLAYWRIGHT_BROWSERS_PATH (channel chromium), not the headless shell.
    assert re.search(r"Executable doesn't exist at /nix/store/\w{32}-playwright-browsers-stand-in/chromium-\d+/",
                     (out / "pytest.log").read_text())


def test_the_reference_backend_and_mocks_build_and_start(inputs: nix_sandbox.StoreInputs, repo: Path,
                                                         tmp_path: Path) -> None:
    alicia = _e2e_build(inputs, repo, tmp_path, "alicia")
    usage = subprocess.run([str(alicia / "bin/alicia")], capture_output=True, text=True, timeout=60, check=False)
    assert usage.returncode == 2 and "usage: alicia server" in usage.stderr, usage
    assert sorted(p.name for p in (alicia / "share/alicia/migrations").iterdir())[0] == "001_init.down.sql"
    mocks = _e2e_build(inputs, repo, tmp_path, "alicia-mocks")
    assert {p.name for p in (mocks / "bin").iterdir()} == {"alicia-llm-mock", "alicia-livekit-standin"}


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status": "ok", "database": "ok"}')

    def log_message(self, *args: object) -> None:
        return None


def test_the_backend_health_check_builds_and_passes_on_a_healthy_backend(inputs: nix_sandbox.StoreInputs,
                                                                         repo: Path, tmp_path: Path) -> None:
    script = _e2e_build(inputs, repo, tmp_path, "alicia-healthcheck")
    try:
        server = HTTPServer(("127.0.0.1", 8888), _Healthy)  # the port the unit's check is written for
    except OSError as error:
        pytest.fail(f"127.0.0.1:8888 is taken on this host ({error}); the health check is built for that port")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = subprocess.run([str(script)], capture_output=True, text=True, timeout=60, check=False)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0 and "Backend is healthy" in done.stdout, done


def test_collect_logs_builds_and_writes_every_log(inputs: nix_sandbox.StoreInputs, repo: Path,
                                                  tmp_path: Path) -> None:
    package = _e2e_build(inputs, repo, tmp_path, "collect-logs")
    artifacts = tmp_path / "artifacts"
    done = subprocess.run([str(package / "bin/collect-logs")], capture_output=True, text=True, timeout=120,
                          check=False, env={"ARTIFACT_DIR": str(artifacts), "PATH": "/nonexistent"})
    assert done.returncode == 0, done
    assert sorted(p.name for p in (artifacts / "logs").iterdir()) == [
        "backend-stderr.log", "backend.jsonl", "nginx-access.log", "nginx-error.log", "postgresql.log",
        "system-errors.log"]


def test_writeshellapplication_fails_its_build_on_a_shellcheck_finding(inputs: nix_sandbox.StoreInputs,
                                                                      repo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    collector = copy / "e2e-test/nix/log-collector.nix"
    collector.write_text(collector.read_text().replace('mkdir -p "$LOGS_DIR"', "mkdir -p $LOGS_DIR"))
    build = nix_sandbox.nix_build(nix_sandbox.SANDBOX_NIX / "default.nix", inputs, tmp_path, {"repo": str(copy)},
                                  attribute="collect-logs")
    assert not build.succeeded and "SC2086" in build.log, build.log[-3000:]
