"""vmtest's Nix library (the flake's `lib`, `nixosModules`, `templates`), as other flakes use it.

Every template and example is a consumer flake: it is evaluated here as `nix flake check` would
evaluate it with `--override-input vmtest path:<this repository>`, with the stub lib and stub
packages (nix/consumer-outputs.nix), for each host it names. What the user expects of their VM
or stack must reach the testScript the driver runs: the testScripts start with the JSON the
library writes, which is read back here by the very parsers the testScripts use
(vmtest.suites.vm_validation.parse_expectations, vmtest.suites.web_stack.parse_stack). The NixOS
roles are evaluated by hand with the settings the library gives them (nix/module-eval.nix).
Negative controls: each function's missing, misspelt or mistyped argument is a `throw` naming
it; a library without the prepended JSON loses the user's expectations.
"""

from __future__ import annotations

import ast
import json
import shutil
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from vmtest.suites import vm_validation as vv
from vmtest.suites import web_stack

from .flake_eval import FLAKE_OUTPUTS, EvaluationError, instantiate_json
from .repo_checks import REPO

NIX = Path(__file__).resolve().parent / "nix"
CONSUMER_OUTPUTS = NIX / "consumer-outputs.nix"
MODULE_EVAL = NIX / "module-eval.nix"
SYSTEMS = ("x86_64-linux", "aarch64-linux", "aarch64-darwin")
VM_CHECKS = ("vm-boot", "vm-service", "vm-integration")
SUITE_SCRIPTS = {"vm-boot": "tests/vm/boot.py", "vm-service": "tests/vm/services.py",
                 "vm-integration": "tests/vm/integration.py"}
# Each consumer flake and the VM checks it must have on every host.
CONSUMERS = {
    "templates/vm-validation": VM_CHECKS,
    "examples/vm-validation": VM_CHECKS,
    "templates/e2e": ("e2e",),
    "examples/e2e": ("e2e",),
}


# The files a managed file's expected content comes from are store paths the testScript reads on
# the host: evaluated here as Nix evaluates a flake, with the store written (`--eval` alone only
# computes their paths).
EVAL = ["--read-write-mode", "-E"]


def _revision(revision: str | None) -> str:
    """The ``revision`` argument of the stub flakes (nix/stub-inputs.nix); none: the flake's pin."""
    return "" if revision is None else f' revision = "{revision}";'


def consumer(flake: str, expression: str, vmtest: Path = REPO, revision: str | None = None) -> Any:
    """``expression`` with ``outputs`` bound to the consumer flake's outputs (its vmtest input: ``vmtest``),
    both with the stub nixpkgs standing for ``revision``."""
    program = (f"let outputs = import {CONSUMER_OUTPUTS} {{ flake = {REPO / flake}; vmtest = {vmtest};"
               f"{_revision(revision)} }}; in {expression}")
    return instantiate_json([*EVAL, program])


def library(expression: str, vmtest: Path = REPO, revision: str | None = None) -> Any:
    """``expression`` with ``vmtest`` bound to this repository's outputs (its ``lib``, ``nixosModules``)."""
    outputs = f"import {FLAKE_OUTPUTS} {{ flake = {vmtest};{_revision(revision)} }}"
    return instantiate_json([*EVAL, f"let vmtest = {outputs}; in {expression}"])


def prelude_value(script: str, variable: str) -> str:
    """The string assigned to ``variable`` at the top of a testScript (what the library prepends)."""
    for node in ast.parse(script).body:
        if (isinstance(node, ast.Assign) and [getattr(target, "id", None) for target in node.targets] == [variable]
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value
    raise AssertionError(f"the testScript does not start with {variable} = '<json>'")


class NixOsGuest:
    """What expected_profile asks of the guest: it is NixOS."""

    name = "vm"

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: object = 900) -> tuple[int, str]:
        assert command == "test -e /etc/NIXOS", command
        return 0, ""


