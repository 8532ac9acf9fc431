# Services suite (seed 002). One testScript for both runtimes:
#   nix build .#checks.<system>.vm-service       (lib/nix/vm-validation.nix)
#   make test-vm-x86_64 / make test-vm-aarch64     (portable runtime)
# Checks: the expected services active (sshd and docker here); the user in the expected groups
# (wheel and docker); docker runs an image imported from a local tarball (no registry) as the
# user; the user environment was activated (Home Manager on NixOS, its dotfiles twin on
# Debian) and its links have the right content. What is expected comes from the flake that
# runs this script (VMTEST_EXPECTATIONS), else this repository's VM.
from collections.abc import Callable

from vmtest.suites import vm_validation as vv

vm.start()  # the driver's namespace
profile = vv.expected_profile(vm, globals())
steps: list[tuple[str, Callable[[], object]]] = [
    ("reaches multi-user.target", lambda: vm.wait_for_unit("multi-user.target")),
    (f"{' and '.join(unit.removesuffix('.service') for unit in profile.services) or 'no service'} are active",
     lambda: vv.check_services_active(vm, profile.services)),
    (f"the user is in {' and '.join(profile.user_groups) or 'no group'}",
     lambda: vv.check_user_groups(vm, profile.user, profile.user_groups)),
]
if profile.docker:
    steps.append(("docker runs a locally imported image as the user",
                  lambda: vv.check_docker_runs_local_image(vm, profile.user, profile.tiny_rootfs)))
steps.append(("the user environment is activated", lambda: vv.check_user_environment(vm, profile)))
vv.run_suite("services", steps, [vm], driver.out_dir, subtest)
