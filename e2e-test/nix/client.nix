# The e2e client VM: the browser smoke tests (Playwright for Python with nixpkgs'
# playwright-driver browsers: the full Chromium, headless, and the DejaVu fonts; how and why in
# packages.nix, alicia-e2e-client-tests). The testScript starts them as the e2e-browser-tests unit, which
# the Debian twin (machines/client.toml) declares too: a unit's PATH is what it declares here,
# never a distribution's default (a transient systemd-run unit on NixOS has systemd's bin only).
{ pkgs, ... }:
{
  imports = [ ./common.nix ];

  environment.systemPackages = [ pkgs.alicia-e2e-client-tests pkgs.curl ];

  systemd.services.e2e-browser-tests = {
    description = "Alicia e2e browser smoke tests (started by the testScript)";
    path = [ pkgs.alicia-e2e-client-tests ];
    # Chromium keeps its caches under HOME; a unit has none of its own.
    environment.HOME = "/root";
    serviceConfig = {
      Type = "oneshot";
      ExecStart = "${pkgs.alicia-e2e-client-tests}/bin/e2e-run-browser-tests /tmp/e2e";
    };
  };
}
