# A NixOS test as two derivations, because Nix discards the $out of a failing build and with
# it every log, JUnit file and screenshot the run wrote:
# - `artifacts` runs the test driver exactly as the test derivation would (nixos/lib/testing/
#   run.nix: LOGFILE=/dev/null, `nixos-test-driver -o $out`) but always succeeds, keeping the
#   driver's exit status in $out/driver-exit-status;
# - the result (the verdict) fails exactly when that run failed, naming the failed cases, and
#   otherwise links to the artifacts. It carries the test's driver and driverInteractive.
# `test` is what pkgs.testers.runNixOSTest returns; `vmtest` maps a Python set to vmtest.
{ pkgs, test, vmtest }:
let
  inherit (pkgs) lib;
  name = test.config.name;
  artifacts =
    pkgs.runCommand "${name}-artifacts"
      {
        requiredSystemFeatures = [ "nixos-test" ] ++ lib.optional pkgs.stdenv.hostPlatform.isLinux "kvm";
        meta.description = "The ${name} test's logs, JUnit and summary, whether it passed or not";
      }
      ''
        mkdir -p $out
        export LOGFILE=/dev/null
        status=0
        ${test.driver}/bin/nixos-test-driver -o $out || status=$?
        echo "$status" > $out/driver-exit-status
      '';
  python = pkgs.python3.withPackages (ps: [ (vmtest ps) ]);
in
pkgs.runCommand name
  {
    passthru = {
      inherit artifacts;
      inherit (test) driver driverInteractive;
    };
  }
  ''
    ${python}/bin/python3 -m vmtest.portable.cli verdict ${artifacts}
    ln -s ${artifacts} $out
  ''
