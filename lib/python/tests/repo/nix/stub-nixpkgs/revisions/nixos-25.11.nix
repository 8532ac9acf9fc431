# The stub nixpkgs standing for nixos-25.11 (../testing-options.nix): what a flake input `nixpkgs`
# imports (`import nixpkgs { system; overlays; }`) in ../../stub-inputs.nix.
args: import ../. (args // { revision = "nixos-25.11"; })
