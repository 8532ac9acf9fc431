# The e2e check: server + client VMs, the shared testScript, vmtest in the driver's Python.
# `pkgs` must carry the flake's overlay (alicia, alicia-mocks, alicia-e2e-client-tests).
# The result is the verdict (it fails when the suite failed); `.artifacts` always builds and
# holds the run's logs, JUnit, screenshots and summary (lib/nix/test-with-artifacts.nix).
{ pkgs, vmtest }:
import ../../lib/nix/test-with-artifacts.nix {
  inherit pkgs vmtest;
  test = pkgs.testers.runNixOSTest {
    name = "alicia-e2e";
    nodes = {
      server = ./server.nix;
      client = ./client.nix;
    };
    # Through extraPythonPackages the testScript imports vmtest (health, logs, migrations, report).
    extraPythonPackages = ps: [ (vmtest ps) ];
    globalTimeout = 3600;
    testScript = builtins.readFile ../test_script.py;
  };
}
