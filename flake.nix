{
  description = "vmtest: NixOS test-driver helpers, the Alicia e2e suite, and a portable QEMU runtime";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    home-manager = {
      url = "github:nix-community/home-manager/release-25.11";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    { self, nixpkgs, home-manager }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      pkgsFor = system: import nixpkgs { inherit system; overlays = [ self.overlays.default ]; };
      forAllSystems = f: lib.genAttrs systems (system: f (pkgsFor system));
      # The validated VM (seed 002) as a system of its own: `nixos-rebuild build-vm --flake .#nixos-vm-aarch64`.
      nixosVm =
        system:
        lib.nixosSystem {
          modules = [
            ./machines/nixos-vm.nix
            home-manager.nixosModules.home-manager
            {
              nixpkgs.hostPlatform = system;
              networking.hostName = "nixos-vm-${lib.head (lib.splitString "-" system)}";
              # As if installed, so that `nix flake check` evaluates the system's toplevel.
              # `nixos-rebuild build-vm` builds machines/nixos-vm.nix's vmVariant, which replaces
              # both (importing qemu-vm.nix here instead would hide that variant).
              fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
              boot.loader.grub.enable = false;
            }
          ];
        };
    in
    {
      # `alicia` is the reference backend; a consumer puts its own overlay after this one
      # (final: prev: { alicia = real-alicia; }) to run the same suite against the real package.
      overlays.default =
        final: prev:
        (import ./e2e-test/nix/packages.nix { pkgs = final; })
        // {
          pythonPackagesExtensions = prev.pythonPackagesExtensions ++ [
            (pyFinal: pyPrev: { vmtest = pyFinal.callPackage ./lib/python/package.nix { }; })
          ];
        };

      # `<check>-artifacts`: the run's logs, JUnit and summary, built whether the suite passed or
      # not (`nix build .#e2e-artifacts`); the check of the same name fails when it failed.
      packages = forAllSystems (
        pkgs:
        {
          vmtest = pkgs.python3Packages.vmtest;
          inherit (pkgs) alicia alicia-mocks alicia-e2e-client-tests;
          default = pkgs.python3Packages.vmtest;
        }
        // lib.mapAttrs' (name: check: lib.nameValuePair "${name}-artifacts" check.artifacts) (
          lib.filterAttrs (name: check: check ? artifacts) self.checks.${pkgs.stdenv.hostPlatform.system}
        )
      );

      checks = forAllSystems (
        pkgs:
        {
          # vmtest's unit tests (tests/unit) run in its check phase.
          vmtest = pkgs.python3Packages.vmtest;
        }
        # The validation suites (tests/vm), on both systems: vm-boot, vm-service, vm-integration.
        // import ./tests/vm {
          inherit pkgs;
          vmtest = ps: ps.vmtest;
          homeManagerModule = home-manager.nixosModules.home-manager;
        }
        // lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") {
          e2e = import ./e2e-test/nix { inherit pkgs; vmtest = ps: ps.vmtest; };
        }
      );

      nixosConfigurations = {
        nixos-vm-aarch64 = nixosVm "aarch64-linux";
        nixos-vm-x86_64 = nixosVm "x86_64-linux";
      };

      # `nix run .#<check>-interactive`: the check's driverInteractive (a Python shell with the
      # machines and vmtest; run `test_script()` or drive the VMs by hand).
      apps = forAllSystems (
        pkgs:
        let
          system = pkgs.stdenv.hostPlatform.system;
          interactive = name: {
            type = "app";
            program = "${self.checks.${system}.${name}.driverInteractive}/bin/nixos-test-driver";
          };
        in
        lib.listToAttrs (
          map (name: lib.nameValuePair "${name}-interactive" (interactive name)) [
            "vm-boot"
            "vm-service"
            "vm-integration"
          ]
        )
        // lib.optionalAttrs (system == "x86_64-linux") { e2e-interactive = interactive "e2e"; }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            # pyproject.toml's `dev` extra (tests/repo checks that the two agree).
            (pkgs.python3.withPackages (ps: [
              ps.colorama
              ps.junit-xml
              ps.rich
              ps.ptpython
              ps.pytest
              ps.pytest-rerunfailures # tests/conftest.py: a VM test whose guest kernel panicked runs once more
              ps.mypy
              ps.pyyaml
              ps.types-pyyaml
              ps.playwright
            ]))
            pkgs.chromium # tests/repo/test_report_page.py opens report.html in it (VMTEST_CHROMIUM, or on PATH)
            pkgs.ruff
            pkgs.shellcheck # tests/repo: the shell embedded in the .nix files
            pkgs.qemu
            pkgs.mmdebstrap
            pkgs.vde2
            pkgs.e2fsprogs
            pkgs.nix-output-monitor # `nom build .#checks…` for readable build logs
          ];
          # vmtest from the working tree, as an editable install would give it.
          shellHook = ''
            export PYTHONPATH="$PWD/lib/python/src''${PYTHONPATH:+:$PYTHONPATH}"
          '';
        };
      });
    };
}
