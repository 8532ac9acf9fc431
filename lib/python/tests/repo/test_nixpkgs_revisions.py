"""The flake under each nixpkgs revision of the support matrix (issue 26, point 3).

Users' flakes follow their own nixpkgs, so this flake's checks, its library (lib/nix), and every
template and example are evaluated under each revision docs/driver-compatibility.md and
tests/unit/data/upstream_api.json name: nixos-25.11 (the flake's pin), nixos-26.05 and
nixos-unstable. The stub nixpkgs stands for one revision at a time
(nix/stub-nixpkgs/testing-options.nix): its runNixOSTest takes the test options that revision
declares, of their types, and refuses any other, so each evaluation checks every test option
the library sets. Where the library needs an option only some revisions have (`forceAccel`,
`nodeKind = "container"`), it asks the test framework's `options`; both branches are tested. The
flake's `e2e-containers` check exists exactly where the revision declares `containers`. CI builds the checks under each
revision (.github/workflows/nix.yml), whose matrix must name the same revisions.

Negative controls: an option only 26.05 and later declare (`containers`, `qemu.forceAccel`) under
the 25.11 stub, an option unstable removed, a value of the wrong type, a library that sets
`qemu.forceAccel` or `containers` without asking, and a workflow matrix missing a revision.
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
# The revisions whose test framework declares `containers.<name>` (testing-options.nix).
CONTAINER_REVISIONS = ("nixos-26.05", "nixos-unstable")
STUB = NIX / "stub-nixpkgs"
# What the flake's outputs are, forced as `nix flake check` forces them: every check's testScript,
# nodes, artifacts and interactive driver; the packages, apps and shells by name.
FORCED = (
    "let forced = check: if check ? driver then { script = check.driver.testScript; "
    "  nodes = builtins.attrNames check.nodes; containers = builtins.attrNames (check.config.containers or { }); "
    "  artifacts = check.artifacts.name; "
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
    assert checks["x86_64-linux"]["e2e"]["containers"] == []
    # The container variant of the e2e check exists where the revision declares `containers`, on
    # x86_64-linux only (as `e2e`), with its artifacts package; its machines are containers only.
    if revision in CONTAINER_REVISIONS:
        containers = checks["x86_64-linux"].pop("e2e-containers")
        assert (containers["nodes"], containers["containers"]) == ([], ["client", "server"])
        assert containers["name"] == "alicia-e2e-containers"
        assert containers["artifacts"] == "alicia-e2e-containers-artifacts"
        # The same testScript as the VM check's but for the stack's name in the prelude.
        assert containers["script"] == checks["x86_64-linux"]["e2e"]["script"].replace(
            '\\"name\\":\\"alicia-e2e\\"', '\\"name\\":\\"alicia-e2e-containers\\"')
        outputs["packages"]["x86_64-linux"].remove("e2e-containers-artifacts")
    assert all("e2e-containers" not in named for named in checks.values())
    # The library gives the same tests whichever revision runs them (no option is chosen by revision
    # unless asked for: forceAccel and the e2e container check, below).
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


# Server and client as containers (`nodeKind = "container"`): where the revision declares them.

def _web(system: str = "x86_64-linux", more: str = "") -> str:
    return (f'vmtest.lib.{system}.webStackE2e {{ app = "a"; package = {{ type = "derivation"; name = "a"; }}; '
            f'browserSuite = {{ type = "derivation"; name = "b"; }}; {more}}}')


AS_CONTAINERS = 'nodeKind = "container"; '
AS_VMS = 'nodeKind = "vm"; '
MACHINES = ("c: { nodes = builtins.attrNames (c.config.nodes or { }); "
            "containers = builtins.attrNames (c.config.containers or { }); }")


@pytest.mark.parametrize("revision", CONTAINER_REVISIONS)
def test_the_container_variant_declares_containers_and_no_nodes(revision: str) -> None:
    shape = library(
        f'let vm = {_web()}; box = {_web(more=AS_CONTAINERS)}; machines = {MACHINES}; '
        "role = c: name: c.config.${name}.${name}.imports; "
        "sizes = m: builtins.filter (i: builtins.isAttrs i && i ? virtualisation) m.imports; in "
        "{ vm = machines vm; box = machines box; "
        "  sameScript = vm.driver.testScript == box.driver.testScript; "
        "  roles = map (name: { vm = builtins.length vm.config.nodes.${name}.imports; "
        "    box = builtins.length box.config.containers.${name}.imports; "
        "    vmSizes = map (i: builtins.attrNames i.virtualisation) (sizes vm.config.nodes.${name}); "
        "    boxSizes = builtins.length (sizes box.config.containers.${name}); }) [ \"server\" \"client\" ]; "
        "  settings = box.config.containers.server.vmtest.e2e.server == vm.config.nodes.server.vmtest.e2e.server; "
        "  suite = box.config.containers.client.vmtest.e2e.client.browserSuite.name; }", revision=revision)
    assert shape["vm"] == {"nodes": ["client", "server"], "containers": []}
    assert shape["box"] == {"nodes": [], "containers": ["client", "server"]}
    # The same testScript (e2e-test/test_script.py after the same prelude) and the same roles; a
    # container gets no QEMU sizes (nspawn-container declares none), a VM gets them.
    assert shape["sameScript"] is True and shape["settings"] is True and shape["suite"] == "b"
    assert shape["roles"] == [
        {"vm": 3, "box": 2, "vmSizes": [["cores", "diskSize", "graphics", "memorySize"]], "boxSizes": 0},
        {"vm": 3, "box": 2, "vmSizes": [["cores", "graphics", "memorySize"]], "boxSizes": 0}]


def test_the_container_variant_is_a_clear_error_where_the_revision_lacks_containers() -> None:
    message = _error(f'({_web("aarch64-darwin", AS_CONTAINERS)}).driver.testScript', "nixos-25.11")
    assert ('vmtest.lib.aarch64-darwin.webStackE2e: `nodeKind = "container"` needs the test option `containers` '
            "(systemd-nspawn machines), which the test framework of this nixpkgs does not declare "
            '(nixos-26.05 and later do); use nodeKind = "vm" (the default) with this nixpkgs') in message, message
    # Not the stub's own refusal: the library asked before defining anything.
    assert "does not exist" not in message


@pytest.mark.parametrize("revision", REVISIONS)
def test_the_default_and_vm_node_kinds_are_nodes_under_every_revision(revision: str) -> None:
    shapes = library(f'let machines = {MACHINES}; in {{ default = machines ({_web()}); '
                     f'vm = machines ({_web(more=AS_VMS)}); }}', revision=revision)
    assert shapes == {"default": {"nodes": ["client", "server"], "containers": []},
                      "vm": {"nodes": ["client", "server"], "containers": []}}


@pytest.mark.parametrize(("more", "message"), [
    ('nodeKind = "nspawn"; ', 'webStackE2e: the argument `nodeKind` is "nspawn"; it is "vm" or "container"'),
    ("nodeKind = true; ", "webStackE2e: the argument `nodeKind` (string: "),
    ('nodeKind = "container"; forceAccel = true; ',
     'webStackE2e: `forceAccel = true` is about QEMU, and `nodeKind = "container"` runs no QEMU'),
])
def test_a_wrong_node_kind_is_a_throw_naming_the_argument(more: str, message: str) -> None:
    assert message in _error(f"({_web(more=more)}).driver.testScript", "nixos-26.05")


@pytest.mark.parametrize("revision", CONTAINER_REVISIONS)
def test_the_e2e_testscript_passes_the_type_check_with_server_and_client_as_containers(
        revision: str, tmp_path: Path) -> None:
    """The header the revision's driver writes for `containers.server` and `containers.client`
    (NspawnMachine), over e2e-test/test_script.py unchanged: what the container check's driver checks.
    nixos-26.05's NspawnMachine has no `screenshot` (unstable's has, through xwd): the testScript asks
    for the method before it calls it, which both revisions' checkers accept."""
    from . import driver_stubs
    from .test_driver_typecheck import _script, _typecheck

    script = driver_stubs.header(revision, [], ["server", "client"]) + _script("e2e-test/test_script.py")
    assert "server = create_fake_nspawn_machine()" in script and "= create_fake_qemu_machine()" not in script
    assert _typecheck(revision, {"e2e_containers": script}, tmp_path) == {"e2e_containers": ""}


