# vmtest's Nix library: the flake's `lib.<system>` (this file with that system's nixpkgs and
# vmtest's overlay) and `lib.forPkgs pkgs` (this file with a package set of your own).
# docs/nix-library.md documents every function with an example; each argument is documented
# where the function is defined (vm-validation.nix, web-stack-e2e.nix, below).
#
# `<system>` is the host that runs the test driver and QEMU: x86_64-linux or aarch64-linux, or a
# Mac (aarch64-darwin, x86_64-darwin), whose VMs are Linux guests of the same CPU built by a
# Linux builder (docs/nix-library.md, "On a Mac"). nixpkgs pairs them the same way
# (nixos/lib/testing/nodes.nix) and testers.runNixOSTest evaluates the nodes with `pkgsLinux`.
{ pkgs }:
let
  inherit (pkgs) lib;
  arguments = import ./arguments.nix { inherit lib; };
  hostSystem = pkgs.stdenv.hostPlatform.system;
  # The guest of this host, as nixpkgs' testing framework chooses it.
  guestSystem =
    if pkgs.stdenv.hostPlatform.isLinux then hostSystem
    else {
      x86_64-darwin = "x86_64-linux";
      aarch64-darwin = "aarch64-linux";
    }.${hostSystem} or (throw ("vmtest.lib.${hostSystem}: NixOS tests run on x86_64-linux, aarch64-linux, "
      + "aarch64-darwin and x86_64-darwin hosts, not ${hostSystem}"));
  # vmtest for the driver's Python: the overlay's when the package set has it, else built here.
  vmtestPython = ps: ps.vmtest or (ps.callPackage ../python/package.nix { });

  # withArtifacts TEST: TEST is what pkgs.testers.runNixOSTest takes (a test module: an attribute
  # set `{ name; nodes; testScript; … }`, a function returning one, or a path to either). vmtest is
  # added to the driver's Python (`from vmtest import health, logs, report` in the testScript).
  # Returns the verdict: a derivation that fails exactly when the run failed, naming the failed
  # cases, and otherwise links to the run's files; `.artifacts` is the run itself (always builds,
  # keeps driver-exit-status, logs, JUnit), `.driver` and `.driverInteractive` are the test's.
  withArtifacts = test:
    if !(builtins.isAttrs test || builtins.isFunction test || builtins.isPath test) then
      throw "vmtest.lib.${hostSystem}.withArtifacts: takes the argument of pkgs.testers.runNixOSTest (a test module), got a ${builtins.typeOf test}"
    else if builtins.isAttrs test && !(test ? name) && !(test ? imports) then
      throw "vmtest.lib.${hostSystem}.withArtifacts: the test needs a `name` (the artifacts are `<name>-artifacts`)"
    else
      wrapTest (pkgs.testers.runNixOSTest {
        imports = [ test ];
        # A list option: this adds vmtest to what the test's own extraPythonPackages gives.
        extraPythonPackages = ps: [ (vmtestPython ps) ];
      });

  # wrapTest RESULT: the same for a test you already built with runNixOSTest (or nixosTest).
  wrapTest = test:
    if !(test ? driver && test ? driverInteractive && test ? config) then
      throw "vmtest.lib.${hostSystem}.wrapTest: takes what pkgs.testers.runNixOSTest returns (it has driver, driverInteractive and config)"
    else
      import ./test-with-artifacts.nix { inherit pkgs test; vmtest = vmtestPython; };

  # forceAccel FUNCTION: the test module that makes QEMU fail instead of falling back to TCG (./force-accel.nix).
  forceAccel = import ./force-accel.nix;

  context = { inherit pkgs lib arguments hostSystem guestSystem withArtifacts forceAccel; };
in
{
  inherit withArtifacts wrapTest guestSystem;
  vmValidation = import ./vm-validation.nix context;
  webStackE2e = import ./web-stack-e2e.nix context;
}
