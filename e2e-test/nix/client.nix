# The e2e client VM: the browser smoke tests (Playwright for Python with nixpkgs'
# playwright-driver browsers), run by the testScript as `e2e-run-browser-tests`.
{ pkgs, ... }:
{
  imports = [ ./common.nix ];

  environment.systemPackages = [ pkgs.alicia-e2e-client-tests pkgs.curl ];
}
