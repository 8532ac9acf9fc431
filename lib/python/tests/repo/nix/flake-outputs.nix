# The flake's outputs, evaluated here with the stub lib (lib/) and stub packages
# (stub-nixpkgs/): what `nix flake show` would list, without a Nix store or nixpkgs.
# nixpkgs.lib.nixosSystem and the Home Manager module are stubs too (stub-inputs.nix).
# `revision`: the nixpkgs the stubs stand for (stub-nixpkgs/testing-options.nix).
{ flake, revision ? "nixos-25.11" }:
let
  inherit (import ./stub-inputs.nix { inherit revision; }) nixpkgs home-manager;
  outputs = (import (flake + "/flake.nix")).outputs { inherit self nixpkgs home-manager; };
  self = outputs // { outPath = flake; };
in
outputs
