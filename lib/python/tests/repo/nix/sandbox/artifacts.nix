# lib/nix/test-with-artifacts.nix built in the real sandbox here, around a stand-in test whose
# driver writes a JUnit file and a log naming a store path (as dmesg.log names the VM's system),
# then exits with `driverStatus`.
{ inputsFile, repo, driverStatus }:
let
  sandbox = import ./. { inherit inputsFile repo; };
  inherit (sandbox) pkgs;
  failure = if driverStatus == 0 then "" else ''<failure message="boom"/>'';
  driver = pkgs.runCommand "nixos-test-driver-stand-in" { } ''
    mkdir -p $out/bin
    cat > $out/bin/nixos-test-driver <<DRIVER
    #!${pkgs.tools}/bin/bash
    [ "\$1" = -o ] || exit 2
    mkdir -p "\$2/logs"
    echo '<testsuite name="alicia-e2e"><testcase name="server stack comes up in order">${failure}</testcase></testsuite>' > "\$2/junit.xml"
    echo "Command line: init=$out/init console=ttyS0" > "\$2/logs/dmesg.log"
    exit ${toString driverStatus}
    DRIVER
    chmod +x $out/bin/nixos-test-driver
  '';
  test = {
    config.name = "alicia-e2e";
    inherit driver;
    driverInteractive = driver;
  };
  checked = import "${toString repo}/lib/nix/test-with-artifacts.nix" { inherit pkgs test; vmtest = ps: ps.vmtest; };
in
{
  inherit (checked) artifacts;
  verdict = checked;
}
