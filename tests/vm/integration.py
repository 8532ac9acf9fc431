# Integration suite (seed 002). One testScript for both runtimes:
#   nix build .#checks.<system>.vm-integration   (lib/nix/vm-validation.nix)
#   make test-vm-x86_64 / make test-vm-aarch64     (portable runtime)
# A second machine on the VLAN (peer) logs in to the VM with a key, as the user, and uses
# the dev tools there: make + gcc build and run a C file, git commits it with the identity of
# the managed git config. Peers resolve each other; the VM cannot reach the internet, and
# nothing here needs it. What is expected (the user, the tools, the git identity) comes from
# the flake that runs this script (VMTEST_EXPECTATIONS), else this repository's VM.
from vmtest.suites import vm_validation as vv

KEY = "/etc/vmtest/test_ed25519"  # on peer; its public half is in the user's authorized_keys
start_all()  # the driver's namespace
profile = vv.expected_profile(vm, globals())


def both_up() -> None:
    vm.wait_for_unit("multi-user.target")
    peer.wait_for_unit("multi-user.target")


vv.run_suite(
    "integration",
    [
        ("both machines are up", both_up),
        ("peers resolve each other",
         lambda: {**vv.check_name_resolution(peer, [vm.name]), **vv.check_name_resolution(vm, [peer.name])}),
        ("ssh key login as the user", lambda: vv.wait_for_ssh_login(peer, vm, profile.user, KEY)),
        (vv.dev_tools_title(profile), lambda: vv.check_dev_tools_over_ssh(peer, vm.name, profile, KEY)),
        ("no route off this machine", lambda: vv.check_no_internet(vm)),
    ],
    [vm, peer],
    driver.out_dir,
    subtest,
)
