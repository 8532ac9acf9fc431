# vm-boot: multi-user.target, no failed unit, architecture, boot time (tests/vm/boot.py).
{ pkgs, vmtest, homeManagerModule }:
pkgs.testers.runNixOSTest {
  name = "vm-boot";
  nodes.vm = import ./node.nix homeManagerModule;
  extraPythonPackages = ps: [ (vmtest ps) ];
  globalTimeout = 1800;
  # The expected `uname -m` is the one fact the script cannot learn from the guest.
  testScript = ''
    EXPECTED_ARCH = "${pkgs.stdenv.hostPlatform.uname.processor}"
  '' + builtins.readFile ./boot.py;
}
