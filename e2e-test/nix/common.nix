# What both e2e nodes share: a lean test machine. Nothing of QEMU's (virtualisation.memorySize,
# cores, graphics): the same modules serve the VMs and the containers (the check e2e-containers),
# and lib.<system>.webStackE2e gives the VMs their sizes (2048 MiB, 2 cores, no graphics; the
# server a 4096 MiB disk).
{ ... }:
{
  system.stateVersion = "25.11";
  documentation.enable = false;
  nix.enable = false;
}
