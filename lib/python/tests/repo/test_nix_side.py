"""What Nix will run, checked here: embedded shell, placeholders, the guest interface, the flake's
outputs and the artifacts/verdict pair. Each check has a negative control with the defect it
exists for (most of them as main had it before these checks)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from . import flake_eval, guest_interface, nix_scripts
from .repo_checks import REPO, nix_files, tracked_copy

# e2e-test/nix/packages.nix's browser runner as main had it: the placeholder names the
# writeShellScript's own output, and without `set -e` the failed `cd` went unnoticed.
OLD_RUNNER = """{ pkgs }:
{
  tests = pkgs.stdenvNoCC.mkDerivation {
    installPhase = ''
      mkdir -p $out/share/e2e-tests $out/bin
      makeWrapper ${pkgs.writeShellScript "e2e-run-browser-tests" ''
        out=''${1:-/tmp/e2e}
        cd ${placeholder "out"}/share/e2e-tests
        python3 -m pytest -v .
      ''} $out/bin/e2e-run-browser-tests
    '';
  };
}
"""
# The testScript's browser run as main had it.
OLD_BROWSER_RUN = (
    'client.succeed("systemd-run --unit=e2e-browser-tests --collect /usr/bin/env bash -c '
    "'e2e-run-browser-tests /tmp/e2e'\")\n"
)



# Embedded shell.

def test_every_embedded_script_is_found() -> None:
    kinds = {(str(found.path.relative_to(REPO)), found.kind) for found in nix_scripts.shell_scripts(nix_files())}
    assert ("e2e-test/nix/packages.nix", "installPhase") in kinds
    assert ("e2e-test/nix/server.nix", "writeShellScript") in kinds
    assert ("e2e-test/nix/server.nix", "script") in kinds
    assert ("e2e-test/nix/log-collector.nix", "writeShellApplication") in kinds
    assert ("lib/nix/test-with-artifacts.nix", "runCommand") in kinds


def test_embedded_shell_passes_shellcheck() -> None:
    assert nix_scripts.shellcheck_problems(nix_files(), REPO) == []


def test_shellcheck_finds_the_old_runners_unchecked_cd(tmp_path: Path) -> None:
    (tmp_path / "old.nix").write_text(OLD_RUNNER)
    problems = nix_scripts.shellcheck_problems([tmp_path / "old.nix"], tmp_path)
    # cd without `|| exit`, reported at its line in the .nix file
    assert any(line.startswith("old.nix:8 (writeShellScript)") and "SC2164" in line for line in problems), problems


def test_no_placeholder_inside_a_script_writer() -> None:
    assert nix_scripts.placeholder_problems(nix_files(), REPO) == []


def test_the_old_runners_placeholder_is_found(tmp_path: Path) -> None:
    (tmp_path / "old.nix").write_text(OLD_RUNNER)
    problems = nix_scripts.placeholder_problems([tmp_path / "old.nix"], tmp_path)
    assert len(problems) == 1 and 'placeholder "out" inside writeShellScript' in problems[0], problems


def test_interpolations_become_stand_ins_and_escapes_are_undone(tmp_path: Path) -> None:
    source = "{ pkgs }: pkgs.runCommand \"x\" { } ''\n  echo ${pkgs.hello}/bin ''${HOME} '''q'''\n''\n"
    (tmp_path / "x.nix").write_text(source)
    (found,) = nix_scripts.shell_scripts([tmp_path / "x.nix"])
    assert found.kind == "runCommand" and found.interpolations == ["pkgs.hello"]
    assert found.text.strip() == f"echo {nix_scripts.STAND_IN}/bin ${{HOME}} ''q''"


# The guest interface.

def test_the_testscripts_use_only_what_both_twins_declare() -> None:
    assert guest_interface.problems(REPO) == []


def test_the_e2e_script_names_the_units_it_relies_on() -> None:
    units = guest_interface.units_named((REPO / "e2e-test/test_script.py").read_text())
    assert {"e2e-browser-tests.service", "alicia-migrate.service", "postgresql.service"} <= units


def test_a_transient_unit_is_found(tmp_path: Path) -> None:
    copy = tracked_copy(tmp_path / "repo")
    script = copy / "e2e-test/test_script.py"
    script.write_text(script.read_text() + OLD_BROWSER_RUN)
    problems = guest_interface.problems(copy, guest_interface.TWINS[:1])
    assert len(problems) == 1 and "systemd-run" in problems[0], problems


def test_a_unit_only_one_twin_declares_is_found(tmp_path: Path) -> None:
    copy = tracked_copy(tmp_path / "repo")
    client = copy / "e2e-test/nix/client.nix"
    client.write_text(client.read_text().replace("systemd.services.e2e-browser-tests", "systemd.services.other"))
    problems = guest_interface.problems(copy, guest_interface.TWINS[:1])
    assert problems == ["e2e-test/test_script.py: e2e-browser-tests.service is declared by no NixOS node "
                        "(e2e-test/nix/server.nix, e2e-test/nix/client.nix)"]


# The flake's outputs.

def _readme_references() -> set[str]:
    return set(re.findall(r"\.#([\w.-]+)", (REPO / "README.md").read_text()))


def test_every_output_readme_names_exists() -> None:
    names = flake_eval.output_names(REPO)
    systems = ("x86_64-linux", "aarch64-linux")
    for system in systems:
        assert {"vmtest", "vm-boot", "vm-service", "vm-integration"} <= set(names["checks"][system])
        assert {"vm-boot-artifacts", "vm-service-artifacts", "vm-integration-artifacts"} <= set(
            names["packages"][system])
    assert "e2e" in names["checks"]["x86_64-linux"] and "e2e-artifacts" in names["packages"]["x86_64-linux"]
    missing = []
    for reference in sorted(_readme_references()):
        parts = [part for part in reference.removesuffix(".driverInteractive").split(".") if part]
        if parts[0] in ("checks", "packages") and len(parts) < 3:
            continue  # prose such as `nix build .#checks…`
        if parts[0] == "checks":
            found = parts[2] in names["checks"].get(parts[1], [])
        elif parts[0] == "packages":
            found = parts[2] in names["packages"].get(parts[1], [])
        else:
            found = any(parts[0] in names[kind]["x86_64-linux"] for kind in ("packages", "apps")) or (
                parts[0] in names["nixosConfigurations"])
        if not found:
            missing.append(reference)
    assert missing == [], f"README names outputs the flake does not have: {missing}"
    assert "e2e-artifacts" in _readme_references()


def test_every_vm_check_carries_its_artifacts_and_interactive_driver() -> None:
    shapes = flake_eval.evaluate(REPO, (
        "builtins.mapAttrs (system: checks: builtins.mapAttrs (name: check: "
        "{ artifacts = check ? artifacts; interactive = check ? driverInteractive; }) "
        "(removeAttrs checks [ \"vmtest\" ])) outputs.checks"))
    for system, checks in shapes.items():
        for name, shape in checks.items():
            assert shape == {"artifacts": True, "interactive": True}, (system, name)


def _dev_extra_in_nix_names() -> set[str]:
    pyproject = tomllib.loads((REPO / "lib/python/pyproject.toml").read_text())
    wanted = set()
    for requirement in pyproject["project"]["optional-dependencies"]["dev"] + pyproject["project"]["dependencies"]:
        name = re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower()
        wanted.add(name)
    return wanted - {"ruff"}  # ruff is pkgs.ruff in the devShell, not a Python package


def _dev_shell_python(flake: Path) -> set[str]:
    packages: list[str] = flake_eval.evaluate(flake, (
        "let shell = outputs.devShells.x86_64-linux.default; "
        "python = builtins.head (builtins.filter (p: p ? packages) shell.packages); "
        "in map (p: p.pname) python.packages"))
    return {name.lower() for name in packages}


def test_the_dev_shell_has_what_make_test_imports() -> None:
    assert _dev_extra_in_nix_names() - _dev_shell_python(REPO) == set()


def test_a_dev_shell_without_pyyaml_is_found(tmp_path: Path) -> None:
    copy = tracked_copy(tmp_path / "repo")
    flake = copy / "flake.nix"
    flake.write_text(flake.read_text().replace("ps.pyyaml\n", "\n"))
    assert _dev_extra_in_nix_names() - _dev_shell_python(copy) == {"pyyaml"}


# The artifacts and the verdict, run as their builders would (stand-ins for the store paths).

def _build_commands() -> tuple[str, str]:
    commands: list[str] = flake_eval.evaluate(REPO, (
        "let check = outputs.checks.x86_64-linux.e2e; in [ check.artifacts.buildCommand check.buildCommand ]"))
    return commands[0], commands[1]


def _run_builder(command: str, out: Path, stand_ins: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for store_path, replacement in stand_ins.items():
        command = command.replace(store_path, replacement)
    # stdenv's setup runs builders under bash with errexit, nounset and pipefail.
    return subprocess.run(["bash", "-euo", "pipefail", "-c", command], env={"out": str(out), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("driver_status", [0, 1])
def test_the_artifacts_survive_a_failing_run_and_the_verdict_fails(tmp_path: Path,
                                                                  driver_status: int) -> None:
    artifacts_command, verdict_command = _build_commands()
    fake = tmp_path / "driver/bin/nixos-test-driver"
    fake.parent.mkdir(parents=True)
    junit = ('<testsuite name="alicia-e2e"><testcase name="server stack comes up in order">'
             + ('<failure message="boom"/>' if driver_status else "") + "</testcase></testsuite>")
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = -o ] && echo '{junit}' > \"$2/junit.xml\"\nexit {driver_status}\n")
    fake.chmod(0o755)
    store = re.compile(r"/nix/store/[0-9a-z]{32}-([\w.+-]+)")
    driver_path = next(m.group(0) for m in store.finditer(artifacts_command) if "nixos-test-driver" in m.group(1))
    artifacts = tmp_path / "artifacts"
    built = _run_builder(artifacts_command, artifacts, {driver_path: str(fake.parent.parent)})
    assert built.returncode == 0, built.stderr  # the run's derivation always succeeds ...
    assert (artifacts / "junit.xml").is_file()  # ... and keeps what the driver wrote
    assert (artifacts / "driver-exit-status").read_text().strip() == str(driver_status)

    python_env = next(m.group(0) for m in store.finditer(verdict_command) if "python3-env" in m.group(1))
    artifacts_path = next(m.group(0) for m in store.finditer(verdict_command) if m.group(1).endswith("-artifacts"))
    venv_root = Path(sys.executable).parent.parent
    verdict = _run_builder(verdict_command, tmp_path / "verdict", {python_env: str(venv_root),
                                                                   artifacts_path: str(artifacts)})
    if driver_status == 0:
        assert verdict.returncode == 0, verdict.stderr
        assert (tmp_path / "verdict").resolve() == artifacts.resolve()
    else:
        assert verdict.returncode == 1
        assert "FAILED alicia-e2e: server stack comes up in order" in verdict.stdout + verdict.stderr
