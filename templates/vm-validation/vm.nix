# The VM under test: its user, the tools on its PATH, SSH for the integration suite's login.
# No hardware-configuration.nix here (the test framework provides the VM's disks and boot), and
# no nixpkgs.* options (the test evaluates the VM with a read-only package set).
{ pkgs, ... }:
{
  users.users.dev = {
    isNormalUser = true;
    extraGroups = [ "wheel" ];
  };
  services.openssh = {
    enable = true;
    settings.PasswordAuthentication = false;
  };
  environment.systemPackages = with pkgs; [ git gnumake gcc ];
  system.stateVersion = "25.11";
}
