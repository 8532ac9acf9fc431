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
  # python3.withPackages: a python3 that finds the chosen packages and what they propagate after
  # any PYTHONPATH it is given (nixpkgs' env adds them as site directories).
  withPackages = select:
    let
      chosen = select pkgs.python3Packages;
      closure = lib.concatMap (p: [ p ] ++ (p.propagatedPythonInputs or [ ])) chosen;
      path = builtins.concatStringsSep ":" (map (p: "${p}/${python3.sitePackages}") closure);
    in
    runCommand "python3-env" { } ''
      mkdir -p $out/bin
      printf '#!%s\nexport PYTHONPATH=${"$"}{PYTHONPATH:+$PYTHONPATH:}%s\nexec %s "$@"\n' \
        ${tools}/bin/bash '${path}' ${python3.interpreter} > $out/bin/python3
      chmod +x $out/bin/python3
    '';
  runtimeShell = "${tools}/bin/bash";
  # pkgs/build-support/trivial-builders/default.nix: a text file into the store, then its check.
  writeTextFile = { name, text, executable ? false, destination ? "", checkPhase ? "" }:
    runCommand name { inherit text executable destination checkPhase; passAsFile = [ "text" ]; } ''
      target=$out$destination
      mkdir -p "$(dirname "$target")"
      cp "$textPath" "$target"
      if [ -n "$executable" ]; then chmod +x "$target"; fi
      eval "$checkPhase"
    '';
  shellDryRun = "${runtimeShell} -n -O extglob";
  writeShellScript = name: text: writeTextFile {
    inherit name;
    executable = true;
    text = "#!${runtimeShell}\n${text}";
    checkPhase = ''${shellDryRun} "$target"'';
  };
  # writeShellApplication: errexit, nounset and pipefail; runtimeInputs first on PATH; checked
  # with bash -n and shellcheck.
  writeShellApplication = { name, text, runtimeInputs ? [ ] }: writeTextFile {
    inherit name;
    executable = true;
    destination = "/bin/${name}";
    text = "#!${runtimeShell}\nset -o errexit\nset -o nounset\nset -o pipefail\n"
      + lib.optionalString (runtimeInputs != [ ]) "\nexport PATH=\"${lib.makeBinPath runtimeInputs}:$PATH\"\n"
      + "\n${text}\n";
    checkPhase = ''
      ${shellDryRun} "$target"
      ${paths.shellcheck}/bin/shellcheck "$target"
    '';
  };
  makeWrapper = runCommand "make-wrapper-hook" { } ''
    mkdir -p $out/nix-support
    cp ${./make-wrapper.sh} $out/nix-support/setup-hook
  '';
  # stdenvNoCC.mkDerivation for a directory `src` and an installPhase (mk-derivation.sh).
  mkDerivation = attrs:
    let
      known = [ "pname" "version" "src" "nativeBuildInputs" "buildInputs" "installPhase" "meta" ];
      unknown = builtins.filter (name: !(builtins.elem name known)) (builtins.attrNames attrs);
    in
    if unknown != [ ] then throw "sandbox mkDerivation does not reproduce ${builtins.concatStringsSep ", " unknown}"
    else derivation {
      name = "${attrs.pname}-${attrs.version}";
      system = builtins.currentSystem;
      builder = runtimeShell;
      args = [ ./mk-derivation.sh ];
      inherit (attrs) src installPhase;
      nativeBuildInputs = attrs.nativeBuildInputs or [ ];
      buildInputs = attrs.buildInputs or [ ];
      PATH = "${tools}/bin";
    };
  # What cannot be made from this machine's files: empty store paths, named as stand-ins.
  standIn = name: runCommand "${name}-stand-in" { } "mkdir -p $out/bin";
  pkgs = {
    inherit lib buildPythonPackage tools runCommand writeShellScript writeShellApplication makeWrapper;
    python3 = python3 // { inherit withPackages; };
    stdenv.hostPlatform = lib.systems.elaborate builtins.currentSystem;
    stdenvNoCC.mkDerivation = mkDerivation;
    stdenv-tools = tools;
    bash = tools;
    coreutils = tools;
    findutils = tools;
    gnugrep = tools;
    postgresql_17 = standIn "postgresql-17" // { withPackages = _: standIn "postgresql-17-env"; };
    playwright-driver.browsers = standIn "playwright-browsers";
    dejavu_fonts = standIn "dejavu-fonts";
    makeFontsConf = { fontDirectories }: runCommand "fonts.conf" {
      text = ''<?xml version="1.0"?><fontconfig>${builtins.concatStringsSep "" (map (d: "<dir>${d}</dir>") fontDirectories)}</fontconfig>'';
    } ''echo "$text" > $out'';
    python3Packages = lib.genAttrs [ "setuptools" "colorama" "junit-xml" "rich" "pytest" "pytestCheckHook" "pyyaml"
      "aiohttp" "psycopg" "playwright" "pytest-playwright" ] pythonPackage // { inherit buildPythonPackage vmtest; };
  } // lib.genAttrs [ "cpio" "procps" "iproute2" "util-linux" "zstd" "gzip" "jq" "curl" "systemd" "shellcheck" ] hostPackage;
  # The e2e suite's packages and the scripts its server runs, as the flake's overlay and the
  # NixOS modules define them (a module is a function: its attributes are read, not merged).
  e2e = import "${toString repo}/e2e-test/nix/packages.nix" { pkgs = pkgs // e2e; };
  # The Alicia check (e2e-test/nix/default.nix) through the library's own builder
  # (lib/nix/web-stack-e2e.nix), whose test module is kept as it is (no driver here): its server
  # node's settings, given to the server role (lib/nix/modules/e2e-server.nix) evaluated by hand.
  e2eTest = import "${toString repo}/e2e-test/nix/default.nix" {
    pkgs = pkgs // e2e;
    vmtestLib.webStackE2e = import "${toString repo}/lib/nix/web-stack-e2e.nix" {
      inherit lib;
      pkgs = pkgs // e2e;
      arguments = import "${toString repo}/lib/nix/arguments.nix" { inherit lib; };
      hostSystem = builtins.currentSystem;
      withArtifacts = test: test;
      forceAccel = import "${toString repo}/lib/nix/force-accel.nix";
    };
  };
  server = (import ../module-eval.nix {
    module = "${toString repo}/lib/nix/modules/e2e-server.nix";
    optionPath = [ "vmtest" "e2e" "server" ];
    # The machines are one of the test module's imports (webStackE2e's nodeKind picks nodes or containers).
    settings = (builtins.head (builtins.filter (m: m ? nodes) e2eTest.imports)).nodes.server.vmtest.e2e.server;
    inherit lib;
    pkgs = pkgs // e2e;
  }).config;
  logCollector = import "${toString repo}/e2e-test/nix/log-collector.nix" { inherit pkgs; };
  vmtest = callPackage (pkgs // pkgs.python3Packages) "${toString repo}/lib/python/package.nix" { };
  # callPackage: the function's named arguments from the set, as nixpkgs' lib/customisation.nix does.
  callPackage = scope: path: overrides:
    let f = import path; in f (builtins.intersectAttrs (builtins.functionArgs f) scope // overrides);
in
{
  inherit pkgs paths callPackage;
  # vmtest as the flake builds it: lib/python/package.nix with a python3Packages scope.
  inherit vmtest;
  inherit (e2e) alicia alicia-mocks alicia-e2e-client-tests;
  alicia-healthcheck = server.systemd.services.alicia.serviceConfig.ExecStartPost;
  collect-logs = builtins.head logCollector.environment.systemPackages;
}
