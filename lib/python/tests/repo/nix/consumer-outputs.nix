# A consumer flake's outputs (a template or an example), evaluated here as flake-outputs.nix
# evaluates this one: its `vmtest` input is this repository (`vmtest`, evaluated with the stubs,
# as `--override-input vmtest path:.` would give it), its other inputs the stubs of
# stub-inputs.nix. An input the stubs do not have is an error naming it. `revision`: the nixpkgs
# both flakes get (vmtest's follows the consumer's, as the templates say).
{ flake, vmtest, revision ? "nixos-25.11" }:
let
  stubs = import ./stub-inputs.nix { inherit revision; };
  vmtestOutputs = import ./flake-outputs.nix { flake = vmtest; inherit revision; };
  declared = import (flake + "/flake.nix");
  available = stubs // { vmtest = vmtestOutputs // { outPath = vmtest; }; };
  wanted = builtins.attrNames (declared.inputs or { });
  unknown = builtins.filter (name: !(available ? ${name})) wanted;
  inputs = builtins.listToAttrs (map (name: { inherit name; value = available.${name}; }) wanted);
  outputs = declared.outputs (inputs // { inherit self; });
  self = outputs // { outPath = flake; inherit inputs; };
in
if unknown != [ ] then throw "consumer-outputs.nix: no stub for the input(s) ${toString unknown}"
else outputs
