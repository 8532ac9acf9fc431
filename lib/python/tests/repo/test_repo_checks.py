"""The repository's Nix-side checks pass on the tree and fail on planted errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from . import repo_checks
from .repo_checks import REPO


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the tracked tree, to plant errors in."""
    return repo_checks.tracked_copy(tmp_path / "repo")


@pytest.mark.parametrize("check", repo_checks.ALL_CHECKS, ids=lambda check: check.__name__)
def test_the_repository_passes(check: object) -> None:
    assert check() == []  # type: ignore[operator]


def test_a_parse_error_is_found(copy: Path) -> None:
    (copy / "e2e-test/nix/client.nix").write_text("{ pkgs, ... }: { broken = ; }\n")
    problems = repo_checks.parse_problems(copy)
    assert len(problems) == 1 and problems[0].startswith("e2e-test/nix/client.nix")


def test_a_missing_path_is_found(copy: Path) -> None:
    (copy / "e2e-test/nix/log-collector.nix").unlink()
    assert repo_checks.missing_path_problems(copy) == [
        "e2e-test/nix/server.nix: ./log-collector.nix does not exist"
    ]


def test_a_diverging_test_script_is_found(copy: Path) -> None:
    # The library's builders read the testScripts (lib/nix/web-stack-e2e.nix, vm-validation.nix).
    e2e = copy / "lib/nix/web-stack-e2e.nix"
    e2e.write_text(e2e.read_text().replace("../../e2e-test/test_script.py", "./other_script.py"))
    vm = copy / "lib/nix/vm-validation.nix"
    vm.write_text(vm.read_text().replace("../../tests/vm/services.py", "./services-nix-only.py"))
    problems = repo_checks.test_script_problems(copy)
    assert "lib/nix/other_script.py: read by a Nix check, never run by the portable runtime" in problems
    assert "e2e-test/test_script.py: run by the portable runtime, read by no Nix check" in problems
    assert "tests/vm/services.py: run by the portable runtime, read by no Nix check" in problems
    assert "lib/nix/services-nix-only.py does not exist" in problems


def test_an_incomplete_lock_is_found(copy: Path) -> None:
    lock = json.loads((copy / "flake.lock").read_text())
    del lock["nodes"]["nixpkgs"]["locked"]["narHash"]
    lock["nodes"]["nixpkgs"]["locked"]["rev"] = "main"
    (copy / "flake.lock").write_text(json.dumps(lock))
    problems = repo_checks.lock_problems(copy)
    assert "flake.lock: nixpkgs locked.narHash is missing or malformed" in problems
    assert "flake.lock: nixpkgs locked.rev is missing or malformed" in problems


def test_a_lock_that_disagrees_with_the_flake_is_found(copy: Path) -> None:
    lock = json.loads((copy / "flake.lock").read_text())
    lock["nodes"]["home-manager"]["original"]["ref"] = "release-24.05"
    del lock["nodes"]["home-manager"]["locked"]["lastModified"]
    (copy / "flake.lock").write_text(json.dumps(lock))
    flake = copy / "flake.nix"
    flake.write_text(flake.read_text().replace('inputs.nixpkgs.follows = "nixpkgs";', ""))
    problems = repo_checks.lock_problems(copy)
    assert "flake.lock: home-manager locked.lastModified is missing or malformed" in problems
    assert ("flake.lock: home-manager's original 'github:nix-community/home-manager/release-24.05' "
            "is not its url in flake.nix") in problems
    assert "flake.lock: home-manager.nixpkgs follows ['nixpkgs'] but flake.nix does not say so" in problems


def test_a_broken_workflow_is_found(copy: Path) -> None:
    (copy / ".github/workflows/broken.yml").write_text("name: x\non: push\njobs:\n  a:\n    steps: []\n")
    (copy / ".github/workflows/notyaml.yml").write_text("jobs: [unclosed\n")
    problems = repo_checks.workflow_problems(copy)
    assert any("broken.yml: job 'a' needs runs-on and steps" in p for p in problems)
    assert any("notyaml.yml: not YAML" in p for p in problems)


def test_the_validation_profile_expects_the_managed_dotfiles() -> None:
    from vmtest.suites import vm_validation as vv

    # The Debian twin installs machines/dotfiles; the suite's default profile must expect exactly them.
    assert vv.DEFAULT_MANAGED_FILES[vv.GIT_CONFIG] == (REPO / "machines/dotfiles/git/config").read_text()
