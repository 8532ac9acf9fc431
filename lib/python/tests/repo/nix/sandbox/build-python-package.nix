# buildPythonPackage for the real sandbox builds here: the phases nixpkgs' hooks run for a
# `pyproject = true` package, in their order (pkgs/development/interpreters/python/
# mk-python-derivation.nix and hooks/; the commits read are in docs/nix-reference.md):
# pypaBuildPhase, pypaInstallPhase, pythonImportsCheckPhase, pytestCheckPhase.
# An attribute it does not reproduce is an error, not ignored.
{ lib, tools, python3, buildHooks }:
attrs:
let
  known = [ "pname" "version" "pyproject" "src" "build-system" "dependencies" "nativeCheckInputs"
            "checkInputs" "enabledTestPaths" "disabledTestPaths" "disabledTests" "pytestFlags"
            "pythonImportsCheck" "doCheck" "meta" ];
  unknown = builtins.filter (name: !(builtins.elem name known)) (builtins.attrNames attrs);
  doCheck = attrs.doCheck or true;
  checkInputs = lib.optionals doCheck ((attrs.nativeCheckInputs or [ ]) ++ (attrs.checkInputs or [ ]));
  isPython = p: p.pythonModule or false;
  pythonInputs = builtins.filter isPython ((attrs.build-system or [ ]) ++ (attrs.dependencies or [ ]) ++ checkInputs);
  hostInputs = builtins.filter (p: !(isPython p)) checkInputs;
  # Space-separated in the environment, as a derivation without structured attributes passes lists.
  words = name: let values = attrs.${name} or [ ]; in
    if builtins.any (value: builtins.match ".*[[:space:]].*" value != null) values
    then throw "build-python-package.nix: ${name} has an element with a space" else values;
in
if unknown != [ ] then throw "build-python-package.nix does not reproduce ${builtins.concatStringsSep ", " unknown}"
else if !(attrs.pyproject or false) then throw "build-python-package.nix reproduces pyproject = true only"
else (derivation {
  name = "python3.11-${attrs.pname}-${attrs.version}";
  system = builtins.currentSystem;
  builder = "${tools}/bin/bash";
  args = [ ./build-python-package.sh ];
  inherit (attrs) src;
  PATH = lib.makeBinPath ([ tools python3 ] ++ hostInputs);
  PYTHONPATH = builtins.concatStringsSep ":" (map (p: "${p}/${python3.sitePackages}") (pythonInputs ++ [ buildHooks ]));
  pythonImportsCheck = words "pythonImportsCheck";
  enabledTestPaths = words "enabledTestPaths";
  disabledTestPaths = words "disabledTestPaths";
  disabledTests = words "disabledTests";
  pytestFlags = words "pytestFlags";
  doCheck = doCheck && builtins.any (p: p.pname or "" == "pytestCheckHook") checkInputs;
  # Python's setup hook in nixpkgs: wheels cannot hold timestamps before 1980.
  SOURCE_DATE_EPOCH = "315532800";
}) // {
  # What python3.withPackages adds beside the package, as nixpkgs propagates `dependencies`.
  pythonModule = true;
  propagatedPythonInputs = attrs.dependencies or [ ];
}
