# The package set for real sandbox builds here (tests/repo/nix_sandbox.py): no nixpkgs, so every
# input is a store path made from this machine's own files (inputsFile: JSON of name -> path), and
# nixpkgs' builders this repository calls are written here after reading them (see
# docs/nix-reference.md, "Real sandbox builds"). `repo` is a copy of the files git tracks, as a
# flake's source holds them.
{ inputsFile, repo ? null }:
let
  lib = import ../lib;
  paths = builtins.mapAttrs (_: builtins.storePath) (builtins.fromJSON (builtins.readFile inputsFile));
  tools = paths.stdenv-tools;
  python3 = {
    outPath = paths.python3;
    sitePackages = "lib/python3.11/site-packages";
    interpreter = "${paths.python3}/bin/python3";
  };
  pythonPackage = name: {
    pname = name;
    pythonModule = true;
    outPath = paths."python3-${name}";
  };
  hostPackage = name: { pname = name; outPath = paths.${name}; };
  buildPythonPackage = import ./build-python-package.nix {
    inherit lib tools python3;
    buildHooks = pythonPackage "build-hooks";
  };
  # runCommand as nixpkgs' trivial builders give it (stdenv.mkDerivation with a buildCommand):
  # stdenv's PATH and shell options; `passthru` and `meta` stay out of the derivation.
  runCommand = name: env: buildCommand:
    let
      drv = derivation (removeAttrs env [ "passthru" "meta" ] // {
        inherit name buildCommand;
        system = builtins.currentSystem;
        builder = "${tools}/bin/bash";
        args = [ ./run-command.sh ];
        PATH = "${tools}/bin";
      });
    in
    drv // (env.passthru or { });
  # python3.withPackages: a python3 whose PYTHONPATH holds the chosen packages and what they propagate.
  withPackages = select:
    let
      chosen = select pkgs.python3Packages;
      closure = lib.concatMap (p: [ p ] ++ (p.propagatedPythonInputs or [ ])) chosen;
      path = builtins.concatStringsSep ":" (map (p: "${p}/${python3.sitePackages}") closure);
    in
    runCommand "python3-env" { } ''
      mkdir -p $out/bin
      printf '#!%s\nexport PYTHONPATH=%s\nexec %s "$@"\n' ${tools}/bin/bash '${path}' ${python3.interpreter} > $out/bin/python3
      chmod +x $out/bin/python3
    '';
  pkgs = {
    inherit lib buildPythonPackage tools runCommand;
    python3 = python3 // { inherit withPackages; };
    stdenv.hostPlatform = lib.systems.elaborate builtins.currentSystem;
    stdenv-tools = tools;
    python3Packages = lib.genAttrs [ "setuptools" "colorama" "junit-xml" "rich" "pytest" "pytestCheckHook" "pyyaml" ]
      pythonPackage // { inherit buildPythonPackage vmtest; };
  } // lib.genAttrs [ "cpio" "procps" "iproute2" "util-linux" "zstd" "gzip" "jq" "curl" ] hostPackage;
  vmtest = callPackage (pkgs // pkgs.python3Packages) "${toString repo}/lib/python/package.nix" { };
  # callPackage: the function's named arguments from the set, as nixpkgs' lib/customisation.nix does.
  callPackage = scope: path: overrides:
    let f = import path; in f (builtins.intersectAttrs (builtins.functionArgs f) scope // overrides);
in
{
  inherit pkgs paths;
  # vmtest as the flake builds it: lib/python/package.nix with a python3Packages scope.
  inherit vmtest;
}
