# Boot suite (seed 002). One testScript for both runtimes:
#   nix build .#checks.<system>.vm-boot          (lib/nix/vm-validation.nix, NixOS test driver)
#   make test-vm-x86_64 / make test-vm-aarch64     (portable runtime, machines/debian-vm*.toml)
# Checks: multi-user.target reached, no failed unit (listed with their journal when there
# are), `uname -m` as expected, boot time from systemd-analyze, less the host's steal time (a
# busy host's delay, not the guest's), within a budget scaled by accelerator and architecture.
import os

from vmtest import checkpoint
from vmtest.suites import vm_validation as vv

# What is expected comes from the flake that runs this script (lib.<system>.vmValidation
# prepends VMTEST_EXPECTATIONS, the architecture included); without it this repository's VM,
# with the architecture the portable runtime's make targets set.
expected_arch = os.environ.get("VMTEST_EXPECT_ARCH") or None
# After a passing boot suite, the booted machine is saved; a later portable run with the same
# script, image and machine resumes it here and checks it again (vmtest.checkpoint; under the
# NixOS driver the block always runs).
with checkpoint("booted", [vm]) as resumed:  # vm: the driver's namespace
    if not resumed:
        vm.start()
    profile = vv.expected_profile(vm, globals(), arch=expected_arch)
    vv.run_suite(
        "boot",
        [("reaches multi-user.target, no failed unit, arch and boot time", lambda: vv.check_boot(vm, profile))],
        [vm],
        driver.out_dir,
        subtest,
    )
