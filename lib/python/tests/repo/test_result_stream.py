"""The browser tests' result stream: the client's pytest plugin writes what vmtest's follower reads.

The plugin (e2e-test/client/result_stream.py) runs here on a planted test file, and its lines
are read back with ``vmtest.guest_results.parse_result``; the client's conftest and runner are
checked to load it for the first run only (they need Playwright, which the host lacks).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from vmtest.guest_results import parse_result

from .repo_checks import REPO

CLIENT = REPO / "e2e-test/client"
PLANTED = '''
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("no browser\\nsecond line")

def test_passes():
    pass

def test_fails():
    assert 1 == 2, "the page never got ready"

def test_skips():
    pytest.skip("no microphone here")

def test_setup_errors(broken):
    pass
'''


def run_plugin(tmp_path: Path, *, results: Path | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_planted.py").write_text(PLANTED)
    env = {**os.environ, "PYTHONPATH": str(CLIENT), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("E2E_RESULTS", None)
    if results is not None:
        env["E2E_RESULTS"] = str(results)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "result_stream", "-p", "no:cacheprovider",
                           str(tmp_path / "test_planted.py")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_each_test_is_one_line_the_follower_reads(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    run = run_plugin(tmp_path, results=results)
    assert run.returncode == 1, run.stdout  # a failure and an error
    lines = results.read_text().splitlines()
    parsed = [parse_result("client", line) for line in lines]
    assert [(r.name.split("::")[1], r.outcome) for r in parsed if r] == [
        ("test_passes", "passed"), ("test_fails", "failed"), ("test_skips", "skipped"),
        ("test_setup_errors", "error")]
    by_name = {r.name.split("::")[1]: r for r in parsed if r}
    assert by_name["test_fails"].message == "AssertionError: the page never got ready"
    assert by_name["test_skips"].message == "Skipped: no microphone here"
    assert by_name["test_setup_errors"].message == "RuntimeError: no browser", "the first line only"
    assert by_name["test_passes"].message == "" and by_name["test_passes"].seconds >= 0


def test_without_e2e_results_nothing_is_written(tmp_path: Path) -> None:
    # Negative control: the traced re-run of the failed tests (no E2E_RESULTS) adds no lines.
    run = run_plugin(tmp_path, results=None)
    assert run.returncode == 1, run.stdout
    assert list(tmp_path.glob("*.jsonl")) == []


def test_the_client_loads_the_plugin_for_the_first_run_only() -> None:
    conftest = ast.parse((CLIENT / "conftest.py").read_text())
    plugins = [ast.literal_eval(node.value) for node in conftest.body if isinstance(node, ast.Assign)
               and any(isinstance(target, ast.Name) and target.id == "pytest_plugins" for target in node.targets)]
    assert plugins == [["result_stream"]]
    runner = (REPO / "e2e-test/machines/client/e2e-run-browser-tests").read_text()
    runs = [line for line in runner.splitlines() if "python3 -m pytest" in line]
    assert len(runs) == 2 and "E2E_RESULTS=" in runs[0] and "E2E_RESULTS" not in runs[1]
    # The Nix client's package copies the plugin beside the tests.
    assert "cp *.py pytest.ini $out/share/e2e-tests/" in (REPO / "e2e-test/nix/packages.nix").read_text()
