# The inputs the flakes evaluated here take, as stubs: nixpkgs (the stub lib, `lib.nixosSystem`
# recording its modules, `legacyPackages.<system>` the stub package set) and Home Manager's NixOS
# module. flake-outputs.nix gives them to this flake, consumer-outputs.nix to a consumer flake.
let
  lib = import ./lib;
  systems = [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" "x86_64-darwin" ];
in
{
  nixpkgs = {
    outPath = ./stub-nixpkgs;
    lib = lib // { nixosSystem = args: { stub = "nixosSystem"; inherit (args) modules; }; };
    legacyPackages = lib.genAttrs systems (system: import ./stub-nixpkgs { inherit system; });
  };
  home-manager.nixosModules.home-manager = { stub = "home-manager module"; };
}
