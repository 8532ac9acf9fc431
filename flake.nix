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
      # Where the test driver and QEMU run. A Mac runs the VMs as Linux guests of its own CPU,
      # built by a Linux builder (docs/nix-library.md, "On a Mac"); the Linux-only outputs (the
      # devShell, the e2e suite, vmtest's unit tests as a check) stay on Linux.
      linuxSystems = [ "x86_64-linux" "aarch64-linux" ];
      darwinSystems = [ "aarch64-darwin" "x86_64-darwin" ];
      systems = linuxSystems ++ darwinSystems;
      pkgsFor = system: import nixpkgs { inherit system; overlays = [ self.overlays.default ]; };
      forSystems = list: f: lib.genAttrs list (system: f (pkgsFor system));
      forAllSystems = forSystems systems;
      isLinux = pkgs: pkgs.stdenv.hostPlatform.isLinux;
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
      # vmtest's Nix library for other flakes (docs/nix-library.md): lib.<system>.vmValidation,
      # .webStackE2e, .withArtifacts, .wrapTest; lib.forPkgs PKGS gives the same over a package set
      # of your own. <system> is the host running the driver (a Mac tests Linux guests).
      lib = lib.genAttrs systems (system: import ./lib/nix { pkgs = pkgsFor system; }) // {
        forPkgs = pkgs: import ./lib/nix { inherit pkgs; };
      };

      # The NixOS roles behind the library, each with its options (lib.mkOption) documented:
      # the validation suites' fixtures inside your VM, and the e2e suite's server and client.
      nixosModules = {
        validation-fixtures = ./lib/nix/modules/validation-fixtures.nix;
        e2e-server = ./lib/nix/modules/e2e-server.nix;
        e2e-client = ./lib/nix/modules/e2e-client.nix;
      };

      # `nix flake init -t <vmtest>#vm-validation` / `#e2e`: the smallest consumer flakes.
      templates = {
        vm-validation = {
          path = ./templates/vm-validation;
          description = "Validate your own NixOS VM (boot, services, integration) with vmtest";
          welcomeText = ''
            # Your NixOS VM, validated by vmtest

            - `vm.nix` is your VM: the user, its tools and dotfiles. `flake.nix` says what the
              suites expect of it (`expect`); keep the two in step.
            - `nix flake check -L` runs the three suites (`checks.<system>.vm-{boot,service,integration}`);
              `nix build .#checks.<system>.vm-boot.artifacts` keeps a run's report, logs and JUnit
              whether it passed or not.
            - On a Mac the VMs are Linux guests built by a Linux builder: see vmtest's
              docs/nix-library.md, "On a Mac".
          '';
        };
        e2e = {
          path = ./templates/e2e;
          description = "Run your web app's e2e browser suite on a server and a client VM with vmtest";
          welcomeText = ''
            # Your web app's e2e suite, under vmtest

            - `app.nix` builds your app: `bin/<app> server`, `bin/<app>-migrate DIR`, a `/health`
              answering {"status": "ok", "database": "ok"}.
            - `browser-suite.nix` wraps your Playwright tests (`e2e/`) as
              `bin/e2e-run-browser-tests OUTDIR`.
            - `nix build .#checks.x86_64-linux.e2e -L` runs it; `.artifacts` holds report.html.
          '';
        };
      };

      # `alicia` is the reference backend; a consumer puts its own overlay after this one
      # (final: prev: { alicia = real-alicia; }) to run the same suite against the real package.
      overlays.default =
        final: prev:
        (import ./e2e-test/nix/packages.nix { pkgs = final; })
        // {
          # The same smoke tests as a @playwright/test suite in TypeScript (e2e-test/client-ts).
          alicia-e2e-client-tests-ts = import ./e2e-test/nix/client-tests-ts.nix { pkgs = final; };
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
          default = pkgs.python3Packages.vmtest;
        }
        // lib.optionalAttrs (isLinux pkgs) {
          inherit (pkgs) alicia alicia-mocks alicia-e2e-client-tests alicia-e2e-client-tests-ts;
        }
        // lib.mapAttrs' (name: check: lib.nameValuePair "${name}-artifacts" check.artifacts) (
          lib.filterAttrs (name: check: check ? artifacts) self.checks.${pkgs.stdenv.hostPlatform.system}
        )
      );

      # This repository's own checks go through the library, as a consumer's would.
      checks = forAllSystems (
        pkgs:
        let
          system = pkgs.stdenv.hostPlatform.system;
          # Whether this nixpkgs' test framework declares `containers.<name>` (systemd-nspawn
          # machines: nixos-26.05 and later), asked of its `options` as the library asks for
          # qemu.forceAccel: a test with no machine that reports it through passthru (evaluated,
          # never built). Under the pin (nixos-25.11) it is false.
          declaresContainers =
            (pkgs.testers.runNixOSTest (
              { options, ... }:
              {
                name = "vmtest-node-kinds";
                passthru.declaresContainers = options ? containers;
              }
            )).declaresContainers;
        in
        lib.optionalAttrs (isLinux pkgs) {
          # vmtest's unit tests (tests/unit) run in its check phase (on Linux: they test the
          # portable runtime, which is Linux's).
          vmtest = pkgs.python3Packages.vmtest;
        }
        # The validation suites (tests/vm) on machines/nixos-vm.nix, on every host (a Mac runs the
        # Linux guest of its CPU): vm-boot, vm-service, vm-integration.
        // import ./tests/vm {
          vmtestLib = self.lib.${system};
          homeManagerModule = home-manager.nixosModules.home-manager;
        }
        # The Alicia e2e suite (e2e-test/nix): Playwright's Chromium is x86_64-linux's.
        // lib.optionalAttrs (system == "x86_64-linux") {
          e2e = import ./e2e-test/nix { inherit pkgs; vmtestLib = self.lib.${system}; };
          # The same check with the TypeScript suite (@playwright/test) in the client: the runner
          # contract's second implementation (docs/browser-runner.md).
          e2e-ts = import ./e2e-test/nix {
            inherit pkgs;
            vmtestLib = self.lib.${system};
            browserSuite = pkgs.alicia-e2e-client-tests-ts;
            browserLog = "playwright.log";
          };
        }
        # The same check with server and client as systemd-nspawn containers (upstream's
        # `containers.<name>`), where the nixpkgs has them: `nix flake check --override-input
        # nixpkgs github:NixOS/nixpkgs/nixos-26.05` builds it; under the pin it does not exist
        # (the VM check `e2e` is the same suite). docs/nix-library.md, "Containers".
        // lib.optionalAttrs (system == "x86_64-linux" && declaresContainers) {
          e2e-containers = import ./e2e-test/nix {
            inherit pkgs;
            vmtestLib = self.lib.${system};
            nodeKind = "container";
          };
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

      devShells = forSystems linuxSystems (pkgs: {
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
            pkgs.ty # tests/repo/test_driver_typecheck.py: the checker nixos-26.05's driver runs on testScripts
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
