# vm-service: sshd, docker (an image imported locally), groups, Home Manager (tests/vm/services.py).
{ pkgs, vmtest, homeManagerModule }:
pkgs.testers.runNixOSTest {
  name = "vm-service";
  nodes.vm = import ./node.nix homeManagerModule;
  extraPythonPackages = ps: [ (vmtest ps) ];
  globalTimeout = 1800;
  testScript = builtins.readFile ./services.py;
}
