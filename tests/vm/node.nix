# The `vm` node of this repository's validation checks (tests/vm/default.nix): machines/nixos-vm.nix
# with Home Manager, sized for Docker. `homeManagerModule` is home-manager.nixosModules.home-manager
# (a flake input).
homeManagerModule:
{ ... }:
{
  imports = [ ../../machines/nixos-vm.nix homeManagerModule ];
  virtualisation = {
    memorySize = 2048;
    cores = 2;
    diskSize = 4096;
  };
}
