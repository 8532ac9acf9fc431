"""The @playwright/test implementation of the browser runner contract (docs/browser-runner.md).

e2e-test/client-ts's config, fixtures and reporter (result-stream.ts) and its runner
(e2e-test/machines/client/e2e-run-browser-tests-ts) run here on the host, with the suite's own
locked node_modules (``npm ci`` in a copy) and a planted spec file instead of the smoke tests
(there is no Alicia server here): plain tests that pass, fail, skip and error in a fixture, and
page tests on this machine's Chromium (set as E2E_CHROMIUM, as the Debian client sets its
headless shell). What the host makes of the run is checked with the host's own code, as for the
Python suite: results.jsonl through ``vmtest.guest_results.parse_result``, junit-browser.xml
through ``Report.add_junit_file`` and report.html's failed cases with their screenshot and trace.

Node.js (>= 20, Playwright's minimum), npm and Chromium come from scripts/install-system-deps.sh.
Without Node.js or npm the run's tests skip, saying why; under CI (``CI`` set) they fail instead.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vmtest.guest_results import parse_result
from vmtest.portable.image.recipe import load_recipe
from vmtest.reporting.report import Report

from .repo_checks import REPO
from .test_result_stream import run_plugin
from .test_vm_module_options import evaluate

SUITE = REPO / "e2e-test/client-ts"
RUNNER = REPO / "e2e-test/machines/client/e2e-run-browser-tests-ts"
PYTHON_RUNNER = REPO / "e2e-test/machines/client/e2e-run-browser-tests"
MACHINES = REPO / "e2e-test/machines"
NIX_PACKAGE = REPO / "e2e-test/nix/client-tests-ts.nix"
NODE_MAJOR = 20  # playwright-core's lib/bootstrap.js refuses older Node.js
CHROMIUM = (os.environ.get("VMTEST_CHROMIUM") or shutil.which("chromium-headless-shell")
            or shutil.which("chromium") or "/usr/bin/chromium")

PLANTED = """
import { test as plain, expect as plainExpect } from '@playwright/test';
import { expect, test } from '../fixtures';

plain('test_passes', async () => {});

plain('test_fails', async () => {
  plainExpect(1, 'the page never got ready').toBe(2);
});

plain('test_skips', async () => {
  plain.skip(true, 'no microphone here');
});

const broken = plain.extend<{ broken: void }>({
  broken: async ({}, use) => { void use; throw new Error('no browser\\nsecond line'); },
});
broken('test_setup_errors', async ({ broken }) => { void broken; });

test('test_page_fails', async ({ page }) => {
  await page.setContent('<h1 data-testid="heading">hello</h1>');
  await expect(page.getByTestId('heading')).toHaveText('goodbye', { timeout: 1000 });
});

test('test_page_passes', async ({ page }) => {
  await page.setContent('<h1 data-testid="heading">hello</h1>');
  await expect(page.getByTestId('heading')).toHaveText('hello');
});

plain.describe('group', () => {
  plain('test_nested', async () => {});
});
"""
# Each test's outcome (Playwright runs the plain tests and the page tests, whose fixtures differ, in
# workers of their own: the lines come in that order, not the file's).
EXPECTED = {
    "test_passes": "passed", "test_fails": "failed", "test_skips": "skipped", "test_setup_errors": "error",
    "test_page_fails": "failed", "test_page_passes": "passed", "group::test_nested": "passed",
}
ONLY_PASSING = "import { test } from '@playwright/test';\n\ntest('test_passes', async () => {});\n"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run these: scripts/install-system-deps.sh installs nodejs and npm)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node() -> str:
    """node's path, once Node.js >= 20 and npm are here."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable(f"no {'node' if node is None else 'npm'} on PATH: the @playwright/test runner needs Node.js")
    assert node is not None
    version = subprocess.run([node, "-p", "process.versions.node"], capture_output=True, text=True,
                             check=True).stdout.strip()
    if int(version.split(".")[0]) < NODE_MAJOR:
        _unavailable(f"Node.js {version} is too old for Playwright (>= {NODE_MAJOR}; Debian trixie's is 20)")
    return node


def suite_copy(destination: Path, spec: str, node_modules: Path | None = None) -> Path:
    """The suite's files (not its tests, not a checkout's node_modules) with ``spec`` as its tests;
    node_modules linked from another copy when given."""
    destination.mkdir(parents=True)
    for member in SUITE.iterdir():
        if member.name not in ("node_modules", "tests"):
            (shutil.copytree if member.is_dir() else shutil.copy2)(member, destination / member.name)
    (destination / "tests").mkdir()
    (destination / "tests/planted.spec.ts").write_text(spec)
    if node_modules is not None:
        (destination / "node_modules").symlink_to(node_modules)
    return destination


