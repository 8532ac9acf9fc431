# What the Alicia client adds to vmtest's e2e client role (lib/nix/modules/e2e-client.nix, which
# runs the browser suite, pkgs.alicia-e2e-client-tests, as e2e-browser-tests.service; how its
# browser and fonts are found: packages.nix): the lean VM both Alicia nodes share.
{ ... }:
{
  imports = [ ./common.nix ];
}
