"""The VM validation suites (tests/vm) on the Debian twin of machines/nixos-vm.nix, for real.

The three testScripts run unchanged on a booted VM and its SSH peer; then each check is
shown to fail, with a message that names what is wrong, on a planted fault: a failed
unit, a user out of `docker`, sshd stopped, a missing tool, a replaced dotfile, a wrong
architecture, an exceeded boot budget, a reachable outside address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmtest.portable.runtime.driver import Driver
from vmtest.portable.runtime.driver_log import CompositeLogger, JunitLogger, TerminalLogger
from vmtest.portable.runtime.machine import QemuMachine
from vmtest.portable.runtime.spec import prepare_machines
from vmtest.suites import vm_validation as vv

from ..repo.repo_checks import REPO

pytestmark = pytest.mark.vm
SUITES = [REPO / "tests/vm" / name for name in ("boot.py", "services.py", "integration.py")]
KEY = "/etc/vmtest/test_ed25519"


def run_suites(machines_toml: Path, out: Path, arch: str, monkeypatch: pytest.MonkeyPatch) -> Driver:
    """Boot the machines and run the three testScripts as `vmtest run` does; returns the (open) driver."""
    monkeypatch.setenv("VMTEST_EXPECT_ARCH", arch)
    configs = prepare_machines([str(machines_toml)])
    logger = CompositeLogger([TerminalLogger(), JunitLogger(out / "vmtest-junit.xml")])
    driver = Driver(configs, SUITES[0].read_text(), out, logger, script_path=SUITES[0], more_scripts=SUITES[1:])
    try:
        driver.run_tests()
    except BaseException:
        driver.terminate()
        raise
    return driver


def assert_suites_reported(out: Path, arch: str) -> dict[str, object]:
    for suite in ("boot", "services", "integration"):
        summary = json.loads((out / f"{suite}-summary.json").read_text())
        assert summary["result"] == "passed", summary
        assert (out / f"{suite}-junit.xml").is_file() and (out / f"{suite}-report.html").is_file()
        assert summary["machines"]["vm"]["boot"]["seconds"] > 0, "the boot is on the page's timeline"
        assert (out / "logs" / suite / "vm" / "systemctl-failed.txt").is_file()
    performance = json.loads((out / "vm-validation-perf.json").read_text())["vm"]
    assert performance["arch"] == arch and performance["accelerator"] == "tcg"
    assert 0 < performance["boot_seconds"] <= performance["boot_budget_seconds"]
    assert performance["ssh_ready_uptime_seconds"] > 0
    assert set(performance["suites"]) == {"boot", "services", "integration"}
    return performance  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def x86_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Driver, Path]]:
    out = tmp_path_factory.mktemp("vm-validation-x86_64")
    with pytest.MonkeyPatch.context() as monkeypatch:
        driver = run_suites(REPO / "tests/vm/machines-x86_64.toml", out, "x86_64", monkeypatch)
    with driver:
        yield driver, out


@pytest.fixture(scope="module")
def vm(x86_run: tuple[Driver, Path]) -> QemuMachine:
    return next(m for m in x86_run[0].machines if m.name == "vm")


@pytest.fixture(scope="module")
def peer(x86_run: tuple[Driver, Path]) -> QemuMachine:
    return next(m for m in x86_run[0].machines if m.name == "peer")


@pytest.fixture(scope="module")
def profile(vm: QemuMachine) -> vv.VmProfile:
    return vv.profile_for(vm, arch="x86_64")


def test_the_three_suites_pass_on_x86_64(x86_run: tuple[Driver, Path]) -> None:
    performance = assert_suites_reported(x86_run[1], "x86_64")
    print(json.dumps(performance, indent=2))


def test_a_failed_unit_fails_the_boot_check(vm: QemuMachine, profile: vv.VmProfile) -> None:
    vm.execute("systemd-run --unit=planted-broken -p Type=oneshot /bin/sh -c 'echo planted-failure; exit 4'")
    try:
        with pytest.raises(vv.ValidationFailed) as failure:
            vv.check_boot(vm, profile)
        message = str(failure.value)
        assert "vm: systemctl --failed: 1 failed unit(s): planted-broken.service" in message
        assert "planted-failure" in message  # the unit's journal is in the message
    finally:
        vm.succeed("systemctl reset-failed planted-broken.service")
    vv.check_boot(vm, profile)


def test_wrong_architecture_and_exceeded_budget_fail_the_boot_check(vm: QemuMachine) -> None:
    with pytest.raises(vv.ValidationFailed, match="expected uname -m = aarch64, the guest says x86_64"):
        vv.check_boot(vm, vv.profile_for(vm, arch="aarch64"))
    with pytest.raises(vv.ValidationFailed, match=r"vm: boot time: booted in [\d.]+ s, over the budget of 0 s"):
        vv.check_boot(vm, vv.profile_for(vm, boot_budget_kvm_seconds=0.001))


def test_a_user_out_of_docker_fails_the_group_check(vm: QemuMachine, profile: vv.VmProfile) -> None:
    vm.succeed("gpasswd -d baleen docker")
    try:
        with pytest.raises(vv.ValidationFailed, match=r"vm: user baleen: is not in group\(s\) docker; id -nG: "):
            vv.check_user_groups(vm, profile.user, profile.user_groups)
    finally:
        vm.succeed("gpasswd -a baleen docker")
    vv.check_user_groups(vm, profile.user, profile.user_groups)


def test_stopped_sshd_fails_the_services_check(vm: QemuMachine, profile: vv.VmProfile) -> None:
    vm.succeed("systemctl stop ssh.service")
    try:
        with pytest.raises(vv.ValidationFailed) as failure:
            vv.check_services_active(vm, profile.services)
        assert "vm: service sshd.service: is inactive" in str(failure.value)
        assert "systemctl status sshd.service" in str(failure.value)
    finally:
        vm.succeed("systemctl start ssh.service")
    vv.check_services_active(vm, profile.services)


def test_a_missing_image_fails_the_docker_check(vm: QemuMachine, profile: vv.VmProfile) -> None:
    with pytest.raises(vv.ValidationFailed, match=r"vm: docker run: expected 'vmtest-container-ok'.*no-such\.tar"):
        vv.check_docker_runs_local_image(vm, profile.user, "/etc/vmtest/no-such.tar")


def test_a_replaced_dotfile_fails_the_user_environment_check(vm: QemuMachine, profile: vv.VmProfile) -> None:
    vm.succeed("runuser -u baleen -- sh -c 'rm ~/.vimrc && echo set nonumber > ~/.vimrc'")
    try:
        with pytest.raises(vv.ValidationFailed, match=r"vm: managed file ~baleen/.vimrc: expected a link into "
                                                      r"/usr/share/dotfiles/baleen/, found: -rw"):
            vv.check_user_environment(vm, profile)
    finally:
        vm.succeed("rm /home/baleen/.vimrc && systemctl start dotfiles-baleen.service")
    vv.check_user_environment(vm, profile)


def test_a_missing_tool_fails_the_dev_tools_check(vm: QemuMachine, peer: QemuMachine, profile: vv.VmProfile) -> None:
    vm.succeed("mv /usr/bin/gcc /usr/bin/gcc.planted-away")
    try:
        with pytest.raises(vv.ValidationFailed, match=r"peer: dev tools on vm: missing tools: gcc \(for baleen"):
            vv.check_dev_tools_over_ssh(peer, "vm", profile, KEY)
    finally:
        vm.succeed("mv /usr/bin/gcc.planted-away /usr/bin/gcc")
    vv.check_dev_tools_over_ssh(peer, "vm", profile, KEY)


def test_reachable_address_and_unknown_peer_fail_the_network_checks(vm: QemuMachine, peer: QemuMachine) -> None:
    # The VM's sshd stands in for "the outside": a reachable address must fail the isolation check.
    vm_address = vv.check_name_resolution(peer, ["vm"])["vm"]
    with pytest.raises(vv.ValidationFailed, match=rf"peer: isolation: reached {vm_address}:22: the VM has a route"):
        vv.check_no_internet(peer, address=vm_address, port=22)
    with pytest.raises(vv.ValidationFailed, match="vm: name resolution: no-such-peer does not resolve"):
        vv.check_name_resolution(vm, ["no-such-peer"])
