# The inputs the flakes evaluated here take, as stubs: nixpkgs (the stub lib, `lib.nixosSystem`
# recording its modules, `legacyPackages.<system>` the stub package set) and Home Manager's NixOS
# module. flake-outputs.nix gives them to this flake, consumer-outputs.nix to a consumer flake.
# `revision` is the nixpkgs the stub stands for, as `--override-input nixpkgs
# github:NixOS/nixpkgs/<revision>` gives it (stub-nixpkgs/testing-options.nix); the default is
# the flake's pin.
{ revision ? "nixos-25.11" }:
let
  lib = import ./lib;
  systems = [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" "x86_64-darwin" ];
  # `import nixpkgs { … }` imports outPath: the file that fixes the revision.
  outPath = ./stub-nixpkgs/revisions + "/${revision}.nix";
in
if !(builtins.pathExists outPath) then throw "stub-inputs.nix: no stub nixpkgs for the revision ${revision}"
else {
  nixpkgs = {
    inherit outPath;
    lib = lib // { nixosSystem = args: { stub = "nixosSystem"; inherit (args) modules; }; };
    legacyPackages = lib.genAttrs systems (system: import outPath { inherit system; });
  };
  home-manager.nixosModules.home-manager = { stub = "home-manager module"; };
}
