"""What the NixOS modules give a person and a browser, read by evaluating the .nix files here.

Nothing of nixpkgs is here: each file is evaluated by ``nix-instantiate --eval`` with the few
functions and packages it touches stubbed, and only the attributes under test are forced (the
modules' option types are nixpkgs', checked only where Nix builds them). ``--readonly-mode``:
nothing is added to the store.

- ``machines/nixos-vm.nix``: ``nixos-rebuild build-vm`` builds ``virtualisation.vmVariant``,
  which must let a person in (a password, SSH on host port 2222) while the configuration the
  test nodes get stays as it was (no password, nothing forwarded).
- ``flake.nix``: ``nixosConfigurations.nixos-vm-*`` must leave qemu-vm.nix to the variant.
- ``e2e-test/nix/packages.nix``: the browser tests run the full Chromium from
  ``playwright-driver.browsers``, as nixpkgs' own playwright-python test does, with fonts.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .repo_checks import REPO

# The parts of nixpkgs' lib the modules below call, with their meaning (lib/options.nix,
# lib/strings.nix); option declarations are returned as written.
STUB_LIB = """{
  mkOption = declaration: declaration;
  types = { str = "str"; listOf = type: "listOf"; };
  removeSuffix = suffix: text:
    let n = builtins.stringLength text; m = builtins.stringLength suffix;
    in if m <= n && builtins.substring (n - m) m text == suffix then builtins.substring 0 (n - m) text else text;
  makeBinPath = packages: "/stub/bin";
}"""
# Where nixos-rebuild build-vm finds its VM when qemu-vm.nix is a module of the system itself.
QEMU_VM = "/nixos/modules/virtualisation/qemu-vm.nix"


def evaluate(expression: str) -> Any:
    """The JSON value of a Nix expression (``nix-instantiate --eval --strict``); fails with Nix's error."""
    done = subprocess.run(["nix-instantiate", "--readonly-mode", "--eval", "--strict", "--json", "-E", expression],
                          capture_output=True, text=True, check=False)
    errors = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("warning:"))
    assert done.returncode == 0, errors
    return json.loads(done.stdout)


def vm_module(module: Path | None = None) -> dict[str, Any]:
    """The VM module's ``config`` as written (user baleen), and the sizing of the test node."""
    module = module or REPO / "machines/nixos-vm.nix"
    value: dict[str, Any] = evaluate(f"""
      let
        lib = {STUB_LIB};
        config.vmtest.vm = {{ user = "baleen"; authorizedKeys = [ "ssh-ed25519 AAAA test" ]; }};
        module = (import {module}) {{ inherit config lib; pkgs = {{ }}; }};
        node = (import {REPO / "tests/vm/node.nix"} "home-manager") {{ }};
      in {{
        variant = module.config.virtualisation.vmVariant;
        user = module.config.users.users.baleen;
        openssh = module.config.services.openssh.settings;
        virtualisation = builtins.attrNames module.config.virtualisation;
        node = node.virtualisation;
      }}""")
    return value


def test_the_vm_variant_lets_a_person_in() -> None:
    variant = vm_module()["variant"]
    assert variant["users"]["users"]["baleen"] == {"initialPassword": "vmtest"}
    assert variant["virtualisation"]["forwardPorts"] == [
        {"from": "host", "host": {"address": "127.0.0.1", "port": 2222}, "guest": {"port": 22}}]
    assert variant["virtualisation"]["graphics"] is False
    # SSH stays as the module has it (key login only): the variant sets no service.
    assert set(variant) == {"users", "virtualisation"}


def test_the_configuration_the_test_nodes_get_is_unchanged() -> None:
    module = vm_module()
    # No password of any kind, and nothing of qemu-vm.nix outside the variant.
    assert module["user"] == {"isNormalUser": True, "extraGroups": ["wheel", "docker"],
                              "openssh": {"authorizedKeys": {"keys": ["ssh-ed25519 AAAA test"]}}}
    assert module["virtualisation"] == ["docker", "vmVariant"]
    assert module["openssh"] == {"PasswordAuthentication": False, "KbdInteractiveAuthentication": False,
                                 "PermitRootLogin": "no"}
    # The node (tests/vm/node.nix) sets no variant of its own, and the variant is sized as it is.
    assert "vmVariant" not in module["node"]
    sizing = {key: module["variant"]["virtualisation"][key] for key in module["node"]}
    assert sizing == module["node"] == {"memorySize": 2048, "cores": 2, "diskSize": 4096}


