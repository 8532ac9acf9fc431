# vmtest as a Python package, for any Python package set: the flake builds it for the test
# driver's Python (extraPythonPackages = ps: [ (vmtest ps) ]) and for the devShell.
# nixos-test-driver is deliberately absent: propagating it next to the driver's own copy
# fails pythonCatchConflictsPhase. The unit tests run in the check phase; the VM tests
# need QEMU and are run by `make test` / the vm checks instead.
{
  lib,
  buildPythonPackage,
  setuptools,
  colorama,
  junit-xml,
  pytestCheckHook,
}:
buildPythonPackage {
  pname = "vmtest";
  version = "0.1.0";
  pyproject = true;
  src = lib.fileset.toSource {
    root = ./.;
    fileset = lib.fileset.unions [ ./pyproject.toml ./src ./tests ];
  };
  build-system = [ setuptools ];
  dependencies = [ colorama junit-xml ];
  nativeCheckInputs = [ pytestCheckHook ];
  enabledTestPaths = [ "tests/unit" ];
  pythonImportsCheck = [ "vmtest" "vmtest.health" "vmtest.logs" "vmtest.migrations" "vmtest.report" ];
  meta = {
    description = "Helpers for NixOS test-driver testScripts, and a portable QEMU runtime";
    license = lib.licenses.mit;
  };
}
