# Services suite (seed 002). One testScript for both runtimes:
#   nix build .#checks.<system>.vm-service       (tests/vm/service-test.nix)
#   make test-vm-x86_64 / make test-vm-aarch64     (portable runtime)
# Checks: sshd and docker active; the user in wheel and docker; docker runs an image imported
# from a local tarball (no registry) as the user; the user environment was activated (Home
# Manager on NixOS, its dotfiles twin on Debian) and its links have the right content.
from vmtest.suites import vm_validation as vv

vm.start()  # noqa: F821 - the driver's namespace
profile = vv.profile_for(vm)  # noqa: F821
vv.run_suite(
    "services",
    [
        ("reaches multi-user.target", lambda: vm.wait_for_unit("multi-user.target")),  # noqa: F821
        ("sshd and docker are active", lambda: vv.check_services_active(vm, profile.services)),  # noqa: F821
        ("the user is in wheel and docker", lambda: vv.check_user_groups(vm, profile.user, profile.user_groups)),  # noqa: F821
        ("docker runs a locally imported image as the user",
         lambda: vv.check_docker_runs_local_image(vm, profile.user, profile.tiny_rootfs)),  # noqa: F821
        ("the user environment is activated", lambda: vv.check_user_environment(vm, profile)),  # noqa: F821
    ],
    [vm],  # noqa: F821
    driver.out_dir,  # noqa: F821
    subtest,  # noqa: F821
)
