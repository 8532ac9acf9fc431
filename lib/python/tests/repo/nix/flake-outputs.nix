# The flake's outputs, evaluated here with the stub lib (lib/) and stub packages
# (stub-nixpkgs/): what `nix flake show` would list, without a Nix store or nixpkgs.
# nixpkgs.lib.nixosSystem and the Home Manager module are stubs too.
{ flake }:
let
  lib = import ./lib;
  nixpkgs = {
    outPath = ./stub-nixpkgs;
    lib = lib // { nixosSystem = args: { stub = "nixosSystem"; inherit (args) modules; }; };
  };
  home-manager.nixosModules.home-manager = { stub = "home-manager module"; };
  outputs = (import (flake + "/flake.nix")).outputs { inherit self nixpkgs home-manager; };
  self = outputs // { outPath = flake; };
in
outputs
