# A stand-in for `import nixpkgs { system; overlays; }`, for evaluating the flake's outputs here
# (flake-outputs.nix). The stub lib (../lib), overlay composition
# (lib.extends, as pkgs/top-level does), pythonPackagesExtensions, callPackage's argument
# matching (builtins.functionArgs). Stubs: every package is { type = "derivation"; name; ... }
# recording what it was given; runNixOSTest records its test module and evaluates no node.
# Any system double works (the flake's Linux and Darwin hosts): stdenv.hostPlatform is the
# stub lib's systems.elaborate of it.
# `revision` is the nixpkgs the stub stands for (one of the support matrix: nixos-25.11, the
# flake's pin, nixos-26.05, nixos-unstable; ./revisions/<name>.nix fixes it for a flake input):
# runNixOSTest takes the test options that revision declares (./testing-options.nix) and refuses
# any other, as nixpkgs' module system does.
{ system, overlays ? [ ], revision ? "nixos-25.11" }:
let
  lib = import ../lib;
  testing = import ./testing-options.nix { inherit revision; };
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
    # runNixOSTest takes a test module: an attribute set, a function of the module arguments
    # (`config`, `options`, `lib`, `pkgs`, `hostPkgs`), or a path to either, with `imports`, and
    # its definitions at the top or under `config`. Every definition must be of an option the
    # revision declares (testing-options.nix), of its type; mkIf, mkDefault and mkForce are
    # looked through. The stub then flattens the modules (later attributes win, the lists of
    # extraPythonPackages are kept apart in `pythonPackageSets`), evaluates no node, and records
    # the result as `test`; the driver's name carries the test's, as nixos/lib/testing/driver.nix's.
    testers.runNixOSTest = module:
      let
        load = m: if builtins.isPath m then load (import m)
          else if builtins.isFunction m then m { inherit lib; inherit (testing) options; pkgs = final; config = test; hostPkgs = final; }
          else m;
        flatten = m: let value = load m; in
          lib.concatMap flatten (value.imports or [ ]) ++ [ (definitions value) ];
        definitions = value:
          if value ? options then throw "stub runNixOSTest: a test module that declares options is not supported"
          else if value ? config then value.config
          else removeAttrs value [ "imports" "_file" "key" ];
        modules = flatten module;
        test = lib.foldl' (merged: m: merged // m) { } (map resolve modules);
        pythonPackageSets = map (m: m.extraPythonPackages) (builtins.filter (m: m ? extraPythonPackages) modules);
        # A definition as its option sees it: mkDefault/mkForce unwrapped, a false mkIf no definition.
        unwrap = value:
          if builtins.isAttrs value && value._type or null == "override" then unwrap value.content
          else if builtins.isAttrs value && value._type or null == "if" then
            (if value.condition then unwrap value.content else null)
          else value;
        resolve = lib.filterAttrs (_: value: unwrap value != null);
        shown = lib.concatStringsSep ".";
        where = "stub nixpkgs (${revision})";
        check = path: declared: defined: builtins.all (name:
          let
            at = path ++ [ name ];
            declaration = declared.${name} or null;
            value = unwrap defined.${name};
            elsewhere = testing.declaring at;
          in
          if value == null then true
          else if declaration == null then
            throw ("${where}: the test option `${shown at}' does not exist: the NixOS test framework of ${revision} "
              + "does not declare it" + (if elsewhere == [ ] then "" else " (${lib.concatStringsSep ", " elsewhere} do)"))
          else if testing.isOption declaration then
            (if declaration.removed or false then throw "${where}: ${declaration.message} (${declaration.from})"
             else if declaration.type.check value then true
             else throw ("${where}: the test option `${shown at}' is not of type ${declaration.type.name} "
               + "(${declaration.from}): it is a ${builtins.typeOf value}"))
          else if builtins.isAttrs value then check at declaration value
          else throw "${where}: `${shown at}' is a set of test options, not a ${builtins.typeOf value}"
        ) (builtins.attrNames defined);
        checked = builtins.all (check [ ] testing.options) modules;
      in
      if !(test ? name) then throw "stub runNixOSTest: the test has no name"
      else if !checked then throw "unreachable"
      else {
        # What runNixOSTest passes through as `config`: the test options as defined (merged).
        config = test;
        # The driver derivation has the testScript as an attribute (nixos/lib/testing/driver.nix);
        # the stub's also keeps each extraPythonPackages definition (the option merges them).
        driver = drv "nixos-test-driver-${test.name}" { testScript = test.testScript or ""; inherit pythonPackageSets; };
        driverInteractive = drv "nixos-test-driver-${test.name}-interactive" { };
        nodes = test.nodes or { };
        containers = test.containers or { };
        inherit test revision;
      }
      # The test's `passthru` on what it returns, as nixos/lib/testing/run.nix adds it to the test
      # derivation (the flake's checks ask `passthru.declaresContainers` of a test with no machine).
      // (test.passthru or { });
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
    "makeWrapper" "curl" "jq" "htop" "coreutils" "bash" "gnugrep" "gzip" "systemd" "openssh" "ruff" "ty"
    "qemu" "mmdebstrap" "vde2" "e2fsprogs" "nix-output-monitor" "shellcheck" "cpio" "iproute2" "procps"
    "nix" "chromium" "nodejs" "dejavu_fonts" "git" "tmux" "ripgrep" "gnumake" "gcc" "vim" "findutils"
  ] (name: drv name { });
in
lib.fix (lib.foldl' (lib.flip lib.extends) base overlays)