def profile_of(script: str) -> vv.VmProfile:
    """The profile a testScript with the library's prelude gives its suite on a NixOS guest."""
    namespace = {vv.EXPECTATIONS_VARIABLE: prelude_value(script, vv.EXPECTATIONS_VARIABLE)}
    return vv.expected_profile(NixOsGuest(), namespace)  # type: ignore[arg-type]


# Every template and example, on every host.

@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("flake", sorted(CONSUMERS))
def test_every_consumer_flake_gives_verdicts_with_artifacts_and_an_interactive_driver(flake: str, system: str) -> None:
    shapes = consumer(flake, (
        f"builtins.mapAttrs (name: check: {{ artifacts = check.artifacts.name; "
        f"interactive = check.driverInteractive.name; features = check.artifacts.env.requiredSystemFeatures; }}) "
        f"(builtins.removeAttrs outputs.checks.{system} "
        f"(builtins.filter (name: !(outputs.checks.{system}.${{name}} ? artifacts)) "
        f"(builtins.attrNames outputs.checks.{system})))"))
    assert set(CONSUMERS[flake]) <= set(shapes), shapes
    for name, shape in shapes.items():
        assert shape["artifacts"].endswith("-artifacts") and shape["interactive"].endswith("-interactive"), shape
        # What the host must offer: KVM on Linux, Apple's virtualization on a Mac (as nixpkgs' run.nix).
        assert shape["features"] == ["nixos-test", "apple-virt" if system.endswith("darwin") else "kvm"], (name, shape)


@pytest.mark.parametrize("flake", sorted(CONSUMERS))
def test_every_consumer_flake_takes_vmtest_as_an_input_and_copies_nothing(flake: str) -> None:
    text = (REPO / flake / "flake.nix").read_text()
    assert "vmtest = {" in text and 'url = "github:' in text
    # Nothing of vmtest's own files: no path out of the consumer's directory, no vmtest file name.
    for path in (REPO / flake).rglob("*"):
        if path.is_file():
            content = path.read_text()
            assert "../../" not in content, path  # the consumer's own tree only
            for ours in ("test_script.py", "nixos-vm.nix", "test_ed25519", "machines/dotfiles", "baleen"):
                assert ours not in content, (path, ours)


# The user's expectations reach the testScripts.

@pytest.mark.parametrize("system", SYSTEMS)
def test_adas_expectations_reach_each_suites_testscript(system: str) -> None:
    scripts: dict[str, str] = consumer("examples/vm-validation", (
        f"builtins.mapAttrs (name: check: check.driver.testScript) outputs.checks.{system}"))
    assert set(scripts) == set(VM_CHECKS)
    for name, script in scripts.items():
        # The suite's own script follows the prelude unchanged (the one the portable runtime runs).
        assert script.endswith((REPO / SUITE_SCRIPTS[name]).read_text()), name
        profile = profile_of(script)
        assert profile.user == "ada"
        assert profile.arch == ("x86_64" if system.startswith("x86_64") else "aarch64")
        assert profile.tools == ("git", "tmux", "rg", "make", "gcc")
        assert profile.services == ("sshd.service",) and profile.user_groups == ("wheel",)
        assert profile.docker is False
        assert profile.activation_unit == "home-manager-ada.service" and profile.managed_root == "/nix/store/"
        # The content comes from Ada's own files (store paths the testScript reads on the host).
        assert profile.managed_files == {
            ".config/git/config": (REPO / "examples/vm-validation/dotfiles/gitconfig").read_text(),
            ".tmux.conf": (REPO / "examples/vm-validation/dotfiles/tmux.conf").read_text(),
        }
        assert vv.git_identity(profile) == "Ada Lovelace <ada@analytical.invalid>"
        assert vv.dev_tools_script(profile)[1] == ["hello from gcc", "commit by Ada Lovelace <ada@analytical.invalid>"]