def _planted(tmp_path: Path, relative: str, original: str, replacement: str) -> Path:
    """A copy of this repository's Nix side with ``original`` replaced in ``relative`` (which must have it)."""
    copy = _library_copy(tmp_path / "vmtest")
    path = copy / relative
    text = path.read_text()
    assert original in text, (relative, original)
    path.write_text(text.replace(original, replacement))
    return copy


def test_a_library_that_declares_containers_without_asking_fails_under_the_revision_without_them(
        tmp_path: Path) -> None:
    """web-stack-e2e.nix defining `containers` itself, as if every nixpkgs had them: the e2e container
    variant then fails under nixos-25.11 with the stub's refusal instead of the library's message."""
    copy = _planted(tmp_path, "lib/nix/web-stack-e2e.nix", "else { imports = [ asContainers ]; };",
                    "else { containers = { inherit server client; }; };")
    call = (f'(let vmtest = import {NIX / "flake-outputs.nix"} {{ flake = {copy}; revision = "nixos-25.11"; }}; '
            f'in ({_web(more=AS_CONTAINERS)}).driver.testScript)')
    with pytest.raises(EvaluationError, match=re.escape("the test option `containers' does not exist")):
        library(call, revision="nixos-25.11")


def test_a_flake_that_adds_the_container_check_unasked_fails_under_the_pin(tmp_path: Path) -> None:
    """flake.nix adding e2e-containers on x86_64-linux without asking the test framework: its
    checks no longer evaluate under nixos-25.11 (`nix flake check` would fail there)."""
    copy = _planted(tmp_path, "flake.nix", '(system == "x86_64-linux" && declaresContainers)',
                    '(system == "x86_64-linux")')
    script = "outputs.checks.x86_64-linux.e2e-containers.driver.testScript"
    with pytest.raises(EvaluationError, match=re.escape("needs the test option `containers`")):
        evaluate(copy, script, revision="nixos-25.11")
    assert evaluate(copy, script, revision="nixos-26.05").endswith((REPO / "e2e-test/test_script.py").read_text())


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
    copy = _planted(tmp_path, "lib/nix/vm-validation.nix",
                    "imports = lib.optional (args.forceAccel or false) (forceAccel function);",
                    "qemu.forceAccel = true;")
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
