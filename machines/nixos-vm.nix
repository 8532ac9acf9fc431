# The VM the validation suites prove (seed 002), for nixosConfigurations.nixos-vm-{aarch64,x86_64}
# and, through vmtest's own lib.<system>.vmValidation (tests/vm/default.nix), as the `vm` node of
# the checks vm-boot, vm-service and vm-integration; the test fixtures (the Docker check's image,
# the test key for the peer) come from nixosModules.validation-fixtures there, not from here.
# Its Debian twin for the portable runtime is machines/debian-vm.toml: same user and groups,
# OpenSSH with key login, Docker, dev tools,
# and the same dotfiles (machines/dotfiles), linked here by Home Manager.
# Needs home-manager's NixOS module (the flake adds home-manager.nixosModules.home-manager).
#
# `nixos-rebuild build-vm` builds `virtualisation.vmVariant` below: the VM a person runs, with
# a password and SSH on host port 2222. The test nodes (tests/vm/node.nix) are not that
# variant: the NixOS test framework imports qemu-vm.nix into the node itself, so nothing set in
# `vmVariant` reaches them and the suites validate exactly the configuration above it.
# A system that imports qemu-vm.nix itself has a system.build.vm of its own, which outranks the
# variant's (build-vm.nix sets it with mkDefault): flake.nix's nixosConfigurations must leave
# qemu-vm.nix to the variant (lib/python/tests/repo/test_vm_module_options.py).
{ config, lib, pkgs, ... }:
let
  cfg = config.vmtest.vm;
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

    # What `nixos-rebuild build-vm --flake .#nixos-vm-<arch>` adds, so a person can get in:
    #   ./result/bin/run-nixos-vm-<arch>-vm    (the console is this terminal; Ctrl-a x quits)
    #   log in as the user with password "vmtest", or, from the host:
    #   chmod 600 machines/keys/test_ed25519   (git keeps it 0644; ssh refuses such a key)
    #   ssh -p 2222 -i machines/keys/test_ed25519 -o StrictHostKeyChecking=no \
    #     -o UserKnownHostsFile=/dev/null baleen@localhost
    # The password is the initial one: it is set when the user is created, i.e. on a fresh disk
    # image (delete ./nixos-vm-<arch>.qcow2 to start over), and it is world-readable in the Nix
    # store, fine for a throwaway VM only. SSH stays key-only (services.openssh above); its port
    # is forwarded from 127.0.0.1 only, as the key that opens it is public (machines/keys).
    virtualisation.vmVariant = {
      users.users.${cfg.user}.initialPassword = "vmtest";
      virtualisation = {
        # The test node's size (tests/vm/node.nix): Docker wants the memory and the disk.
        memorySize = 2048;
        cores = 2;
        diskSize = 4096;
        # A serial console in the terminal instead of a QEMU window (none on a headless host).
        graphics = false;
        forwardPorts = [
          {
            from = "host";
            host.address = "127.0.0.1";
            host.port = 2222;
            guest.port = 22;
          }
        ];
      };
    };
  };
}