def test_adas_vm_node_is_her_modules_with_the_fixtures_for_her_user() -> None:
    node = consumer("examples/vm-validation", (
        "let vm = outputs.checks.aarch64-darwin.vm-integration.nodes.vm; in "
        "{ imports = map (m: if builtins.isPath m then baseNameOf m else m.stub or \"inline\") vm.imports; "
        "  fixtures = vm.vmtest.validation; "
        "  peer = builtins.attrNames outputs.checks.aarch64-darwin.vm-integration.nodes; }"))
    assert node["imports"] == ["home-manager module", "vm.nix", "validation-fixtures.nix"]
    assert node["fixtures"] == {"enable": True, "user": "ada", "dockerImage": False}
    assert node["peer"] == ["peer", "vm"]
    fixtures = instantiate_json(["-E", (
        f"(import {MODULE_EVAL} {{ module = {REPO}/lib/nix/modules/validation-fixtures.nix; "
        f'optionPath = [ "vmtest" "validation" ]; '
        f'settings = {{ enable = true; user = "ada"; dockerImage = false; }}; }}).config')])
    key = (REPO / "machines/keys/test_ed25519.pub").read_text().strip()
    assert fixtures["users"]["users"] == {"ada": {"openssh": {"authorizedKeys": {"keys": [key]}}}}
    assert fixtures["environment"]["etc"] == {}, "no Docker image without the Docker check"


def test_the_alicia_teams_stack_reaches_the_testscript_and_the_roles() -> None:
    check = consumer("examples/e2e", (
        "let c = outputs.checks.aarch64-darwin.e2e; in { script = c.driver.testScript; "
        "server = c.nodes.server.vmtest.e2e.server // { package = c.nodes.server.vmtest.e2e.server.package.name; "
        "  postgresqlPackage = c.nodes.server.vmtest.e2e.server.postgresqlPackage.name; }; "
        "suite = c.nodes.client.vmtest.e2e.client.browserSuite.name; }"))
    script = check["script"]
    assert script.endswith((REPO / "e2e-test/test_script.py").read_text())
    stack = web_stack.parse_stack(prelude_value(script, web_stack.STACK_VARIABLE))
    assert stack.chain == ("postgresql.service", "alicia-migrate.service", "alicia.service", "nginx.service")
    assert stack.browser_log == "playwright.log" and stack.helpers == {}
    assert set(stack.secrets) == {"e2e-llm-key", "e2e-session-secret"}
    assert stack.required_extensions == ("pgcrypto", "vector")
    # The team's own packages, built for the Mac's guest (aarch64-linux: the stub's names say the system
    # only through the package set, so the names are the packages' own).
    assert check["server"]["package"] == "alicia-0.4.0"
    assert check["suite"] == "e2e-run-browser-tests"
    assert check["server"]["staticRoot"].endswith("-alicia-0.4.0/share/alicia/frontend")


def _server_role(settings: str) -> Any:
    return instantiate_json(["-E", (
        f"let e = import {MODULE_EVAL} {{ module = {REPO}/lib/nix/modules/e2e-server.nix; "
        f'optionPath = [ "vmtest" "e2e" "server" ]; settings = {settings}; }}; s = e.config.systemd.services; in {{ '
        "units = builtins.attrNames s; exec = s.alicia.serviceConfig.ExecStart; "
        "migrate = s.alicia-migrate.serviceConfig.ExecStart; "
        'env = e.config.environment.etc."alicia/env"; '
        'migrations = e.config.environment.etc."alicia/migrations".source; '
        "appEnv = s.alicia.environment; dbInit = s.alicia-db-init.script; "
        'locations = builtins.attrNames e.config.services.nginx.virtualHosts._.locations; }')])


