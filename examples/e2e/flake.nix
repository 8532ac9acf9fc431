{
  description = "Alicia (Go backend, SPA frontend) and its e2e suite, run by vmtest";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    vmtest = {
      url = "github:OWNER/vmtest"; # where vmtest is published
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    { self, nixpkgs, vmtest }:
    let
      inherit (nixpkgs) lib;
      # The app and its browser suite run inside the VMs: they are Linux packages.
      packagesFor = pkgs: {
        alicia = pkgs.callPackage ./nix/alicia.nix { };
        # The TypeScript @playwright/test suite in ./e2e, as vmtest's client runs it.
        alicia-browser-tests = pkgs.callPackage ./nix/browser-tests.nix { };
      };
      # The e2e check for a host: x86_64-linux in CI, aarch64-darwin on the team's MacBooks (its
      # VMs are aarch64-linux guests, built by a Linux builder).
      e2eFor =
        system:
        let
          guest = vmtest.lib.${system}.guestSystem;
          pkgs = nixpkgs.legacyPackages.${guest};
          inherit (self.packages.${guest}) alicia alicia-browser-tests;
        in
        vmtest.lib.${system}.webStackE2e {
          app = "alicia";
          package = alicia;
          browserSuite = alicia-browser-tests;
          browserLog = "playwright.log";
          environment = {
            ALICIA_SERVER_HOST = "127.0.0.1";
            ALICIA_SERVER_PORT = "8888";
            ALICIA_STATIC_DIR = "${alicia}/share/alicia/frontend";
            ALICIA_LOG_FORMAT = "json";
          };
          # Test values: they are in the Nix store, and redacted from every artifact.
          secrets = {
            ALICIA_LLM_API_KEY = "e2e-llm-key";
            ALICIA_SESSION_SECRET = "e2e-session-secret";
          };
          databaseUrlVariable = "ALICIA_POSTGRES_URL";
          databaseExtensions = [ "pgcrypto" "vector" ];
          postgresqlPackage = pkgs.postgresql_17.withPackages (p: [ p.pgvector ]);
          staticRoot = "${alicia}/share/alicia/frontend";
          proxyLocations = [ "/api/" "/ws" ];
        };
    in
    {
      packages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (
        system: packagesFor nixpkgs.legacyPackages.${system} // { default = self.packages.${system}.alicia; }
      );

      checks = lib.genAttrs [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ] (system: {
        e2e = e2eFor system;
      });
    };
}
