# lib.<system>.vmValidation: your own NixOS VM through vmtest's three validation suites (boot,
# services, integration: tests/vm/*.py, the testScripts `make test-vm-*` runs here), each a
# verdict with `.artifacts` and `.driverInteractive` (lib/nix/test-with-artifacts.nix).
#
#   checks.aarch64-darwin = vmtest.lib.aarch64-darwin.vmValidation {
#     modules = [ home-manager.nixosModules.home-manager ./vm.nix ];
#     user = "ada";
#     expect = { tools = [ "git" "tmux" ]; managedFiles.".tmux.conf" = ./dotfiles/tmux.conf; };
#   };
#
# returns { vm-boot; vm-service; vm-integration; } (the prefix is `name`).
#
# What is expected reaches the testScripts as JSON: each suite's testScript starts with
# `VMTEST_EXPECTATIONS = "<json>"`, which vmtest.suites.vm_validation.expected_profile reads
# (keys: version, user, arch, services, groups, tools, docker, activation_unit, managed_root,
# managed_files, boot_budget_kvm_seconds). A managed file's expected content is either its text
# or a store path the testScript reads on the driver's host (so a derivation's output works
# without import-from-derivation).
#
# The VM node is your modules, plus nixosModules.validation-fixtures (the test SSH key for your
# user and, with docker, a registry-free image) and a size for Docker (mkDefault: your modules
# win). The integration suite adds a `peer` node holding the test key's private half.
{ pkgs, lib, arguments, hostSystem, guestSystem, withArtifacts, forceAccel, ... }:
let
  function = "vmtest.lib.${hostSystem}.vmValidation";
  # Every argument, as `arguments.check` verifies them before anything else is evaluated.
  required = {
    # Your VM's NixOS modules: what you give lib.nixosSystem, without hardware-configuration.nix
    # (the test framework provides the VM's disks and boot). Home Manager's module too, if your
    # dotfiles use it. They are evaluated for the guest system (below) with `pkgs` read-only, as
    # runNixOSTest does (node.pkgs): set no nixpkgs.* options in them.
    modules = { kind = "list"; about = "your VM's NixOS modules"; };
    # The login user the suites check: in `expect.groups`, SSH key login from the peer, the
    # tools on its PATH, its managed files.
    user = { kind = "string"; about = "the login user the suites check"; };
  };
  optional = {
    # The checks' names: "<name>-boot", "<name>-service", "<name>-integration". Default "vm".
    name = { kind = "string"; about = "prefix of the checks' names"; };
    # What the suites expect of the VM (each key below; all optional).
    expect = { kind = "attrs"; about = "what the VM must provide"; };
    # node.specialArgs of the test (module arguments your modules' `imports` need, e.g. inputs).
    specialArgs = { kind = "attrs"; about = "module arguments for your modules' imports"; };
    # More Python packages for the test driver, beside vmtest: `ps: [ ps.requests ]`.
    extraPythonPackages = { kind = "function"; about = "more Python packages for the driver"; };
    # Seconds before the driver gives up on a suite. Default 1800.
    globalTimeout = { kind = "int"; about = "seconds before the driver gives up"; };
    # Fail instead of running the VMs under TCG when the host has no KVM (the test option
    # qemu.forceAccel: nixpkgs 26.05 and later; with an older nixpkgs, true is an error). Default false.
    forceAccel = { kind = "bool"; about = "fail instead of falling back to TCG (nixpkgs 26.05 and later)"; };
  };
  expectKeys = {
    # `uname -m` of the guest. Default: the guest system's CPU (aarch64 for aarch64-darwin).
    arch = { kind = "string"; about = "the guest's uname -m"; };
    # Units that must be active. Default [ "sshd.service" ] (the integration suite logs in over SSH).
    services = { kind = "list"; about = "units that must be active"; };
    # Groups the user must be in. Default [ "wheel" ].
    groups = { kind = "list"; about = "groups the user must be in"; };
    # Commands that must be on the user's PATH over SSH. With make, gcc and git among them, a C
    # file is built, run and committed too (with the managed git config's identity). Default [ ].
    tools = { kind = "list"; about = "commands on the user's PATH over SSH"; };
    # Run a container of a local image as the user (the fixture puts the image in the VM).
    # Default: whether "docker.service" is in `services`.
    docker = { kind = "bool"; about = "check that the user runs a container"; };
    # Files in the user's home (relative paths) and their expected content, each one of: a path or
    # a derivation (its content; e.g. the file you give Home Manager), a string (the exact text),
    # { source = path-or-derivation; } or { text = "…"; }. Default { }.
    managedFiles = { kind = "attrs"; about = "files in the user's home and their expected content"; };
    # The unit that activates the user environment, which must have run and succeeded; null: none.
    # Default "home-manager-<user>.service" when managedFiles is not empty, else null.
    activationUnit = { kind = "any"; about = "the unit that activates the user environment, or null"; };
    # Where the managed files must link to; null: any file with the right content.
    # Default "/nix/store/" (Home Manager links into the store).
    managedRoot = { kind = "any"; about = "where the managed files must link to, or null"; };
    # The boot-time budget under KVM, in seconds (multiplied under TCG). Default 30.
    bootBudgetSeconds = { kind = "number"; about = "boot budget under KVM, seconds"; };
  };