def test_the_server_role_declares_the_units_the_testscript_names() -> None:
    settings = consumer("examples/e2e", "outputs.checks.x86_64-linux.e2e.nodes.server.vmtest.e2e.server")
    assert settings["enable"] is True and settings["app"] == "alicia"
    role = _server_role(
        f"(import {CONSUMER_OUTPUTS} {{ flake = {REPO}/examples/e2e; vmtest = {REPO}; }})"
        ".checks.x86_64-linux.e2e.nodes.server.vmtest.e2e.server")
    assert role["units"] == ["alicia", "alicia-db-init", "alicia-migrate", "nginx"]
    assert role["exec"].endswith("-alicia-0.4.0/bin/alicia server")
    assert role["migrate"].endswith("-alicia-0.4.0/bin/alicia-migrate "
                                     + role["migrations"]) and role["migrations"].endswith("/share/alicia/migrations")
    assert role["env"] == {"mode": "0600",
                           "text": "ALICIA_LLM_API_KEY=e2e-llm-key\nALICIA_SESSION_SECRET=e2e-session-secret\n"}
    assert role["appEnv"]["ALICIA_POSTGRES_URL"] == "postgresql://alicia@/alicia?host=/run/postgresql"
    assert "extensions=('pgcrypto' 'vector')" in role["dbInit"]
    assert role["locations"] == ["/", "/api/", "/health", "/ws"]


def test_the_client_role_runs_the_suite_as_the_unit_the_testscript_starts() -> None:
    client = instantiate_json(["-E", (
        f"let c = (import {CONSUMER_OUTPUTS} {{ flake = {REPO}/examples/e2e; vmtest = {REPO}; }})"
        ".checks.x86_64-linux.e2e.nodes.client.vmtest.e2e.client; "
        f"e = import {MODULE_EVAL} {{ module = {REPO}/lib/nix/modules/e2e-client.nix; "
        'optionPath = [ "vmtest" "e2e" "client" ]; settings = c; }; '
        "in e.config.systemd.services.e2e-browser-tests.serviceConfig")])
    assert client["Type"] == "oneshot"
    assert client["ExecStart"].endswith("-e2e-run-browser-tests/bin/e2e-run-browser-tests /tmp/e2e")


# This flake's own checks go through the same functions, with today's expectations.

def test_this_flakes_vm_checks_expect_what_the_portable_runtime_expects() -> None:
    scripts: dict[str, str] = library(
        "builtins.mapAttrs (name: check: check.driver.testScript) "
        '(removeAttrs vmtest.checks.aarch64-linux [ "vmtest" ])')
    assert set(scripts) == set(VM_CHECKS)
    for script in scripts.values():
        profile = profile_of(script)
        # The portable runtime's profile of the NixOS VM: VmProfile's defaults (machines/dotfiles).
        assert profile == vv.VmProfile(arch="aarch64"), profile


def test_this_flakes_vm_gets_the_docker_image_and_the_key_from_the_fixtures() -> None:
    settings = library("vmtest.checks.x86_64-linux.vm-service.nodes.vm.vmtest.validation")
    assert settings == {"enable": True, "user": "baleen", "dockerImage": True}
    # machines/nixos-vm.nix no longer holds the image: the fixtures module does, for any VM.
    assert "tiny-rootfs" not in (REPO / "machines/nixos-vm.nix").read_text()
    fixtures = instantiate_json(["-E", (
        f"let c = (import {MODULE_EVAL} {{ module = {REPO}/lib/nix/modules/validation-fixtures.nix; "
        f'optionPath = [ "vmtest" "validation" ]; settings = {{ enable = true; user = "baleen"; '
        f"dockerImage = true; }}; }}).config; in {{ image = c.environment.etc.\"vmtest/tiny-rootfs.tar\".source.name; "
        "keys = builtins.attrNames c.users.users; }")])
    assert fixtures == {"image": "vmtest-tiny-rootfs.tar", "keys": ["baleen"]}


