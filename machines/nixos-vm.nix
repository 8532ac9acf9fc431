# The VM the validation suites prove (seed 002), for nixosConfigurations.nixos-vm-{aarch64,x86_64}
# and as the `vm` node of tests/vm/*-test.nix. Its Debian twin for the portable runtime is
# machines/debian-vm.toml: same user and groups, OpenSSH with key login, Docker, dev tools,
# and the same dotfiles (machines/dotfiles), linked here by Home Manager.
# Needs home-manager's NixOS module (the flake adds home-manager.nixosModules.home-manager).
{ config, lib, pkgs, ... }:
let
  cfg = config.vmtest.vm;
  # A registry-free image for the Docker check: a static busybox and nothing else.
  tinyRootfs = pkgs.runCommand "vmtest-tiny-rootfs.tar" { } ''
    mkdir rootfs
    cp ${pkgs.pkgsStatic.busybox}/bin/busybox rootfs/busybox
    tar -C rootfs -cf $out .
  '';
in
{
  options.vmtest.vm = {
    user = lib.mkOption {
      type = lib.types.str;
      default = "baleen";
      description = "The login user: in wheel and docker, SSH key login, Home Manager environment.";
    };
    authorizedKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      # The test key (machines/keys): public on purpose, it only opens test VMs.
      default = [ (lib.removeSuffix "\n" (builtins.readFile ./keys/test_ed25519.pub)) ];
      description = "SSH public keys allowed to log in as the user.";
    };
  };

  config = {
    users.users.${cfg.user} = {
      isNormalUser = true;
      extraGroups = [ "wheel" "docker" ];
      openssh.authorizedKeys.keys = cfg.authorizedKeys;
    };
    security.sudo.wheelNeedsPassword = false;

    services.openssh = {
      enable = true;
      settings = {
        PasswordAuthentication = false;
        KbdInteractiveAuthentication = false;
        PermitRootLogin = "no";
      };
    };

    virtualisation.docker.enable = true;

    environment.systemPackages = with pkgs; [ git vim gnumake gcc curl ];
    environment.etc."vmtest/tiny-rootfs.tar".source = tinyRootfs;

    home-manager = {
      useGlobalPkgs = true;
      useUserPackages = true;
      users.${cfg.user} = {
        home.stateVersion = "25.11";
        # The same files the Debian twin links (vmtest.suites.vm_validation checks their content).
        xdg.configFile."git/config".source = ./dotfiles/git/config;
        home.file.".vimrc".source = ./dotfiles/vimrc;
      };
    };

    documentation.enable = false;
    system.stateVersion = "25.11";
  };
}
