"""The flake under each nixpkgs revision of the support matrix (issue 26, point 3).

Users' flakes follow their own nixpkgs, so this flake's checks, its library (lib/nix), and every
template and example are evaluated under each revision docs/driver-compatibility.md and
tests/unit/data/upstream_api.json name: nixos-25.11 (the flake's pin), nixos-26.05 and
nixos-unstable. The stub nixpkgs stands for one revision at a time
(nix/stub-nixpkgs/testing-options.nix): its runNixOSTest takes the test options that revision
declares, of their types, and refuses any other, so each evaluation checks every test option
the library sets. Where the library needs an option only some revisions have (`forceAccel`), it
asks the test framework's `options`; both branches are tested. CI builds the checks under each
revision (.github/workflows/nix.yml), whose matrix must name the same revisions.

Negative controls: an option only 26.05 and later declare (`containers`, `qemu.forceAccel`) under
the 25.11 stub, an option unstable removed, a value of the wrong type, a library that sets
`qemu.forceAccel` without asking, and a workflow matrix missing a revision.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .flake_eval import EvaluationError, evaluate
from .repo_checks import REPO, tracked_copy
from .test_nix_library import CONSUMERS, NIX, _library_copy, consumer, library

REVISIONS = tuple(json.loads((REPO / "lib/python/tests/unit/data/upstream_api.json").read_text())["revisions"])
STUB = NIX / "stub-nixpkgs"
# What the flake's outputs are, forced as `nix flake check` forces them: every check's testScript,
# nodes, artifacts and interactive driver; the packages, apps and shells by name.
FORCED = (
    "let forced = check: if check ? driver then { script = check.driver.testScript; "
    "  nodes = builtins.attrNames check.nodes; artifacts = check.artifacts.name; "
    "  interactive = check.driverInteractive.name; name = check.config.name; } else check.name; "
    "names = builtins.mapAttrs (system: builtins.attrNames); in "
    "{ checks = builtins.mapAttrs (system: builtins.mapAttrs (name: forced)) outputs.checks; "
    "  packages = names outputs.packages; devShells = names outputs.devShells; "
    "  apps = builtins.mapAttrs (system: builtins.mapAttrs (name: app: app.program)) outputs.apps; "
    "  nixosConfigurations = builtins.attrNames outputs.nixosConfigurations; }")


def pinned_revision(root: Path = REPO) -> str:
    """The branch flake.nix pins nixpkgs to (``github:NixOS/nixpkgs/<branch>``)."""
    match = re.search(r'nixpkgs\.url = "github:NixOS/nixpkgs/([^"]+)"', (root / "flake.nix").read_text())
    assert match, "flake.nix pins no github:NixOS/nixpkgs branch"
    return match.group(1)


def _error(expression: str, revision: str) -> str:
    with pytest.raises(EvaluationError) as caught:
        library(expression, revision=revision)
    return str(caught.value)


# The stub and the matrix name the same revisions.

def test_the_stub_stands_for_each_revision_of_the_matrix_and_defaults_to_the_pin() -> None:
    stub: list[str] = library(f'(import {STUB}/testing-options.nix {{ revision = "{pinned_revision()}"; }}).revisions')
    assert tuple(stub) == REVISIONS
    assert sorted(path.stem for path in (STUB / "revisions").glob("*.nix")) == sorted(REVISIONS)
    assert pinned_revision() in REVISIONS
    # Without a revision the stubs stand for the pin, which the other tests of tests/repo evaluate.
    assert library(f'((import {STUB} {{ system = "x86_64-linux"; }}).testers.runNixOSTest '
                   '{ name = "t"; }).revision') == pinned_revision()
    assert f'revision ? "{pinned_revision()}"' in (NIX / "stub-inputs.nix").read_text()


def test_an_unknown_revision_is_refused_naming_the_known_ones() -> None:
    refused = "no revision nixos-24.05; the stub stands for nixos-25.11, nixos-26.05, nixos-unstable"
    with pytest.raises(EvaluationError, match=re.escape(refused)):
        library(f'(import {STUB} {{ system = "x86_64-linux"; revision = "nixos-24.05"; }})'
                '.testers.runNixOSTest { name = "t"; }')


# This flake, its library, templates and examples under each revision.

@pytest.fixture(scope="module")
def pinned_outputs() -> Any:
    return evaluate(REPO, FORCED, revision=pinned_revision())


@pytest.mark.parametrize("revision", REVISIONS)
def test_this_flakes_outputs_evaluate_under_each_revision_and_are_the_same(revision: str, pinned_outputs: Any) -> None:
    outputs = evaluate(REPO, FORCED, revision=revision)
    checks = outputs["checks"]
    assert {"vm-boot", "vm-service", "vm-integration", "e2e", "vmtest"} <= set(checks["x86_64-linux"])
    assert {"vm-boot", "vm-service", "vm-integration"} <= set(checks["aarch64-darwin"])
    assert checks["x86_64-linux"]["vm-integration"]["nodes"] == ["peer", "vm"]
    assert checks["x86_64-linux"]["e2e"]["nodes"] == ["client", "server"]
    # The library gives the same tests whichever revision runs them (no option is chosen by revision
    # unless asked for: forceAccel, below).
    assert outputs == pinned_outputs


@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.parametrize("flake", sorted(CONSUMERS))
def test_every_template_and_example_evaluates_under_each_revision(flake: str, revision: str) -> None:
    shapes = consumer(flake, (
        "builtins.mapAttrs (system: builtins.mapAttrs (name: check: { script = builtins.stringLength "
        "check.driver.testScript; nodes = builtins.attrNames check.nodes; artifacts = check.artifacts.name; "
        "interactive = check.driverInteractive.name; })) outputs.checks"), revision=revision)
    for system, checks in shapes.items():
        assert set(CONSUMERS[flake]) <= set(checks), (system, checks)
        for name, shape in checks.items():
            assert shape["script"] > 0 and shape["nodes"], (system, name, shape)
            assert shape["artifacts"].endswith("-artifacts"), shape


# An option only some revisions declare: the library asks the test framework's options.

VM = 'vmtest.lib.x86_64-linux.vmValidation { modules = [ ]; user = "ada"; forceAccel = true; }'
WEB = ('vmtest.lib.aarch64-darwin.webStackE2e { app = "a"; package = { type = "derivation"; name = "a"; }; '
       'browserSuite = { type = "derivation"; name = "b"; }; forceAccel = true; }')


@pytest.mark.parametrize("revision", [revision for revision in REVISIONS if revision != "nixos-25.11"])
def test_force_accel_sets_the_test_option_where_the_revision_declares_it(revision: str) -> None:
    settings = library(f"{{ vm = builtins.mapAttrs (name: check: check.config.qemu.forceAccel) ({VM}); "
                       f"web = ({WEB}).config.qemu.forceAccel; }}", revision=revision)
    assert settings == {"vm": {"vm-boot": True, "vm-integration": True, "vm-service": True}, "web": True}


@pytest.mark.parametrize(("call", "function"), [(f"({VM}).vm-boot", "vmValidation"), (WEB, "webStackE2e")])
def test_force_accel_is_a_clear_error_where_the_revision_lacks_the_option(call: str, function: str) -> None:
    message = _error(f"({call}).driver.testScript", "nixos-25.11")
    assert (f"vmtest.lib.{'x86_64-linux' if function == 'vmValidation' else 'aarch64-darwin'}.{function}: "
            "`forceAccel = true` needs the test option qemu.forceAccel, which the test framework of this "
            "nixpkgs does not declare (nixos-26.05 and later do)") in message, message


@pytest.mark.parametrize("revision", REVISIONS)
def test_without_force_accel_no_revision_gets_the_option(revision: str) -> None:
    defined = library('builtins.mapAttrs (name: check: check.config ? qemu) (vmtest.lib.x86_64-linux.vmValidation '
                      '{ modules = [ ]; user = "ada"; })', revision=revision)
    assert defined == {"vm-boot": False, "vm-integration": False, "vm-service": False}


# Negative controls: the stub refuses what a revision does not declare.

def _with_artifacts(definitions: str) -> str:
    return (f'(vmtest.lib.x86_64-linux.withArtifacts {{ name = "t"; testScript = "pass"; {definitions} }})'
            ".driver.testScript")


@pytest.mark.parametrize(("definitions", "lacking", "message"), [
    ("containers.box = { };", "nixos-25.11",
     "stub nixpkgs (nixos-25.11): the test option `containers' does not exist: the NixOS test framework of "
     "nixos-25.11 does not declare it (nixos-26.05, nixos-unstable do)"),
    ("qemu.forceAccel = true;", "nixos-25.11",
     "stub nixpkgs (nixos-25.11): the test option `qemu.forceAccel' does not exist"),
    ("containerDefaults = { };", "nixos-25.11",
     "stub nixpkgs (nixos-25.11): the test option `containerDefaults' does not exist"),
    ("sshBackdoor.vsockOffset = 3;", "nixos-unstable",
     "stub nixpkgs (nixos-unstable): The option `sshBackdoor.vsockOffset' has been removed from the testing framework"),
])
def test_an_option_a_revision_does_not_declare_fails_there_only(definitions: str, lacking: str, message: str) -> None:
    for revision in REVISIONS:
        if revision == lacking:
            assert message in _error(_with_artifacts(definitions), revision)
        else:
            assert library(_with_artifacts(definitions), revision=revision) == "pass", revision


@pytest.mark.parametrize("revision", REVISIONS)
def test_a_misspelt_option_or_a_wrong_type_fails_under_every_revision(revision: str) -> None:
    assert (f"stub nixpkgs ({revision}): the test option `node.specialArg' does not exist"
            in _error(_with_artifacts("node.specialArg = { };"), revision))
    assert (f"stub nixpkgs ({revision}): the test option `globalTimeout' is not of type signed integer"
            in _error(_with_artifacts('globalTimeout = "1800";'), revision))


def test_a_library_that_guesses_the_option_fails_under_the_revision_without_it(tmp_path: Path) -> None:
    """vm-validation.nix setting qemu.forceAccel itself, as if every nixpkgs had it: this flake's own
    checks no longer evaluate under nixos-25.11 (they still do where the option exists)."""
    copy = _library_copy(tmp_path / "vmtest")
    builder = copy / "lib/nix/vm-validation.nix"
    text = builder.read_text()
    chooses = "imports = lib.optional (args.forceAccel or false) (forceAccel function);"
    assert chooses in text
    builder.write_text(text.replace(chooses, "qemu.forceAccel = true;"))
    script = "outputs.checks.x86_64-linux.vm-boot.driver.testScript"
    with pytest.raises(EvaluationError, match=re.escape("the test option `qemu.forceAccel' does not exist")):
        evaluate(copy, script, revision="nixos-25.11")
    assert evaluate(copy, script, revision="nixos-26.05").endswith((REPO / "tests/vm/boot.py").read_text())


# CI builds the checks under the same revisions.

def matrix_problems(root: Path = REPO) -> list[str]:
    """What is wrong with .github/workflows/nix.yml's revision matrix, compared with the data and docs."""
    workflow = yaml.safe_load((root / ".github/workflows/nix.yml").read_text())
    job = workflow["jobs"]["flake-check"]
    entries = job.get("strategy", {}).get("matrix", {}).get("include", [])
    named = [entry.get("nixpkgs") for entry in entries]
    problems = []
    if sorted(named) != sorted(REVISIONS):
        problems.append(f"nix.yml: the matrix names {named}, upstream_api.json {list(REVISIONS)}")
    pin = pinned_revision(root)
    for entry in entries:
        override = " ".join(str(entry.get("override", "")).split())
        wanted = f"--override-input nixpkgs github:NixOS/nixpkgs/{entry.get('nixpkgs')}"
        if entry.get("nixpkgs") == pin and override:
            problems.append(f"nix.yml: the pin {pin} is built as locked, not with {override!r}")
        elif entry.get("nixpkgs") != pin and wanted not in override:
            problems.append(f"nix.yml: {entry.get('nixpkgs')} is not built with {wanted!r}")
    if job.get("env", {}).get("OVERRIDE") != "${{ matrix.override }}":
        problems.append("nix.yml: the job's OVERRIDE is not the matrix's override")
    for step in job["steps"]:
        for line in str(step.get("run", "")).splitlines():
            # Every command on this flake (`.#…`, `nix flake check`) takes the matrix's nixpkgs.
            on_flake = ".#" in line or re.search(r"\bnix flake check\b", line)
            if on_flake and re.search(r"\bnix (build|flake check|eval)\b", line) and "$OVERRIDE" not in line:
                problems.append(f"nix.yml: {line.strip()!r} does not take the revision ($OVERRIDE)")
    compatibility = (root / "docs/driver-compatibility.md").read_text()
    problems += [f"docs/driver-compatibility.md does not name {revision}" for revision in REVISIONS
                 if revision not in compatibility]
    return problems


def test_the_ci_matrix_builds_the_checks_under_each_revision() -> None:
    assert matrix_problems() == []


def test_a_matrix_without_unstable_or_a_step_without_the_override_is_found(tmp_path: Path) -> None:
    copy = tracked_copy(tmp_path / "repo")
    workflow = copy / ".github/workflows/nix.yml"
    text = workflow.read_text()
    start = text.index("          - nixpkgs: nixos-unstable")
    end = text.index("    env:")
    text = text[:start] + text[end:]
    workflow.write_text(text.replace("nix flake check $OVERRIDE -L", "nix flake check -L"))
    assert matrix_problems(copy) == [
        "nix.yml: the matrix names ['nixos-25.11', 'nixos-26.05'], upstream_api.json "
        "['nixos-25.11', 'nixos-26.05', 'nixos-unstable']",
        "nix.yml: 'nix flake check -L --keep-going' does not take the revision ($OVERRIDE)",
    ]
