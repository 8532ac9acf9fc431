"""What Nix will run, checked here: embedded shell, placeholders, the guest interface, the flake's
outputs and the artifacts/verdict pair. Each check has a negative control with the defect it
exists for (most of them as main had it before these checks)."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from vmtest import logs

from ..unit.test_twin_parity import server_guest
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
    assert ("lib/nix/modules/e2e-server.nix", "writeShellScript") in kinds
    assert ("lib/nix/modules/e2e-server.nix", "script") in kinds
    assert ("e2e-test/nix/log-collector.nix", "writeShellApplication") in kinds
    assert ("lib/nix/test-with-artifacts.nix", "runCommand") in kinds
    assert ("lib/nix/modules/validation-fixtures.nix", "runCommand") in kinds
    # The consumers' browser runners (templates and examples) are checked as ours are.
    assert ("examples/e2e/nix/browser-tests.nix", "writeShellApplication") in kinds
    assert ("templates/e2e/browser-suite.nix", "writeShellApplication") in kinds


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
    client = copy / "lib/nix/modules/e2e-client.nix"
    client.write_text(client.read_text().replace("systemd.services.e2e-browser-tests", "systemd.services.other"))
    problems = guest_interface.problems(copy, guest_interface.TWINS[:1])
    assert problems == ["e2e-test/test_script.py: e2e-browser-tests.service is declared by no NixOS node "
                        "(e2e-test/nix/default.nix, lib/nix/web-stack-e2e.nix)"]


def test_the_units_the_generic_role_names_after_another_app_are_not_alicias(tmp_path: Path) -> None:
    """The Alicia units come from the library's server role named after the instance's app: an
    instance of another app does not declare them (the role's names are read with the app's)."""
    twin = guest_interface.TWINS[0]
    other = guest_interface.Twins(twin.script, twin.nixos_modules, twin.debian_recipes, twin.debian_machines,
                                  (("app", "other"),))
    problems = guest_interface.problems(REPO, (other,))
    assert problems == [f"e2e-test/test_script.py: {unit} is declared by no NixOS node "
                        "(e2e-test/nix/default.nix, lib/nix/web-stack-e2e.nix)"
                        for unit in ("alicia-migrate.service", "alicia.service")]


# The guest commands of upstream's methods: a Debian image without them passes under the portable
# runtime only if the runtime hides the gap; e2e's server.toml lacked netcat, and the testScript
# under the real driver waited 900 tries at server.wait_for_open_port.

def test_a_recipe_without_netcat_for_wait_for_open_port_is_found(tmp_path: Path) -> None:
    copy = tracked_copy(tmp_path / "repo")
    server = copy / "e2e-test/machines/server.toml"
    server.write_text(server.read_text().replace(', "netcat-openbsd"', ""))
    problems = guest_interface.problems(copy, guest_interface.TWINS[:1])
    assert problems == ["e2e-test/test_script.py: server.wait_for_open_port (e2e-test/test_script.py) runs `nc` "
                        "in the guest, as upstream's driver does; e2e-test/machines/server.toml (machine server) "
                        "installs no netcat-openbsd"]


def test_a_call_on_no_named_machine_counts_for_every_machine(tmp_path: Path) -> None:
    copy = tracked_copy(tmp_path / "repo")
    script = copy / "e2e-test/test_script.py"
    script.write_text(script.read_text() + "for box in (server, client):\n    box.wait_for_window('xterm')\n")
    problems = guest_interface.problems(copy, guest_interface.TWINS[:1])
    assert [problem.split("; ")[1] for problem in problems] == [
        "e2e-test/machines/client.toml (machine client) installs no x11-utils",
        "e2e-test/machines/server.toml (machine server) installs no x11-utils",
    ], problems


def test_a_helper_module_the_script_imports_is_read_too(tmp_path: Path) -> None:
    copy = tracked_copy(tmp_path / "repo")
    helper = copy / "lib/python/src/vmtest/suites/vm_validation.py"
    helper.write_text(helper.read_text() + "\n\ndef port_up(machine):\n    machine.wait_for_open_port(22)\n")
    problems = guest_interface.problems(copy, guest_interface.TWINS[1:2])  # tests/vm/boot.py imports it
    assert problems == [
        f"tests/vm/boot.py: machine.wait_for_open_port (lib/python/src/vmtest/suites/vm_validation.py) runs `nc` "
        f"in the guest, as upstream's driver does; machines/{recipe} (machine {machine}) installs no netcat-openbsd"
        for machine, recipe in (("peer", "peer.toml"), ("vm", "debian-vm.toml"), ("vm", "debian-vm-aarch64.toml"))
    ]


def e2e_server_sources(script: Path = REPO / "e2e-test/test_script.py") -> list[logs.LogSource]:
    """``alicia_server_sources()`` as the e2e testScript defines it."""
    [function] = [node for node in ast.parse(script.read_text()).body
                  if isinstance(node, ast.FunctionDef) and node.name == "alicia_server_sources"]
    namespace: dict[str, Any] = {"logs": logs}
    exec(compile(ast.Module([function], type_ignores=[]), str(script), "exec"), namespace)
    sources: list[logs.LogSource] = namespace["alicia_server_sources"]()
    return sources


@pytest.mark.parametrize("flavour", ["nixos", "debian"])
def test_the_e2e_server_logs_are_read_where_each_twin_puts_them(tmp_path: Path, flavour: str) -> None:
    # NixOS: postgres and nginx's errors (services.nginx.logError = "stderr") in the journal, no
    # /var/log/postgresql; Debian: the package's files besides. The access log is a file on both.
    root = tmp_path / flavour
    (root / "var/log/nginx").mkdir(parents=True)
    (root / "var/log/nginx/access.log").write_text("GET /health 200\n")
    if flavour == "debian":
        (root / "var/log/postgresql").mkdir()
        (root / "var/log/postgresql/postgresql-17-main.log").write_text("LOG:  from the cluster's file\n")
        (root / "var/log/nginx/error.log").write_text("[error] from nginx's file\n")
    logs.collect_logs(server_guest(tmp_path, root), e2e_server_sources(),  # type: ignore[arg-type]
                      out_dir=tmp_path, dest="logs")
    collected = {name: (tmp_path / "logs" / name).read_text()
                 for name in ("postgresql.log", "nginx-error.log", "nginx-access.log")}
    assert "database system is ready" in collected["postgresql.log"], collected
    assert "host not found in upstream" in collected["nginx-error.log"], collected
    assert collected["nginx-access.log"] == "GET /health 200\n"
    if flavour == "debian":
        assert "from the cluster's file" in collected["postgresql.log"]
        assert "from nginx's file" in collected["nginx-error.log"]


def test_every_guest_command_has_its_debian_package_and_every_method_is_upstreams() -> None:
    upstream = json.loads((REPO / "lib/python/tests/unit/data/upstream_api.json").read_text())["methods"]
    assert set(guest_interface.UPSTREAM_GUEST_COMMANDS) <= set(upstream)
    commands = {command for used in guest_interface.UPSTREAM_GUEST_COMMANDS.values() for command in used}
    assert commands == set(guest_interface.DEBIAN_PROVIDERS)


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
                parts[0] in names["nixosConfigurations"]) or parts[0] in names["templates"]
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
    return wanted - set(TOOLS)


# Command-line tools of the dev extra that nixpkgs has as packages of their own, not Python modules.
TOOLS = ("ruff", "ty")


def _dev_shell_tools(flake: Path) -> set[str]:
    names: list[str] = flake_eval.evaluate(flake, "map (p: p.name) outputs.devShells.x86_64-linux.default.packages")
    return set(names) & set(TOOLS)


def _dev_shell_python(flake: Path) -> set[str]:
    packages: list[str] = flake_eval.evaluate(flake, (
        "let shell = outputs.devShells.x86_64-linux.default; "
        "python = builtins.head (builtins.filter (p: p ? packages) shell.packages); "
        "in map (p: p.pname) python.packages"))
    return {name.lower() for name in packages}


def test_the_dev_shell_has_what_make_test_imports() -> None:
    assert _dev_extra_in_nix_names() - _dev_shell_python(REPO) == set()
    assert _dev_shell_tools(REPO) == set(TOOLS)


def test_a_dev_shell_without_pyyaml_is_found(tmp_path: Path) -> None:
    copy = tracked_copy(tmp_path / "repo")
    flake = copy / "flake.nix"
    flake.write_text(flake.read_text().replace("ps.pyyaml\n", "\n"))
    assert _dev_extra_in_nix_names() - _dev_shell_python(copy) == {"pyyaml"}


def test_a_dev_shell_without_ty_is_found(tmp_path: Path) -> None:
    copy = tracked_copy(tmp_path / "repo")
    flake = copy / "flake.nix"
    flake.write_text(flake.read_text().replace("            pkgs.ty ", "            "))
    assert _dev_shell_tools(copy) == {"ruff"}


