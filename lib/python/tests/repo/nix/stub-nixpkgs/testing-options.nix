# The top-level options of the NixOS test framework (what a test module given to
# testers.runNixOSTest may define), as each nixpkgs revision of the support matrix declares
# them: the names, and for each a type the stub checks a definition against. Written here from
# reading nixpkgs' nixos/lib/testing/*.nix with the search tool; no nixpkgs code is carried into
# this repository. docs/nix-reference.md ("The test framework per revision") names every file
# and the commit it was read at; the `from` of each option below says which of those it is.
#
# The stub runNixOSTest (./default.nix) refuses a definition of an option its revision does not
# declare, or of one the revision removed, as nixpkgs' module system does ("The option `…'
# does not exist"), so evaluating a test module under each revision is a real check of the
# names. Option types are names and a predicate only: nixpkgs' merging is not reproduced.
{ revision }:
let
  inherit (builtins) all attrNames attrValues concatStringsSep elem filter isAttrs isFunction isPath isString;

  type = name: check: { inherit name check; };
  isModule = value: isAttrs value || isFunction value || isPath value;
  types = {
    str = type "string" isString;
    int = type "signed integer" builtins.isInt;
    bool = type "boolean" builtins.isBool;
    raw = type "raw value" (_: true);
    attrs = type "attribute set" isAttrs;
    package = type "package" (value: isAttrs value && value.type or null == "derivation");
    module = type "module" isModule;
    modules = type "attribute set of modules" (value: isAttrs value && all isModule (attrValues value));
    packagesFunction = type "function that evaluates to a(n) list of package" isFunction;
    script = type "string or function that evaluates to a(n) string" (value: isString value || isFunction value);
    strings = type "list of string" (value: builtins.isList value && all isString value);
    logLevel = type "one of \"debug\", \"info\", \"warning\", \"error\"" (value: elem value [ "debug" "info" "warning" "error" ]);
  };

  # Where each declaration was read (the commits are in docs/nix-reference.md).
  files = {
    driver2025 = "nixos/lib/testing/driver.nix (0b73a0c2)";
    driver2026 = "nixos/lib/testing/driver.nix (01fbdeef)";
    nodes2025 = "nixos/lib/testing/nodes.nix (5b19d695)";
    nodes2026 = "nixos/lib/testing/nodes.nix (003d5816)";
    nodesUnstable = "nixos/lib/testing/nodes.nix (stored copy 51813545436)";
    configuration = "nixos/lib/testing/driver-configuration.nix (066e2231)";
    run = "nixos/lib/testing/run.nix (4c53d514)";
    testScript = "nixos/lib/testing/testScript.nix (00f5ae06)";
    name = "nixos/lib/testing/name.nix (127e5765)";
    interactive = "nixos/lib/testing/interactive.nix (0db57dc9)";
    meta = "nixos/lib/testing/meta.nix (0b102d0b)";
    legacy = "nixos/lib/testing/legacy.nix (5e3666d1)";
    callTest = "nixos/lib/testing/call-test.nix (3168c0c0)";
  };
  option = type: from: { _type = "option"; inherit type from; };
  removed = message: from: { _type = "option"; removed = true; inherit message from; };

  # Declaration trees merged: a group (an attribute set that is not an option) merges with a group.
  isOption = value: isAttrs value && value._type or null == "option";
  merge = left: right: left // builtins.mapAttrs (name: value:
    if left ? ${name} && !(isOption value) && !(isOption left.${name}) then merge left.${name} value else value) right;

  # Every revision of the matrix declares these (names unchanged since the 2025 files); `nodesFile`
  # and `driverFile` say which revision's nodes.nix and driver.nix they were read in.
  common = { nodesFile, driverFile }: {
    name = option types.str files.name;
    testScript = option types.script files.testScript;
    testScriptString = option types.str files.testScript;
    includeTestScriptReferences = option types.bool files.testScript;
    withoutTestScriptReferences = option types.module files.testScript;
    nodes = option types.modules nodesFile;
    defaults = option types.module nodesFile;
    extraBaseModules = option types.module nodesFile;
    node = {
      type = option types.raw nodesFile;
      pkgs = option types.raw nodesFile;
      pkgsReadOnly = option types.bool nodesFile;
      specialArgs = option types.attrs nodesFile;
    };
    nodesCompat = option types.raw nodesFile;
    sshBackdoor.enable = option types.bool nodesFile;
    driver = option types.package driverFile;
    hostPkgs = option types.raw driverFile;
    qemu.package = option types.package driverFile;
    # Seconds, an int in every revision read (the 2026 JSON configuration's global_timeout is
    # types.ints.unsigned, which the driver reads into a timedelta).
    globalTimeout = option types.int driverFile;
    enableOCR = option types.bool driverFile;
    extraPythonPackages = option types.packagesFunction driverFile;
    extraDriverArgs = option types.strings driverFile;
    skipLint = option types.bool driverFile;
    skipTypeCheck = option types.bool driverFile;
    passthru = option types.attrs files.run;
    enableDebugHook = option types.bool files.run;
    rawTestDerivation = option types.package files.run;
    rawTestDerivationArg = option types.raw files.run;
    test = option types.package files.run;
    interactive = option types.module files.interactive;
    meta = option types.attrs files.meta;
    machine = option types.raw files.legacy;
    result = option types.raw files.callTest;
  };

  # From nixos-26.05: nspawn containers beside the VMs (#478109), the JSON driver configuration
  # (#510385), qemu.forceAccel (#509553), the driver's log level.
  containersAndConfiguration = nodesFile: {
    containers = option types.modules nodesFile;
    container.type = option types.raw nodesFile;
    containerDefaults = option types.module nodesFile;
    nodeDefaults = option types.module nodesFile;
    extraBaseNodeModules = option types.module nodesFile;
    allMachines = option types.raw nodesFile;
    qemu.forceAccel = option types.bool files.driver2026;
    logLevel = option types.logLevel files.driver2026;
    pythonTestDriverPackage = option types.package files.driver2026;
    driverConfiguration = option types.raw files.configuration;
    driverConfigurationFile = option types.raw files.configuration;
  };
  in2026 = nodesFile: merge (common { inherit nodesFile; driverFile = files.driver2026; }) (containersAndConfiguration nodesFile);

  declared = {
    "nixos-25.11" = merge (common { nodesFile = files.nodes2025; driverFile = files.driver2025; }) {
      sshBackdoor.vsockOffset = option types.int files.nodes2025;
    };
    "nixos-26.05" = merge (in2026 files.nodes2026) {
      sshBackdoor.vsockOffset = option types.int files.nodes2026;
    };
    # The SSH backdoor over vhost-device-vsock: vsockOffset is a removed option (mkRemovedOptionModule).
    "nixos-unstable" = merge (in2026 files.nodesUnstable) {
      sshBackdoor.vsockOffset = removed
        "The option `sshBackdoor.vsockOffset' has been removed from the testing framework: it is not needed any more."
        files.nodesUnstable;
    };
  };

  # The revisions that declare an option path (for the message about one this revision lacks).
  declaring = path: filter (name:
    let found = builtins.foldl' (set: part: if set != null && isAttrs set && !(isOption set) then set.${part} or null else null)
      declared.${name} path;
    in found != null && !(found ? removed)) (attrNames declared);
in
if !(declared ? ${revision}) then
  throw "stub nixpkgs: no revision ${revision}; the stub stands for ${concatStringsSep ", " (attrNames declared)}"
else {
  inherit revision;
  revisions = attrNames declared;
  options = declared.${revision};
  inherit declaring isOption;
}
