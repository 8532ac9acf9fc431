# What a Python package's package.nix gives buildPythonPackage, for the check-phase rehearsal
# (tests/repo/nix_rehearsal.py). The stub lib (lib/), including lib.fileset, which selects the
# source's files. Stubs: every other argument callPackage would pass (a package is
# { pname = <argument name>; }), buildPythonPackage (returns its attribute set) and
# lib.fileset.toSource (returns the selected files instead of a store path).
{ package }:
let
  lib = import ./lib;
  fileset = lib.fileset // {
    toSource = { root, fileset }: {
      root = toString root;
      files = map toString (lib.fileset.toList fileset);
    };
  };
  stub = name: { pname = name; };
  function = import package;
  given = builtins.mapAttrs (
    name: _:
    if name == "lib" then lib // { inherit fileset; }
    else if name == "buildPythonPackage" then (attrs: attrs)
    else stub name
  ) (builtins.functionArgs function);
  attrs = function given;
  names = packages: map (p: p.pname) packages;
  listAttrs = [ "build-system" "dependencies" "nativeCheckInputs" "checkInputs" "nativeBuildInputs"
                "propagatedBuildInputs" "buildInputs" ];
in
builtins.mapAttrs (
  name: value:
  if builtins.elem name listAttrs then names value
  else if name == "meta" then { }
  else value
) attrs
