{
  description = "Ada's NixOS development VM, and vmtest proving it boots and works";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    home-manager = {
      url = "github:nix-community/home-manager/release-25.11";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    vmtest = {
      url = "github:OWNER/vmtest"; # where vmtest is published
      inputs.nixpkgs.follows = "nixpkgs";
      inputs.home-manager.follows = "home-manager";
    };
  };

  outputs =
    { self, nixpkgs, home-manager, vmtest }:
    let
      # What the VM is, for the machine itself and for its checks alike.
      vmModules = [ home-manager.nixosModules.home-manager ./vm.nix ];
      validate =
        system:
        vmtest.lib.${system}.vmValidation {
          modules = vmModules;
          user = "ada";
          expect = {
            services = [ "sshd.service" ];
            groups = [ "wheel" ];
            tools = [ "git" "tmux" "rg" "make" "gcc" ];
            docker = false;
            # Home Manager links these; their content must be these very files.
            managedFiles = {
              ".config/git/config" = ./dotfiles/gitconfig;
              ".tmux.conf" = ./dotfiles/tmux.conf;
            };
            activationUnit = "home-manager-ada.service";
          };
        };
    in
    {
      # The VM Ada runs on her MacBook (UTM, or `nixos-rebuild build-vm` through a Linux builder).
      nixosConfigurations.ada-vm = nixpkgs.lib.nixosSystem {
        modules = vmModules ++ [ ./hardware.nix { nixpkgs.hostPlatform = "aarch64-linux"; } ];
      };

      # `nix flake check` on the MacBook runs the aarch64-linux guest from macOS (a Linux builder
      # builds it; QEMU runs it under Apple's hypervisor); CI runs the Linux hosts.
      checks = nixpkgs.lib.genAttrs [ "aarch64-darwin" "aarch64-linux" "x86_64-linux" ] validate;
    };
}
