# A stand-in for `import nixpkgs { system; overlays; }`, for evaluating the flake's outputs here
# (flake-outputs.nix). The stub lib (../lib), overlay composition
# (lib.extends, as pkgs/top-level does), pythonPackagesExtensions, callPackage's argument
# matching (builtins.functionArgs). Stubs: every package is { type = "derivation"; name; ... }
# recording what it was given; runNixOSTest records its arguments and evaluates no node.
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
    testers.runNixOSTest = args: {
      config = { inherit (args) name; };
      driver = drv "nixos-test-driver-${args.name}" { };
      driverInteractive = drv "nixos-test-driver-${args.name}-interactive" { };
      test = args;
    };
  } // lib.genAttrs [
    "makeWrapper" "curl" "jq" "htop" "coreutils" "bash" "gnugrep" "gzip" "systemd" "openssh" "ruff"
    "qemu" "mmdebstrap" "vde2" "e2fsprogs" "nix-output-monitor" "shellcheck" "cpio" "iproute2" "procps"
    "nix" "chromium"
  ] (name: drv name { });
in
lib.fix (lib.foldl' (lib.flip lib.extends) base overlays)
