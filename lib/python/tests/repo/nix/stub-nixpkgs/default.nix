# A stand-in for `import nixpkgs { system; overlays; }`, for evaluating the flake's outputs here
# (flake-outputs.nix). The stub lib (../lib), overlay composition
# (lib.extends, as pkgs/top-level does), pythonPackagesExtensions, callPackage's argument
# matching (builtins.functionArgs). Stubs: every package is { type = "derivation"; name; ... }
# recording what it was given; runNixOSTest records its test module and evaluates no node.
# Any system double works (the flake's Linux and Darwin hosts): stdenv.hostPlatform is the
# stub lib's systems.elaborate of it.
{ system, overlays ? [ ] }:
let
  lib = import ../lib;
  drv = name: attrs: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  } // attrs;
  callWith = scope: fn: overrides:
    let f = if builtins.isFunction fn then fn else import fn;
    in f (builtins.intersectAttrs (builtins.functionArgs f) scope // overrides);
  pythonBase = final: pyFinal: {
    callPackage = callWith (final // pyFinal);
    buildPythonPackage = attrs: drv "python3-${attrs.pname}-${attrs.version}" attrs;
  } // lib.genAttrs [
    "setuptools" "colorama" "junit-xml" "rich" "pytestCheckHook" "pytest" "mypy" "ptpython" "pyyaml"
    "types-pyyaml" "aiohttp" "psycopg" "playwright" "pytest-playwright" "pytest-rerunfailures"
  ] (name: drv "python3-${name}" { pname = name; });
  base = final: {
    inherit lib;
    stdenv.hostPlatform = lib.systems.elaborate system;
    stdenvNoCC.mkDerivation = attrs: drv "${attrs.pname}-${attrs.version}" attrs;
    runCommand = name: env: buildCommand: drv name ({ inherit env buildCommand; } // (env.passthru or { }));
    writeShellScript = name: text: drv name { inherit text; };
    writeShellApplication = attrs: drv attrs.name attrs;
    mkShell = attrs: drv "nix-shell" attrs;
    pythonPackagesExtensions = [ ];
    python3Packages = lib.fix (lib.foldl' (lib.flip lib.extends) (pythonBase final) final.pythonPackagesExtensions);
    python3 = drv "python3" {
      pkgs = final.python3Packages;
      withPackages = select: drv "python3-env" { packages = select final.python3Packages; };
    };
    postgresql_17 = drv "postgresql-17" {
      withPackages = select: drv "postgresql-17-env" { packages = select { pgvector = drv "pgvector" { }; }; };
    };
    playwright-driver = drv "playwright-driver" { browsers = drv "playwright-browsers" { }; };
    pkgsStatic.busybox = drv "busybox-static" { };
    # runNixOSTest takes a test module: an attribute set, a function of the module arguments, or a
    # path to either, with `imports`. The stub flattens them (later attributes win, the lists of
    # extraPythonPackages are kept apart in `pythonPackageSets`), evaluates no node, and records
    # the result as `test`; the driver's name carries the test's, as nixos/lib/testing/driver.nix's.
    testers.runNixOSTest = module:
      let
        load = m: if builtins.isPath m then load (import m)
          else if builtins.isFunction m then m { inherit lib; pkgs = final; config = { }; hostPkgs = final; }
          else m;
        flatten = m: let value = load m; in
          lib.concatMap flatten (value.imports or [ ]) ++ [ (removeAttrs value [ "imports" ]) ];
        modules = flatten module;
        test = lib.foldl' (merged: m: merged // m) { } modules;
        pythonPackageSets = map (m: m.extraPythonPackages) (builtins.filter (m: m ? extraPythonPackages) modules);
      in
      if !(test ? name) then throw "stub runNixOSTest: the test has no name" else {
        config = { inherit (test) name; };
        # The driver derivation has the testScript as an attribute (nixos/lib/testing/driver.nix);
        # the stub's also keeps each extraPythonPackages definition (the option merges them).
        driver = drv "nixos-test-driver-${test.name}" { testScript = test.testScript or ""; inherit pythonPackageSets; };
        driverInteractive = drv "nixos-test-driver-${test.name}-interactive" { };
        nodes = test.nodes or { };
        inherit test;
      };
    callPackage = callWith final;
    writeText = name: text: drv name { inherit text; };
    buildGoModule = attrs: drv "${attrs.pname}-${attrs.version}" attrs;
    buildNpmPackage = attrs: drv "${attrs.pname}-${attrs.version}" attrs;
    importNpmLock = {
      __functor = self: { npmRoot, ... }: drv "npm-deps" { npmRoot = toString npmRoot; };
      npmConfigHook = drv "npm-config-hook" { };
    };
    makeFontsConf = { fontDirectories }: drv "fonts.conf" { inherit fontDirectories; };
    playwright-test = drv "playwright-test" { meta.mainProgram = "playwright"; };
  } // lib.genAttrs [
    "makeWrapper" "curl" "jq" "htop" "coreutils" "bash" "gnugrep" "gzip" "systemd" "openssh" "ruff"
    "qemu" "mmdebstrap" "vde2" "e2fsprogs" "nix-output-monitor" "shellcheck" "cpio" "iproute2" "procps"
    "nix" "chromium" "nodejs" "dejavu_fonts" "git" "tmux" "ripgrep" "gnumake" "gcc" "vim" "findutils"
  ] (name: drv name { });
in
lib.fix (lib.foldl' (lib.flip lib.extends) base overlays)
