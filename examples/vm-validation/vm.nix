# Ada's development VM: her user, her tools, her dotfiles (Home Manager).
{ pkgs, ... }:
{
  users.users.ada = {
    isNormalUser = true;
    extraGroups = [ "wheel" ];
    shell = pkgs.zsh;
  };
  programs.zsh.enable = true;
  security.sudo.wheelNeedsPassword = false;

  services.openssh = {
    enable = true;
    settings = {
      PasswordAuthentication = false;
      PermitRootLogin = "no";
    };
  };

  environment.systemPackages = with pkgs; [ git tmux ripgrep gnumake gcc ];

  home-manager = {
    useGlobalPkgs = true;
    useUserPackages = true;
    users.ada = {
      home.stateVersion = "25.11";
      xdg.configFile."git/config".source = ./dotfiles/gitconfig;
      home.file.".tmux.conf".source = ./dotfiles/tmux.conf;
    };
  };

  documentation.enable = false;
  system.stateVersion = "25.11";
}