def test_this_flakes_e2e_check_is_the_stack_the_testscript_defaults_to() -> None:
    script: str = library("vmtest.checks.x86_64-linux.e2e.driver.testScript")
    from_nix = web_stack.parse_stack(prelude_value(script, web_stack.STACK_VARIABLE))
    # ALICIA as e2e-test/test_script.py defines it (what make e2e runs).
    tree = ast.parse((REPO / "e2e-test/test_script.py").read_text())
    [assignment] = [node for node in tree.body if isinstance(node, ast.Assign)
                    and [getattr(target, "id", None) for target in node.targets] == ["ALICIA"]]
    namespace: dict[str, Any] = {"WebStack": web_stack.WebStack}
    exec(compile(ast.Module([assignment], type_ignores=[]), "test_script.py", "exec"), namespace)
    portable: web_stack.WebStack = namespace["ALICIA"]
    for field in fields(web_stack.WebStack):
        ours, theirs = getattr(from_nix, field.name), getattr(portable, field.name)
        if field.name in ("secrets", "required_extensions"):  # order carries no meaning
            ours, theirs = sorted(ours), sorted(theirs)
        assert ours == theirs, field.name


def test_the_flake_exports_the_library_modules_and_templates() -> None:
    exported = library(
        "{ lib = builtins.attrNames vmtest.lib; "
        "functions = builtins.attrNames vmtest.lib.aarch64-darwin; "
        "modules = builtins.mapAttrs (name: module: baseNameOf module) vmtest.nixosModules; "
        "templates = builtins.mapAttrs (name: t: { path = baseNameOf t.path; welcome = t.welcomeText != \"\"; "
        "  description = t.description != \"\"; }) vmtest.templates; "
        "guests = builtins.mapAttrs (system: l: if system == \"forPkgs\" then null else l.guestSystem) vmtest.lib; }")
    assert exported["lib"] == ["aarch64-darwin", "aarch64-linux", "forPkgs", "x86_64-darwin", "x86_64-linux"]
    assert exported["functions"] == ["guestSystem", "vmValidation", "webStackE2e", "withArtifacts", "wrapTest"]
    assert exported["modules"] == {"e2e-client": "e2e-client.nix", "e2e-server": "e2e-server.nix",
                                   "validation-fixtures": "validation-fixtures.nix"}
    assert exported["templates"] == {
        "e2e": {"path": "e2e", "welcome": True, "description": True},
        "vm-validation": {"path": "vm-validation", "welcome": True, "description": True}}
    assert exported["guests"] == {"aarch64-darwin": "aarch64-linux", "aarch64-linux": "aarch64-linux",
                                  "forPkgs": None, "x86_64-darwin": "x86_64-linux", "x86_64-linux": "x86_64-linux"}


def test_with_artifacts_adds_vmtest_to_the_drivers_python_for_any_test() -> None:
    test = library(
        'let v = vmtest.lib.x86_64-linux.withArtifacts { name = "mine"; nodes.machine = { }; '
        '  testScript = "machine.succeed(\\"true\\")"; extraPythonPackages = ps: [ ps.rich ]; }; in '
        "{ artifacts = v.artifacts.name; interactive = v.driverInteractive.name; script = v.driver.testScript; }")
    assert test == {"artifacts": "mine-artifacts", "interactive": "nixos-test-driver-mine-interactive",
                    "script": 'machine.succeed("true")'}
    # Both lists reach the driver's Python: the test's own and vmtest (the option is a list: merged).
    sets = library(
        'let v = vmtest.lib.x86_64-linux.withArtifacts { name = "mine"; extraPythonPackages = ps: [ ps.rich ]; }; '
        f'ps = (import {NIX / "stub-nixpkgs"} {{ system = "x86_64-linux"; '
        "overlays = [ vmtest.overlays.default ]; }).python3Packages; "
        "in map (f: map (p: p.pname) (f ps)) v.driver.pythonPackageSets")
    assert sorted(sets) == [["rich"], ["vmtest"]]


# Negative controls: a wrong call is a throw naming the function and the argument.

def _error(expression: str) -> str:
    with pytest.raises(EvaluationError) as caught:
        library(expression)
    return str(caught.value)


ADA = '{ modules = [ ]; user = "ada"; }'


