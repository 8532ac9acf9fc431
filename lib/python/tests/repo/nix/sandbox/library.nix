# vmtest's Nix library (lib/nix/default.nix) built in the real sandbox here, as a consumer calls it:
# examples/vm-validation's checks (lib.vmValidation with Ada's arguments: the prelude, the
# artifacts and the verdict) and examples/e2e's and templates/e2e's browser runners. No VM boots:
# runNixOSTest is a stand-in whose driver copies the testScript it was given into the run's
# output directory and writes a JUnit file, then exits with `driverStatus`.
{ inputsFile, repo, driverStatus ? 0 }:
let
  sandbox = import ./. { inherit inputsFile repo; };
  inherit (sandbox) pkgs;
  inherit (pkgs) lib;
  system = builtins.currentSystem;
  # runNixOSTest's argument is a test module (here: attribute sets and their imports).
  flatten = module: lib.concatMap flatten (module.imports or [ ]) ++ [ (removeAttrs module [ "imports" ]) ];
  runNixOSTest = module:
    let
      test = lib.foldl' (merged: m: merged // m) { } (flatten module);
      driver = pkgs.runCommand "nixos-test-driver-${test.name}"
        { inherit (test) testScript; passAsFile = [ "testScript" ]; }
        ''
          mkdir -p $out/bin
          cp "$testScriptPath" $out/test-script
          cat > $out/bin/nixos-test-driver <<DRIVER
          #!${pkgs.tools}/bin/bash
          [ "\$1" = -o ] || exit 2
          cp $out/test-script "\$2/test-script.py"
          echo '<testsuite name="${test.name}"><testcase name="the testScript reached the driver"/></testsuite>' > "\$2/junit.xml"
          exit ${toString driverStatus}
          DRIVER
          chmod +x $out/bin/nixos-test-driver
        '';
    in
    {
      config.name = test.name;
      inherit driver;
      driverInteractive = driver;
      nodes = test.nodes or { };
    };
  # The verdict imports vmtest; its unit tests are test_nix_sandbox.py's business: built here
  # without its check phase.
  vmtest = sandbox.callPackage (pkgs // pkgs.python3Packages) "${toString repo}/lib/python/package.nix" {
    buildPythonPackage = attrs: pkgs.buildPythonPackage (attrs // { doCheck = false; });
  };
  python3 = pkgs.python3 // {
    withPackages = select: pkgs.python3.withPackages (ps: select (ps // { inherit vmtest; }));
  };
  library = import "${toString repo}/lib/nix" {
    pkgs = pkgs // { inherit python3; testers = { inherit runNixOSTest; }; };
  };
  # A consumer flake's outputs with its vmtest input this library (every host it names, here all
  # built on this one) and stub nixpkgs/Home Manager inputs (nothing of theirs is built here).
  outputsOf = flake:
    let
      self = outputs // { outPath = "${toString repo}/${flake}"; };
      outputs = (import "${toString repo}/${flake}/flake.nix").outputs {
        inherit self;
        nixpkgs.lib = lib // { nixosSystem = args: args; };
        home-manager.nixosModules.home-manager = { };
        vmtest.lib = lib.genAttrs [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ] (_: library);
      };
    in
    outputs;
  # The browser runners as the consumers' callPackage gives them their inputs; Playwright
  # (nixpkgs' playwright-test) is an empty stand-in: the runner runs, the tests cannot.
  runner = path: sandbox.callPackage
    (pkgs // { playwright-test = pkgs.runCommand "playwright-test-stand-in" { } "mkdir -p $out/bin"; })
    "${toString repo}/${path}" { };
  ada = (outputsOf "examples/vm-validation").checks.x86_64-linux;
in
{
  ada-vm-boot = ada.vm-boot;
  ada-vm-boot-artifacts = ada.vm-boot.artifacts;
  ada-vm-integration = ada.vm-integration;
  alicia-browser-runner = runner "examples/e2e/nix/browser-tests.nix";
  template-browser-runner = runner "templates/e2e/browser-suite.nix";
}
