# The validation suites as NixOS tests (seed 002): vm-boot, vm-service, vm-integration.
# Each runs tests/vm/<suite>.py, the very testScript the portable runtime runs
# (make test-vm-x86_64 / make test-vm-aarch64), on machines/nixos-vm.nix.
# Each is a verdict that fails when its suite failed; `.artifacts` always builds and holds the
# run's logs and JUnit (lib/nix/test-with-artifacts.nix).
{ pkgs, vmtest, homeManagerModule }:
let
  withArtifacts = file: import ../../lib/nix/test-with-artifacts.nix {
    inherit pkgs vmtest;
    test = import file { inherit pkgs vmtest homeManagerModule; };
  };
in
{
  vm-boot = withArtifacts ./boot-test.nix;
  vm-service = withArtifacts ./service-test.nix;
  vm-integration = withArtifacts ./integration-test.nix;
}