@pytest.mark.parametrize(("call", "message"), [
    ("vmtest.lib.x86_64-linux.vmValidation { modules = [ ]; }",
     "vmtest.lib.x86_64-linux.vmValidation: the argument `user` (string: the login user the suites check) is required"),
    ('vmtest.lib.aarch64-darwin.vmValidation { user = "ada"; }',
     "vmtest.lib.aarch64-darwin.vmValidation: the argument `modules` (list: your VM's NixOS modules) is required"),
    ('vmtest.lib.x86_64-linux.vmValidation (' + ADA + ' // { exepct = { }; })',
     "vmtest.lib.x86_64-linux.vmValidation: unknown argument `exepct`; it takes `expect`, `extraPythonPackages`, "
     "`forceAccel`, `globalTimeout`, `modules`, `name`, `specialArgs`, `user`"),
    ('vmtest.lib.x86_64-linux.vmValidation { modules = ./vm.nix; user = "ada"; }',
     "vmtest.lib.x86_64-linux.vmValidation: the argument `modules` (list: your VM's NixOS modules) is a path"),
    ('vmtest.lib.x86_64-linux.vmValidation (' + ADA + ' // { expect.tool = [ "git" ]; })',
     "vmtest.lib.x86_64-linux.vmValidation (expect): unknown argument `tool`"),
    ('vmtest.lib.x86_64-linux.vmValidation (' + ADA + ' // { expect.managedFiles.".vimrc" = 42; })',
     'vmtest.lib.x86_64-linux.vmValidation: expect.managedFiles.".vimrc": a path, a derivation, a string'),
    ('vmtest.lib.x86_64-linux.webStackE2e { app = "alicia"; package = { type = "derivation"; name = "a"; }; }',
     "vmtest.lib.x86_64-linux.webStackE2e: the argument `browserSuite` (package: the browser suite "
     "(bin/e2e-run-browser-tests OUTDIR)) is required"),
    ('vmtest.lib.x86_64-linux.webStackE2e { app = "alicia"; package = "alicia"; '
     'browserSuite = { type = "derivation"; }; }',
     "vmtest.lib.x86_64-linux.webStackE2e: the argument `package` (package: the app package"),
    ("vmtest.lib.x86_64-linux.withArtifacts { nodes = { }; }",
     "vmtest.lib.x86_64-linux.withArtifacts: the test needs a `name`"),
    ("vmtest.lib.x86_64-linux.wrapTest { }",
     "vmtest.lib.x86_64-linux.wrapTest: takes what pkgs.testers.runNixOSTest returns"),
    ("(vmtest.lib.forPkgs (import " + str(NIX / "stub-nixpkgs") + ' { system = "x86_64-freebsd"; })).guestSystem',
     "vmtest.lib.x86_64-freebsd: NixOS tests run on x86_64-linux, aarch64-linux, aarch64-darwin and "
     "x86_64-darwin hosts"),
])
def test_a_wrong_call_is_a_throw_naming_the_argument(call: str, message: str) -> None:
    # Forced as a check would be: through its testScript.
    forced = (f"let r = {call}; in if builtins.isAttrs r && r ? vm-boot then r.vm-boot.driver.testScript "
              "else if builtins.isAttrs r && r ? driver then r.driver.testScript else r")
    assert message in _error(forced)


# Negative control: without the prepended JSON the user's expectations are lost (the suites would
# check vmtest's own VM: user baleen). A copy of the library with the prelude dropped.

def _library_copy(destination: Path) -> Path:
    """The files the flake's library and outputs read, copied (untracked files included)."""
    for relative in ("flake.nix", "lib/nix", "lib/python/package.nix", "tests/vm", "machines", "e2e-test",
                     "templates", "examples"):
        source = REPO / relative
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("node_modules", "__pycache__"))
        else:
            shutil.copy2(source, target)
    return destination


