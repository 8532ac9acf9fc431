# vm-integration: key login from a peer on the VLAN, dev tools over SSH, name resolution,
# no route off the machine (tests/vm/integration.py).
{ pkgs, vmtest, homeManagerModule }:
pkgs.testers.runNixOSTest {
  name = "vm-integration";
  nodes = {
    vm = import ./node.nix homeManagerModule;
    peer = { pkgs, ... }: {
      environment.systemPackages = [ pkgs.openssh ];
      # The private half of the test key (public on purpose: it only opens test VMs).
      environment.etc."vmtest/test_ed25519" = {
        source = ../../machines/keys/test_ed25519;
        mode = "0600";
      };
      documentation.enable = false;
      system.stateVersion = "25.11";
    };
  };
  extraPythonPackages = ps: [ (vmtest ps) ];
  globalTimeout = 1800;
  testScript = builtins.readFile ./integration.py;
}
