# forceAccel FUNCTION: a test module (for `imports`) that makes QEMU fail instead of falling back
# to TCG when the host has no KVM. It sets the test option `qemu.forceAccel` where the nixpkgs
# running the test declares it (nixos-26.05 and later: nixos/lib/testing/driver.nix) and is a
# throw naming FUNCTION where it does not (nixos-25.11): decided by the test framework's
# `options`, not by a version number (docs/driver-compatibility.md, "The flake per revision").
function: { options, ... }: {
  config =
    if options ? qemu && options.qemu ? forceAccel then { qemu.forceAccel = true; }
    else throw ("${function}: `forceAccel = true` needs the test option qemu.forceAccel, which the test "
      + "framework of this nixpkgs does not declare (nixos-26.05 and later do); without it QEMU falls "
      + "back to TCG when the host has no KVM");
}