def test_without_the_prelude_adas_expectations_are_lost(tmp_path: Path) -> None:
    copy = _library_copy(tmp_path / "vmtest")
    builder = copy / "lib/nix/vm-validation.nix"
    text = builder.read_text()
    assert "testScript = prelude + script;" in text
    builder.write_text(text.replace("testScript = prelude + script;", "testScript = script;"))
    script: str = consumer("examples/vm-validation", "outputs.checks.x86_64-linux.vm-boot.driver.testScript",
                           vmtest=copy)
    assert "ada" not in script
    with pytest.raises(AssertionError, match="does not start with VMTEST_EXPECTATIONS"):
        profile_of(script)
    # What the suite would then check: the portable runtime's default, vmtest's own VM.
    assert vv.expected_profile(NixOsGuest(), {}).user == "baleen"  # type: ignore[arg-type]


def test_the_prelude_survives_any_text_the_user_expects(tmp_path: Path) -> None:
    """Quotes, backslashes, newlines, tabs, non-ASCII and triple quotes in a dotfile: Nix's JSON of the
    JSON is a Python string literal that reads back exactly."""
    tricky = 'say "hi"\\n\t\'\'\' """ ünï ${x}\nend'
    nix_string = json.dumps(tricky, ensure_ascii=False).replace("${", "\\${")
    script: str = library(
        f'(vmtest.lib.x86_64-linux.vmValidation {{ modules = [ ]; user = "ada"; '
        f'expect.managedFiles.".weird" = {nix_string}; }}).vm-boot.driver.testScript')
    assert profile_of(script).managed_files == {".weird": tricky}


# Real sandbox builds (nix_sandbox.py): a consumer's check through the library, and the consumers'
# browser runners. Named `sandbox` (`-k "not sandbox"` leaves them out of a quick run).

@pytest.fixture(scope="module")
def sandbox_inputs() -> Any:
    from . import nix_sandbox

    return nix_sandbox.store_inputs()


@pytest.fixture(scope="module")
def sandbox_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The library's files and the consumers (untracked files included: they are what is under test)."""
    copy = _library_copy(tmp_path_factory.mktemp("library"))
    for relative in ("lib/python/src", "lib/python/pyproject.toml", "lib/python/tests/__init__.py",
                     "lib/python/tests/conftest.py", "lib/python/tests/unit", "lib/python/tests/recipes"):
        source, target = REPO / relative, copy / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, target)
    return copy


def _library_build(inputs: Any, repo: Path, workdir: Path, attribute: str, driver_status: int = 0) -> Any:
    from . import nix_sandbox

    workdir.mkdir(parents=True, exist_ok=True)
    return nix_sandbox.nix_build(nix_sandbox.SANDBOX_NIX / "library.nix", inputs, workdir,
                                 {"repo": str(repo), "driverStatus": str(driver_status)}, attribute=attribute)


def test_sandbox_adas_check_builds_its_artifacts_and_verdict_with_her_expectations(
        sandbox_inputs: Any, sandbox_repo: Path, tmp_path: Path) -> None:
    from . import nix_sandbox

    verdict = _library_build(sandbox_inputs, sandbox_repo, tmp_path / "pass", "ada-vm-boot")
    assert verdict.succeeded, verdict.log[-4000:]
    try:
        run = verdict.out.resolve()
        assert run.name.endswith("-vm-boot-artifacts") and (run / "driver-exit-status").read_text().strip() == "0"
        # What the driver was given: Ada's expectations, then tests/vm/boot.py (store paths scrubbed).
        script = (run / "test-script.py").read_text()
        assert script.endswith((REPO / "tests/vm/boot.py").read_text())
        expectations = json.loads(prelude_value(script, vv.EXPECTATIONS_VARIABLE))
        assert (expectations["user"], expectations["tools"]) == ("ada", ["git", "tmux", "rg", "make", "gcc"])
        assert expectations["managed_files"][".tmux.conf"]["source"].endswith("-tmux.conf")
    finally:
        nix_sandbox.delete_from_store(verdict.out.resolve())


