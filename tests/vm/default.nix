# The validation suites as NixOS tests (seed 002): vm-boot, vm-service, vm-integration.
# Each runs tests/vm/<suite>.py, the very testScript the portable runtime runs
# (make test-vm-x86_64 / make test-vm-aarch64), on machines/nixos-vm.nix.
{ pkgs, vmtest, homeManagerModule }:
{
  vm-boot = import ./boot-test.nix { inherit pkgs vmtest homeManagerModule; };
  vm-service = import ./service-test.nix { inherit pkgs vmtest homeManagerModule; };
  vm-integration = import ./integration-test.nix { inherit pkgs vmtest homeManagerModule; };
}
