{
  description = "My web app and its e2e browser suite, run by vmtest on a server and a client VM";

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
    in
    {
      # The app and the suite run inside the VMs: Linux packages.
      packages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (
        system:
        let
          pkgs = nixpkgs.legacyPackages.${system};
        in
        {
          myapp = pkgs.callPackage ./app.nix { };
          e2e-browser-suite = pkgs.callPackage ./browser-suite.nix { };
        }
      );

      # On a Mac (aarch64-darwin) the VMs are aarch64-linux guests: the packages are the guest's.
      checks = lib.genAttrs [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ] (
        system:
        let
          guest = self.packages.${vmtest.lib.${system}.guestSystem};
        in
        {
          e2e = vmtest.lib.${system}.webStackE2e {
            app = "myapp"; # bin/myapp server, bin/myapp-migrate DIR, myapp.service, database myapp
            package = guest.myapp;
            browserSuite = guest.e2e-browser-suite;
            browserLog = "playwright.log";
            environment.MYAPP_LISTEN = "127.0.0.1:8888";
            databaseUrlVariable = "MYAPP_DATABASE_URL";
            secrets.MYAPP_SESSION_KEY = "test-session-key";
          };
        }
      );
    };
}