in
given:
let
  args = arguments.check { inherit function required optional; } given;
  expect = arguments.check {
    function = "${function} (expect)";
    required = { };
    optional = expectKeys;
  } (args.expect or { });
  inherit (args) user;
  name = args.name or "vm";
  services = expect.services or [ "sshd.service" ];
  managedFiles = lib.mapAttrs fileSpec (expect.managedFiles or { });
  # A managed file's expected content, as the testScript reads it: { text } or { source } (a
  # store path: interpolating a path copies it into the store, a derivation is its output).
  fileSpec = path: value:
    let where = "${function}: expect.managedFiles.\"${path}\""; in
    if builtins.isPath value || lib.isDerivation value then { source = "${value}"; }
    else if builtins.isString value then { text = value; }
    else if builtins.isAttrs value && builtins.attrNames value == [ "text" ] then { text = value.text; }
    else if builtins.isAttrs value && builtins.attrNames value == [ "source" ] then { source = "${value.source}"; }
    else throw "${where}: a path, a derivation, a string (the exact text), { source = …; } or { text = …; }";
  expectations = {
    version = 1;
    inherit user;
    arch = expect.arch or (lib.systems.elaborate guestSystem).uname.processor;
    inherit services;
    groups = expect.groups or [ "wheel" ];
    tools = expect.tools or [ ];
    docker = expect.docker or (builtins.elem "docker.service" services);
    activation_unit = expect.activationUnit
      or (if managedFiles == { } then null else "home-manager-${user}.service");
    managed_root = expect.managedRoot or "/nix/store/";
    managed_files = managedFiles;
    boot_budget_kvm_seconds = expect.bootBudgetSeconds or 30;
  };
  # The JSON as a Python string literal: Nix's JSON string escapes (\" \\ \n \t \uXXXX …) are
  # Python's too, so toJSON of the JSON text is a literal Python reads back exactly.
  prelude = ''
    # Prepended by vmtest's ${function}: what ${user}'s VM must provide (vmtest.suites.vm_validation).
    VMTEST_EXPECTATIONS = ${builtins.toJSON (builtins.toJSON expectations)}
  '';

  vm = {
    imports = args.modules ++ [ ./modules/validation-fixtures.nix ];
    vmtest.validation = {
      enable = true;
      inherit user;
      dockerImage = expectations.docker;
    };
    # Docker wants the memory and the disk; the VM's own modules may say otherwise.
    virtualisation = {
      memorySize = lib.mkDefault 2048;
      cores = lib.mkDefault 2;
      diskSize = lib.mkDefault 4096;
    };
  };
  # The SSH client of the integration suite: the private half of the test key (public on
  # purpose: it only opens test VMs), at the path tests/vm/integration.py uses.
  peer = { pkgs, ... }: {
    environment.systemPackages = [ pkgs.openssh ];
    environment.etc."vmtest/test_ed25519" = {
      source = ../../machines/keys/test_ed25519;
      mode = "0600";
    };
    documentation.enable = false;
    system.stateVersion = "25.11";
  };

  suite = suiteName: nodes: script: withArtifacts {
    name = "${name}-${suiteName}";
    imports = lib.optional (args.forceAccel or false) (forceAccel function);
    inherit nodes;
    node.specialArgs = args.specialArgs or { };
    extraPythonPackages = args.extraPythonPackages or (_: [ ]);
    globalTimeout = args.globalTimeout or 1800;
    testScript = prelude + script;
  };
in
{
  "${name}-boot" = suite "boot" { inherit vm; } (builtins.readFile ../../tests/vm/boot.py);
  "${name}-service" = suite "service" { inherit vm; } (builtins.readFile ../../tests/vm/services.py);
  "${name}-integration" = suite "integration" { inherit vm peer; } (builtins.readFile ../../tests/vm/integration.py);
}
