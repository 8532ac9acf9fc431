# What both e2e nodes share: a lean test VM.
{ ... }:
{
  system.stateVersion = "25.11";
  documentation.enable = false;
  nix.enable = false;
  virtualisation = {
    memorySize = 2048;
    cores = 2;
    graphics = false;
  };
}
