{
  description = "My NixOS VM, validated by vmtest (boot, services, integration)";

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
      # The VM's own modules; give the same list to nixosSystem for the machine itself.
      vmModules = [ ./vm.nix ];
      validate =
        system:
        vmtest.lib.${system}.vmValidation {
          modules = vmModules;
          user = "dev";
          # What the suites check; keep it in step with vm.nix.
          expect = {
            groups = [ "wheel" ];
            tools = [ "git" "make" "gcc" ];
          };
        };
    in
    {
      # vm-boot, vm-service and vm-integration for each host: a Mac runs the Linux guest of its CPU.
      checks = nixpkgs.lib.genAttrs [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ] validate;
    };
}