@pytest.fixture(scope="module")
def suite(node: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the suite with the planted tests and its locked node_modules (``npm ci``)."""
    copy = suite_copy(tmp_path_factory.mktemp("client-ts") / "suite", PLANTED)
    installed = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=copy, capture_output=True, text=True,
                               timeout=600, check=False, env={**os.environ, "npm_config_update_notifier": "false"})
    assert installed.returncode == 0, f"npm ci of {SUITE}/package-lock.json failed:\n{installed.stderr[-3000:]}"
    return copy


def runner_env(suite: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("E2E_", "PLAYWRIGHT_"))}
    return {**env, "E2E_TESTS_DIR": str(suite), "E2E_CHROMIUM": CHROMIUM, "E2E_TIMEOUT_MS": "10000",
            "CI": "1"}  # CI: no interactive Playwright behaviour (an HTML report server, colours)


@dataclass(frozen=True)
class Run:
    done: subprocess.CompletedProcess[str]
    out: Path


@pytest.fixture(scope="module")
def run(suite: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The runner on the planted suite, as the e2e-browser-tests unit runs it: OUTDIR its argument."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: scripts/install-system-deps.sh installs Debian's chromium")
    out = tmp_path_factory.mktemp("run") / "e2e"
    done = subprocess.run([str(RUNNER), str(out)], env=runner_env(suite), capture_output=True, text=True,
                          timeout=600, check=False)
    return Run(done, out)


# The runner and its files.

def test_the_runner_writes_what_the_contract_names(run: Run) -> None:
    done, out = run.done, run.out
    assert done.returncode == 1, done.stdout[-3000:]
    assert (out / "exit-status").read_text() == "1\n"
    written = ["junit-browser.xml", "results.jsonl", "playwright.log", "screenshots/browser/test_page_fails.png",
               "screenshots/browser/final-state.png"]
    for name in written:
        assert (out / name).is_file(), name
    assert all((out / "exit-status").stat().st_mtime_ns >= (out / name).stat().st_mtime_ns for name in written), \
        "exit-status is written last"
    log = (out / "playwright.log").read_text()
    assert log == done.stdout, "the log is the runner's whole output"
    # The failed tests once more, traced, into test-results/traced (not into the JUnit or the results).
    assert "re-running the failed tests with a trace" in log
    traces = sorted(path.parent.name for path in (out / "test-results/traced").rglob("trace.zip"))
    assert traces == ["planted-test-fails", "planted-test-page-fails", "planted-test-setup-errors"]
    assert {path.name for path in (out / "screenshots/browser").iterdir()} == {"test_page_fails.png",
                                                                                "final-state.png"}


def test_a_run_without_failures_exits_0_and_runs_nothing_again(suite: Path, tmp_path: Path) -> None:
    passing = suite_copy(tmp_path / "suite", ONLY_PASSING, suite / "node_modules")
    done = subprocess.run([str(RUNNER), str(tmp_path / "e2e")], env=runner_env(passing), capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "e2e/exit-status").read_text() == "0\n"
    assert "re-running" not in done.stdout and not (tmp_path / "e2e/test-results/traced").exists()
    assert [json.loads(line)["outcome"] for line in (tmp_path / "e2e/results.jsonl").read_text().splitlines()] == [
        "passed"]


def test_a_missing_suite_or_node_modules_still_writes_an_exit_status(node: str, tmp_path: Path) -> None:
    for name, suite in (("no-suite", tmp_path / "absent"),
                        ("no-node-modules", suite_copy(tmp_path / "bare", ONLY_PASSING))):
        out = tmp_path / name
        done = subprocess.run([str(RUNNER), str(out)], env=runner_env(suite), capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 2 and (out / "exit-status").read_text() == "2\n", (name, done)
    assert "npm ci" in (tmp_path / "no-node-modules/playwright.log").read_text()


# results.jsonl: what the host follows live.

def test_each_test_is_one_line_the_follower_reads(run: Run) -> None:
    lines = (run.out / "results.jsonl").read_text().splitlines()
    parsed = [parse_result("client", line) for line in lines]
    assert all(parsed), lines
    results = [result for result in parsed if result]
    # One line per test: the traced re-run (no E2E_RESULTS) added none.
    assert len(results) == len(EXPECTED)
    assert {result.name.split("::", 1)[1]: result.outcome for result in results} == EXPECTED
    assert {result.name.split("::", 1)[0] for result in results} == {"planted.spec.ts"}
    by_name = {result.name.split("::", 1)[1]: result for result in results}
    assert by_name["test_fails"].message == "Error: the page never got ready"
    assert by_name["test_skips"].message == "Skipped: no microphone here"
    assert by_name["test_setup_errors"].message == "Error: no browser", "the first line only"
    assert by_name["test_page_fails"].message == "Error: expect(locator).toHaveText(expected) failed"
    assert by_name["test_passes"].message == "" and all(result.seconds >= 0 for result in results)
    assert by_name["test_page_fails"].seconds >= 1.0, "the expect waited its second"


def test_the_lines_are_the_python_suites_byte_for_byte(run: Run, tmp_path: Path) -> None:
    # result_stream.py writes json.dumps(summary): these keys in this order, its separators, ASCII only.
    for line in (run.out / "results.jsonl").read_text().splitlines():
        data = json.loads(line)
        assert list(data) == ["name", "outcome", "seconds", "message"] and isinstance(data["seconds"], float)
        assert line == json.dumps(data), line
    # The Python plugin on the same planted cases: the same outcomes, the same messages but for the
    # exception's class (Python's AssertionError and RuntimeError, JavaScript's Error).
    plugin = tmp_path / "python"
    plugin.mkdir()
    run_plugin(plugin, results=plugin / "results.jsonl")
    python = {result.name.split("::")[1]: result for line in (plugin / "results.jsonl").read_text().splitlines()
              if (result := parse_result("client", line))}
    typescript = {result.name.split("::", 1)[1]: result for line in (run.out / "results.jsonl").read_text().splitlines()
                  if (result := parse_result("client", line))}
    shared = ["test_passes", "test_fails", "test_skips", "test_setup_errors"]
    assert [python[name].outcome for name in shared] == [typescript[name].outcome for name in shared]

    def text(message: str) -> str:
        return message.split(": ", 1)[-1]
    assert [text(python[name].message) for name in shared] == [text(typescript[name].message) for name in shared]


def test_the_reporter_writes_nothing_without_e2e_results(suite: Path, tmp_path: Path) -> None:
    # Negative control: the runner sets E2E_RESULTS for the first run only.
    env = {**runner_env(suite), "E2E_ARTIFACTS": str(tmp_path)}
    done = subprocess.run([str(suite / "node_modules/.bin/playwright"), "test", "--grep", "test_passes"], cwd=suite,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "junit-browser.xml").is_file() and not list(tmp_path.rglob("*.jsonl"))


# junit-browser.xml: folded into junit.xml, summary.json and report.html.

def _failures(page: str) -> dict[str, str]:
    """report.html's failed cases: case name → its article."""
    found = {}
    for article in re.findall(r'<article class="failure">(.*?)</article>', page, re.S):
        name = re.search(r'class="case-name">(.*?)</h3>', article)
        assert name is not None, article
        found[re.sub(r"<[^>]+>", "", name.group(1))] = article
    return found


def test_the_junit_folds_into_the_report_like_the_python_ones(run: Run, tmp_path: Path) -> None:
    # The artifacts where the testScript copies them, then what it does with the JUnit.
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    shutil.copy(run.out / "junit-browser.xml", artifacts)
    shutil.copytree(run.out / "screenshots/browser", artifacts / "screenshots/browser")
    shutil.copytree(run.out / "test-results", artifacts / "test-results")
    report = Report(artifacts, name="alicia-e2e")
    cases = report.add_junit_file(artifacts / "junit-browser.xml", "browser")
    # JUnit names are the tests' titles (a describe title first, joined by U+203A), as pytest's are its functions'.
    assert [(case.name, case.passed) for case in cases] == [
        ("test_passes", True), ("test_fails", False), ("test_skips", True), ("test_setup_errors", False),
        ("test_page_fails", False), ("test_page_passes", True), ("group \u203a test_nested", True)]
    failed = {case.name: case.message for case in cases if not case.passed}
    assert failed == {"test_fails": "the page never got ready", "test_setup_errors": "no browser",
                      "test_page_fails": "expect(locator).toHaveText(expected) failed"}
    assert all(case.suite == "browser" and case.kind == "test" and case.start is not None for case in cases)
    # The failed page test's screenshot is its JUnit attachment, named relative to OUTDIR.
    junit = (artifacts / "junit-browser.xml").read_text()
    assert "[[ATTACHMENT|screenshots/browser/test_page_fails.png]]" in junit
    report.write()
    summary = json.loads((artifacts / "summary.json").read_text())
    assert sum(case["suite"] == "browser" for case in summary["cases"]) == len(EXPECTED)
    assert re.search(r'<testsuite [^>]*name="browser"', (artifacts / "junit.xml").read_text())
    failures = _failures((artifacts / "report.html").read_text())
    assert set(failures) == {"browser / test_fails", "browser / test_setup_errors", "browser / test_page_fails"}
    page_failure = failures["browser / test_page_fails"]
    assert 'src="data:image/png;base64,' in page_failure, "the screenshot is embedded with the failure"
    assert ">screenshots/browser/test_page_fails.png<" in page_failure
    assert "test-results/traced/planted-test-page-fails/trace.zip" in page_failure
    # Negative control: a failure without a page has no screenshot.
    assert "<img" not in failures["browser / test_fails"]


# The suite, its lock and the machines that run it.

def _python_tests() -> list[str]:
    tree = ast.parse((REPO / "e2e-test/client/test_smoke.py").read_text())
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


def test_the_typescript_suite_has_the_python_suites_tests() -> None:
    titles = re.findall(r"(?m)^test\('([^']+)'", (SUITE / "tests/smoke.spec.ts").read_text())
    assert titles == _python_tests() and len(titles) == 12


def lock_problems(package: dict[str, Any], lock: dict[str, Any], pip: list[str]) -> list[str]:
    """What keeps the lock from being the one the clients need: @playwright/test pinned exactly, at the
    Playwright of the Python client's wheel (which drives the same headless shell), and every package
    with its ``resolved`` URL and ``integrity`` (importNpmLock fetches by them; npm's
    omit-lockfile-registry-resolved would leave the URLs out)."""
    problems = []
    wanted = package.get("dependencies", {}).get("@playwright/test", "")
    python = next((spec.split("==", 1)[1] for spec in pip if spec.startswith("playwright==")), None)
    if wanted != python:
        problems.append(f"package.json pins @playwright/test {wanted!r}, the Python client playwright {python!r}")
    for name in ("@playwright/test", "playwright", "playwright-core"):
        locked = lock["packages"].get(f"node_modules/{name}", {}).get("version")
        if locked != python:
            problems.append(f"package-lock.json has {name} {locked!r}, not {python!r}")
    for path, entry in lock["packages"].items():
        if path and not (entry.get("resolved", "").startswith("https://") and entry.get("integrity")):
            problems.append(f"package-lock.json: {path} has no resolved URL and integrity")
    return problems


def _lock_inputs() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    package = json.loads((SUITE / "package.json").read_text())
    lock = json.loads((SUITE / "package-lock.json").read_text())
    return package, lock, list(load_recipe(MACHINES / "client.toml").pip)


def test_the_lock_pins_the_playwright_of_the_python_client() -> None:
    assert lock_problems(*_lock_inputs()) == []


def test_a_lock_without_resolved_urls_or_another_playwright_is_found() -> None:
    package, lock, pip = _lock_inputs()
    del lock["packages"]["node_modules/playwright-core"]["resolved"]
    package["dependencies"]["@playwright/test"] = "^1.65.2"
    problems = lock_problems(package, lock, pip)
    assert problems == ["package.json pins @playwright/test '^1.65.2', the Python client playwright '1.65.2'",
                        "package-lock.json: node_modules/playwright-core has no resolved URL and integrity"]


def test_the_ts_client_recipe_installs_the_suite_and_its_runner() -> None:
    python, typescript = load_recipe(MACHINES / "client.toml"), load_recipe(MACHINES / "client-ts.toml")
    files = {spec.path: spec for spec in typescript.files}
    assert files["/usr/local/bin/e2e-run-browser-tests"].source == str(RUNNER)
    assert files["/usr/local/bin/e2e-run-browser-tests"].mode == "0755"
    assert files["/opt/e2e-tests-ts"].source == str(SUITE)
    # The runner looks for the suite where the recipe puts it, and the unit is the Python client's.
    assert "tests=${E2E_TESTS_DIR:-/opt/e2e-tests-ts}" in RUNNER.read_text()
    unit = "/etc/systemd/system/e2e-browser-tests.service"
    assert files[unit] == {spec.path: spec for spec in python.files}[unit]
    assert {"nodejs", "npm", "chromium-headless-shell", "ca-certificates"} <= set(typescript.packages)
    assert not typescript.pip and not {"python3-pytest", "python3-pip"} & set(typescript.packages)
    assert any(re.search(r"cd /opt/e2e-tests-ts && npm ci\b", command) for command in typescript.setup)
    # The Python client is the one it was: its own suite, runner and wheels.
    python_files = {spec.path: spec.source for spec in python.files}
    assert python_files["/usr/local/bin/e2e-run-browser-tests"] == str(PYTHON_RUNNER)
    assert python_files["/etc/e2e-tests"] == str(REPO / "e2e-test/client")
    assert python.name == "client" and typescript.name == "client-ts" and python.vm == typescript.vm


def test_machines_ts_differs_from_machines_in_the_clients_recipe_only() -> None:
    machines = tomllib.loads((REPO / "e2e-test/machines.toml").read_text())["machines"]
    machines_ts = tomllib.loads((REPO / "e2e-test/machines-ts.toml").read_text())["machines"]
    assert machines_ts["client"].pop("recipe") == "machines/client-ts.toml"
    assert machines["client"].pop("recipe") == "machines/client.toml"
    assert machines_ts == machines


def test_the_testscript_copies_whichever_log_the_runner_wrote() -> None:
    logs = [re.findall(r'tee "\$out/([\w.-]+)"', path.read_text()) for path in (PYTHON_RUNNER, RUNNER)]
    assert logs == [["pytest.log"], ["playwright.log"]]
    script = (REPO / "e2e-test/test_script.py").read_text()
    assert 'name.endswith(".log")' in script and '"/tmp/e2e/pytest.log"' not in script


# The Nix package (e2e-test/nix/client-tests-ts.nix), evaluated with the few packages it uses stubbed.

def nix_package() -> dict[str, Any]:
    value: dict[str, Any] = evaluate(f"""
      let
        lib.makeBinPath = packages: "/stub/bin:" + builtins.concatStringsSep "," packages;
        pkgs = {{
          inherit lib;
          buildNpmPackage = attributes: attributes;
          importNpmLock = {{
            __functor = self: {{ npmRoot }}: {{ npmRoot = toString npmRoot; }};
            npmConfigHook = "/stub/import-npm-lock-config-hook";
          }};
          makeWrapper = "/stub/make-wrapper";
          bash = "/stub/bash";
          nodejs = "/stub/nodejs";
          coreutils = "/stub/coreutils";
          playwright-driver.browsers = "/stub/playwright-browsers";
          makeFontsConf = {{ fontDirectories }}: "/stub/fonts.conf:" + builtins.concatStringsSep "," fontDirectories;
          dejavu_fonts = "/stub/dejavu-fonts";
        }};
        package = import {NIX_PACKAGE} {{ inherit pkgs; }};
      in {{
        inherit (package) pname version npmDeps npmConfigHook dontNpmBuild installPhase passthru;
      }}""")
    return value


def test_the_nix_package_wraps_the_same_runner_around_the_locked_suite() -> None:
    package = nix_package()
    lock = json.loads((SUITE / "package-lock.json").read_text())
    assert package["pname"] == "alicia-e2e-client-tests-ts" and package["version"] == lock["version"]
    # node_modules from the lock itself (importNpmLock: each package by its resolved URL and integrity).
    assert package["npmDeps"] == {"npmRoot": str(SUITE)}
    assert package["npmConfigHook"] == "/stub/import-npm-lock-config-hook" and package["dontNpmBuild"]
    assert package["passthru"]["playwrightVersion"] == lock["packages"]["node_modules/@playwright/test"]["version"]
    words = shlex.split(package["installPhase"].replace("\\\n", " "))
    install = words.index("install")
    assert words[install + 1:install + 4] == ["-Dm755", words[install + 2], "$out/libexec/e2e-run-browser-tests"]
    assert words[install + 2].endswith("-e2e-run-browser-tests-ts"), "the Debian client's runner"
    start = words.index("makeWrapper")
    wrapper = words[start:words.index("runHook", start)]
    settings = {wrapper[i + 1]: wrapper[i + 2] for i, word in enumerate(wrapper) if word == "--set"}
    assert wrapper[1:3] == ["$out/libexec/e2e-run-browser-tests", "$out/bin/e2e-run-browser-tests"]
    assert settings == {
        "E2E_TESTS_DIR": "$suite",
        "PLAYWRIGHT_BROWSERS_PATH": "/stub/playwright-browsers",
        "FONTCONFIG_FILE": "/stub/fonts.conf:/stub/dejavu-fonts",
        "E2E_CHROMIUM": "$chrome",  # the full Chromium found in playwright-driver.browsers at build time
    }
    assert wrapper[wrapper.index("--prefix") + 1:wrapper.index("--prefix") + 4] == [
        "PATH", ":", "/stub/bin:/stub/nodejs,/stub/coreutils"]
    assert "for candidate in /stub/playwright-browsers/chromium-*/chrome-linux64/chrome" in package["installPhase"]
