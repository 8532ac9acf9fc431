# This repository's VM through vmtest's own library (lib/nix/vm-validation.nix), exactly as
# another flake validates its VM: vm-boot, vm-service, vm-integration, each running
# tests/vm/<suite>.py (the testScripts the portable runtime runs: make test-vm-x86_64 /
# make test-vm-aarch64) on machines/nixos-vm.nix. Each is a verdict that fails when its suite
# failed; `.artifacts` always builds and holds the run's logs and JUnit.
# `vmtestLib` is the flake's lib.<system> (the system whose host runs the driver: on a Mac the
# VM is its Linux guest); `homeManagerModule` is home-manager.nixosModules.home-manager.
# The expectations are the ones the testScripts default to on the portable runtime
# (vmtest.suites.vm_validation.VmProfile; tests/repo/test_nix_library.py checks they agree).
{ vmtestLib, homeManagerModule }:
vmtestLib.vmValidation {
  name = "vm";
  modules = [ (import ./node.nix homeManagerModule) ];
  user = "baleen";
  expect = {
    services = [ "sshd.service" "docker.service" ];
    groups = [ "wheel" "docker" ];
    tools = [ "git" "vim" "make" "gcc" "ssh" ];
    docker = true;
    # The files Home Manager links (machines/nixos-vm.nix), with the content of the very files
    # the Debian twin installs.
    managedFiles = {
      ".config/git/config" = ../../machines/dotfiles/git/config;
      ".vimrc" = ../../machines/dotfiles/vimrc;
    };
    activationUnit = "home-manager-baleen.service";
    managedRoot = "/nix/store/";
    bootBudgetSeconds = 30;
  };
}
