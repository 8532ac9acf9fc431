# nixosModules.validation-fixtures: what vmtest's validation suites need inside the VM under test,
# and nothing else of vmtest's own VM: the public test key may log in as the user (the
# integration suite's peer holds its private half), and a registry-free Docker image sits at
# /etc/vmtest/tiny-rootfs.tar (the services suite imports and runs it as the user).
# lib.<system>.vmValidation adds it to your VM's test node; import it yourself only for a test of
# your own that runs those suites (vmtest.suites.vm_validation).
# The key (machines/keys/test_ed25519) is public on purpose: never enable this module in a
# system that anything but a test can reach.
{ config, lib, pkgs, ... }:
let
  cfg = config.vmtest.validation;
  # A registry-free image for the Docker check: a static busybox and nothing else.
  tinyRootfs = pkgs.runCommand "vmtest-tiny-rootfs.tar" { } ''
    mkdir rootfs
    cp ${pkgs.pkgsStatic.busybox}/bin/busybox rootfs/busybox
    tar -C rootfs -cf $out .
  '';
  testKey = lib.removeSuffix "\n" (builtins.readFile ../../../machines/keys/test_ed25519.pub);
in
{
  options.vmtest.validation = {
    enable = lib.mkEnableOption "vmtest's validation fixtures (the public test SSH key for the user, a tiny local Docker image)";
    user = lib.mkOption {
      type = lib.types.str;
      example = "ada";
      description = "The user the validation suites log in as: the test key is added to its authorized keys.";
    };
    authorizeTestKey = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Whether the public test key (vmtest's machines/keys/test_ed25519.pub) may log in as the user over SSH.";
    };
    dockerImage = lib.mkOption {
      type = lib.types.bool;
      default = config.virtualisation.docker.enable;
      defaultText = lib.literalExpression "config.virtualisation.docker.enable";
      description = "Whether to put the tiny busybox image the Docker check imports at /etc/vmtest/tiny-rootfs.tar.";
    };
  };

  config = lib.mkIf cfg.enable {
    # A user of that name must exist in your configuration: otherwise NixOS' users module asserts
    # that it is neither a normal nor a system user, naming it.
    users.users.${cfg.user}.openssh.authorizedKeys.keys = lib.mkIf cfg.authorizeTestKey [ testKey ];
    environment.etc."vmtest/tiny-rootfs.tar" = lib.mkIf cfg.dockerImage { source = tinyRootfs; };
  };
}
