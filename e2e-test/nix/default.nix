# The e2e check: server + client VMs, the shared testScript, vmtest in the driver's Python.
# `pkgs` must carry the flake's overlay (alicia, alicia-mocks, alicia-e2e-client-tests).
{ pkgs, vmtest }:
pkgs.testers.runNixOSTest {
  name = "alicia-e2e";
  nodes = {
    server = ./server.nix;
    client = ./client.nix;
  };
  # Through extraPythonPackages the testScript imports vmtest (health, logs, migrations, report).
  extraPythonPackages = ps: [ (vmtest ps) ];
  globalTimeout = 3600;
  testScript = builtins.readFile ../test_script.py;
}