def test_the_original_module_gives_no_way_in(tmp_path: Path) -> None:
    """Negative control: the module before the variant (no vmVariant: build-vm's VM had no password)."""
    module = tmp_path / "machines/nixos-vm.nix"
    module.parent.mkdir()
    text = (REPO / "machines/nixos-vm.nix").read_text()
    start = text.index("    # What `nixos-rebuild build-vm")
    module.write_text(text[:start] + "  };\n}\n")
    (tmp_path / "machines/keys").symlink_to(REPO / "machines/keys")
    with pytest.raises(AssertionError, match="vmVariant"):
        vm_module(module)


def flake_vm_modules() -> list[str]:
    """The modules of ``nixosConfigurations.nixos-vm-aarch64`` (nixosSystem stubbed): strings as they are,
    paths and inline modules named."""
    modules: list[str] = evaluate(f"""
      let
        nixpkgs = {{ outPath = "/stub/nixpkgs"; lib = {{ nixosSystem = arguments: arguments; }}; }};
        home-manager.nixosModules.home-manager = "home-manager module";
        outputs = (import {REPO / "flake.nix"}).outputs {{ self = outputs; inherit nixpkgs home-manager; }};
        name = module: if builtins.isString module then module
          else if builtins.isPath module then "path " + toString module else "inline module";
      in map name outputs.nixosConfigurations.nixos-vm-aarch64.modules""")
    return modules


def test_the_flake_system_is_the_vm_module() -> None:
    assert f"path {REPO / 'machines/nixos-vm.nix'}" in flake_vm_modules()


def test_build_vm_builds_the_variant() -> None:
    # Importing qemu-vm.nix into nixosConfigurations.nixos-vm-* gives them a system.build.vm of
    # their own (a plain definition), which outranks build-vm.nix's mkDefault of the vmVariant's:
    # `nixos-rebuild build-vm` would never see machines/nixos-vm.nix's vmVariant.
    assert not [module for module in flake_vm_modules() if module.endswith(QEMU_VM)]


def wrapper_settings() -> dict[str, str]:
    """The variables ``e2e-run-browser-tests``'s wrapper sets (alicia-e2e-client-tests, packages stubbed)."""
    install: str = evaluate(f"""
      let
        lib = {STUB_LIB};
        pkgs = {{
          inherit lib;
          python3.withPackages = select: "/stub/python-env";
          stdenvNoCC.mkDerivation = attributes: attributes;
          makeWrapper = "/stub/make-wrapper";
          bash = "/stub/bash";
          coreutils = "/stub/coreutils";
          playwright-driver.browsers = "/stub/playwright-browsers";
          makeFontsConf = {{ fontDirectories }}: "/stub/fonts.conf:" + builtins.concatStringsSep "," fontDirectories;
          dejavu_fonts = "/stub/dejavu-fonts";
        }};
      in (import {REPO / "e2e-test/nix/packages.nix"} {{ inherit pkgs; }}).alicia-e2e-client-tests.installPhase""")
    words = shlex.split(install.replace("\\\n", " "))
    start = words.index("makeWrapper")
    end = words.index("runHook", start)
    arguments = words[start:end]
    return {arguments[i + 1]: arguments[i + 2] for i, word in enumerate(arguments) if word == "--set"}


def test_the_browser_tests_run_the_full_chromium_as_nixpkgs_own_test_does() -> None:
    settings = wrapper_settings()
    # Found where nixos/tests/playwright-python.nix finds it, launched with its channel ("chromium":
    # the full browser, headless) through pytest-playwright's --browser-channel.
    assert settings.get("PLAYWRIGHT_BROWSERS_PATH") == "/stub/playwright-browsers"
    assert shlex.split(settings.get("PYTEST_ADDOPTS", "")) == ["--browser-channel=chromium"]
    assert settings.get("E2E_CHROMIUM") == ""  # no executable_path: Playwright's own from the path above
    # All of DejaVu (the Debian client's fonts-dejavu-core), past the browser wrapper's own fonts.conf.
    assert settings.get("FONTCONFIG_FILE") == "/stub/fonts.conf:/stub/dejavu-fonts"
