# A NixOS test as two derivations, because Nix discards the $out of a failing build and with
# it every log, JUnit file and screenshot the run wrote:
# - `artifacts` runs the test driver exactly as the test derivation would (nixos/lib/testing/
#   run.nix: LOGFILE=/dev/null, `nixos-test-driver -o $out`) but always succeeds, keeping the
#   driver's exit status in $out/driver-exit-status;
# - the result (the verdict) fails exactly when that run failed, naming the failed cases and the
#   command that deletes the failed run, and otherwise links to the artifacts. It carries the
#   test's driver and driverInteractive.
# A failed run must never be reused silently: the artifacts are never substituted from a binary
# cache (`allowSubstitutes = false`; a passing run still comes from a cache through its verdict,
# a failed verdict is never stored), the verdict names `nix store delete <run>`, and
# scripts/test-vm and the workflows delete a failed run once its files are copied out.
# The artifacts refer to no store path (`allowedReferences = [ ]`): a log line naming one (the
# kernel command line in dmesg.log names the VM's system) would make a cache push upload both
# VM closures, so store paths' hashes in the run's files are replaced by e's, as nixpkgs'
# remove-references-to does.
# `test` is what pkgs.testers.runNixOSTest returns; `vmtest` maps a Python set to vmtest.
# Consumers reach this through lib/nix/default.nix (`lib.<system>.withArtifacts`, `wrapTest`).
{ pkgs, test, vmtest }:
let
  inherit (pkgs) lib;
  name = test.config.name;
  artifacts =
    pkgs.runCommand "${name}-artifacts"
      {
        # As nixos/lib/testing/run.nix: KVM on Linux, Apple's Virtualization on a Mac.
        requiredSystemFeatures = [ "nixos-test" ]
          ++ lib.optional pkgs.stdenv.hostPlatform.isLinux "kvm"
          ++ lib.optional pkgs.stdenv.hostPlatform.isDarwin "apple-virt";
        allowSubstitutes = false;
        allowedReferences = [ ];
        meta.description = "The ${name} test's logs, JUnit and summary, whether it passed or not";
      }
      ''
        mkdir -p $out
        export LOGFILE=/dev/null
        status=0
        ${test.driver}/bin/nixos-test-driver -o $out || status=$?
        echo "$status" > $out/driver-exit-status
        grep -rlZE '/nix/store/[0-9a-z]{32}-' $out | while IFS= read -r -d "" file; do
          LC_ALL=C sed -i -E 's|/nix/store/[0-9a-z]{32}-|/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-|g' "$file"
        done
      '';
  python = pkgs.python3.withPackages (ps: [ (vmtest ps) ]);
in
pkgs.runCommand name
  {
    # The test's driver, its interactive driver (`nix run .#<check>.driverInteractive`), its
    # configuration and nodes (runNixOSTest's passthru: `<check>.nodes.vm.config…` to inspect a VM).
    passthru = {
      inherit artifacts;
      inherit (test) driver driverInteractive config;
    } // lib.optionalAttrs (test ? nodes) { inherit (test) nodes; };
  }
  ''
    if ! ${python}/bin/python3 -m vmtest.cli verdict ${artifacts}; then
      echo "${name}: this failed run stays in the Nix store and a later build would reuse it;" \
        "to run the test again: nix store delete ${artifacts} (remove any result link to it first)" >&2
      exit 1
    fi
    ln -s ${artifacts} $out
  ''