def test_sandbox_adas_failed_run_fails_its_verdict_naming_the_case(sandbox_inputs: Any, sandbox_repo: Path,
                                                                  tmp_path: Path) -> None:
    from . import nix_sandbox

    artifacts = _library_build(sandbox_inputs, sandbox_repo, tmp_path / "run", "ada-vm-boot-artifacts", 1)
    assert artifacts.succeeded, artifacts.log[-4000:]  # the run always builds ...
    try:
        assert (artifacts.out / "driver-exit-status").read_text().strip() == "1"
        verdict = _library_build(sandbox_inputs, sandbox_repo, tmp_path / "verdict", "ada-vm-boot", 1)
        assert not verdict.succeeded  # ... and its verdict fails, saying how to run it again
        assert "vm-boot: this failed run stays in the Nix store" in verdict.log, verdict.log[-3000:]
    finally:
        nix_sandbox.delete_from_store(artifacts.out)


@pytest.mark.parametrize(("attribute", "log"), [("alicia-browser-runner", "playwright.log"),
                                                ("template-browser-runner", "playwright.log")])
def test_sandbox_the_consumers_browser_runners_build_and_keep_the_contract(
        sandbox_inputs: Any, sandbox_repo: Path, tmp_path: Path, attribute: str, log: str) -> None:
    import subprocess

    from . import nix_sandbox

    build = _library_build(sandbox_inputs, sandbox_repo, tmp_path / "build", attribute)
    assert build.succeeded, build.log[-4000:]  # writeShellApplication: bash -n and shellcheck passed
    try:
        out = tmp_path / "out"
        done = subprocess.run([str(build.out / "bin/e2e-run-browser-tests"), str(out)], capture_output=True,
                              text=True, timeout=120, check=False, env={"PATH": "/nonexistent"})
        # Playwright is an empty stand-in: the suite cannot run, and the runner still writes what the
        # testScript reads, its exit status last.
        assert done.returncode == 127, done
        assert (out / "exit-status").read_text().strip() == "127"
        assert "playwright: command not found" in (out / log).read_text()
        assert (out / "screenshots/browser").is_dir() and (out / "test-results").is_dir()
    finally:
        nix_sandbox.delete_from_store(build.out)


def test_every_argument_is_documented_where_it_is_declared_and_in_the_guide() -> None:
    """Each argument `arguments.check` knows (lib/nix/*.nix) has a comment above it and a row in
    docs/nix-library.md."""
    import re

    guide = (REPO / "docs/nix-library.md").read_text()
    for builder in ("vm-validation.nix", "web-stack-e2e.nix"):
        lines = (REPO / "lib/nix" / builder).read_text().splitlines()
        declared = [(index, match.group(1)) for index, line in enumerate(lines)
                    if (match := re.match(r"\s+(\w+) = \{ kind = \"", line))]
        assert len(declared) >= 8, builder
        for index, name in declared:
            above = lines[index - 1].strip()
            assert above.startswith("#") or re.match(r"\w+ = \{ kind", above), (builder, name)
            assert f"`{name}`" in guide or f"`{name}` (required)" in guide, (builder, name)


def test_this_repos_e2e_checks_run_each_browser_suite_with_its_own_log() -> None:
    # e2e and e2e-ts differ only in the client's runner: the runner contract's two implementations.
    checks = library(
        "let c = vmtest.checks.x86_64-linux; suite = check: { script = check.driver.testScript; "
        "  runner = check.nodes.client.vmtest.e2e.client.browserSuite.name; }; "
        "in { e2e = suite c.e2e; e2e-ts = suite c.e2e-ts; }")
    runners = {name: check["runner"] for name, check in checks.items()}
    assert runners == {"e2e": "alicia-e2e-client-tests-0.1.0", "e2e-ts": "alicia-e2e-client-tests-ts-0.1.0"}
    logs = {name: web_stack.parse_stack(prelude_value(check["script"], web_stack.STACK_VARIABLE)).browser_log
            for name, check in checks.items()}
    assert logs == {"e2e": "pytest.log", "e2e-ts": "playwright.log"}
