# vmtest as a Python package, for any Python package set: the flake builds it for the test
# driver's Python (extraPythonPackages = ps: [ (vmtest ps) ]) and for the devShell.
# nixos-test-driver is deliberately absent: propagating it next to the driver's own copy
# fails pythonCatchConflictsPhase.
# The check phase runs tests/unit only: tests that need nothing but the inputs declared here
# and the files of `src`. Repository-wide checks (tests/repo: the flake, the testScripts, the
# .nix files) and the VM tests (tests/integration) run in `make test`.
# tests/repo/test_nix_sandbox.py builds this very package, check phase included, in a real Nix
# sandbox (Debian's nix-bin; inputs made into store paths from the host's files).
{
  lib,
  stdenv,
  buildPythonPackage,
  setuptools,
  colorama,
  junit-xml,
  rich,
  pytestCheckHook,
  cpio,
  iproute2,
  procps,
}:
buildPythonPackage {
  pname = "vmtest";
  version = "0.1.0";
  pyproject = true;
  src = lib.fileset.toSource {
    root = ./.;
    fileset = lib.fileset.unions [
      ./pyproject.toml
      ./src
      ./tests/__init__.py
      ./tests/conftest.py
      ./tests/unit
      ./tests/recipes
    ];
  };
  build-system = [ setuptools ];
  dependencies = [ colorama junit-xml rich ];
  # cpio reads back the initramfs writer's archives; ss (iproute2) and pgrep (procps) are what
  # the guest-side probes and the journal-reader check call.
  # On a Mac (the test driver of checks.*-darwin.vm-*: docs/nix-library.md) the unit tests, which
  # test the Linux-only portable runtime, do not run, and iproute2 (Linux's) is not asked for.
  doCheck = stdenv.hostPlatform.isLinux;
  nativeCheckInputs = [ pytestCheckHook cpio procps ] ++ lib.optional stdenv.hostPlatform.isLinux iproute2;
  enabledTestPaths = [ "tests/unit" ];
  pythonImportsCheck = [
    "vmtest" "vmtest.health" "vmtest.logs" "vmtest.migrations" "vmtest.reporting.report" "vmtest.guest_results"
    "vmtest.progress.live" "vmtest.checkpoint_block"
  ];
  meta = {
    description = "Helpers for NixOS test-driver testScripts, and a portable QEMU runtime";
    license = lib.licenses.mit;
  };
}
