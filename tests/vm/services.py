# Services suite (seed 002). One testScript for both runtimes:
#   nix build .#checks.<system>.vm-service       (tests/vm/service-test.nix)
#   make test-vm-x86_64 / make test-vm-aarch64     (portable runtime)
# Checks: sshd and docker active; the user in wheel and docker; docker runs an image imported
# from a local tarball (no registry) as the user; the user environment was activated (Home
# Manager on NixOS, its dotfiles twin on Debian) and its links have the right content.
from vmtest.suites import vm_validation as vv

vm.start()  # the driver's namespace
profile = vv.profile_for(vm)
vv.run_suite(
    "services",
    [
        ("reaches multi-user.target", lambda: vm.wait_for_unit("multi-user.target")),
        ("sshd and docker are active", lambda: vv.check_services_active(vm, profile.services)),
        ("the user is in wheel and docker", lambda: vv.check_user_groups(vm, profile.user, profile.user_groups)),
        ("docker runs a locally imported image as the user",
         lambda: vv.check_docker_runs_local_image(vm, profile.user, profile.tiny_rootfs)),
        ("the user environment is activated", lambda: vv.check_user_environment(vm, profile)),
    ],
    [vm],
    driver.out_dir,
    subtest,
)
