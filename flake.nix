{
  description = "vmtest: NixOS test-driver helpers, the Alicia e2e suite, and a portable QEMU runtime";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      pkgsFor = system: import nixpkgs { inherit system; overlays = [ self.overlays.default ]; };
      forAllSystems = f: lib.genAttrs systems (system: f (pkgsFor system));
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

      packages = forAllSystems (pkgs: {
        vmtest = pkgs.python3Packages.vmtest;
        inherit (pkgs) alicia alicia-mocks alicia-e2e-client-tests;
        default = pkgs.python3Packages.vmtest;
      });

      checks = forAllSystems (
        pkgs:
        {
          # vmtest's unit tests run in its check phase.
          vmtest = pkgs.python3Packages.vmtest;
        }
        // lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") {
          e2e = import ./e2e-test/nix { inherit pkgs; vmtest = ps: ps.vmtest; };
        }
      );

      apps = forAllSystems (pkgs: {
        e2e-interactive = {
          type = "app";
          program = "${self.checks.x86_64-linux.e2e.driverInteractive}/bin/nixos-test-driver";
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            (pkgs.python3.withPackages (ps: [ ps.colorama ps.junit-xml ps.ptpython ps.pytest ps.mypy ]))
            pkgs.ruff
            pkgs.qemu
            pkgs.mmdebstrap
            pkgs.vde2
            pkgs.e2fsprogs
          ];
          # vmtest from the working tree, as an editable install would give it.
          shellHook = ''
            export PYTHONPATH="$PWD/lib/python/src''${PYTHONPATH:+:$PYTHONPATH}"
          '';
        };
      });
    };
}
