"""Container machines without a container: the nspawn command line, the VLAN plan, the spec's
``kind``, what a container refuses, and the notify/PID parsing (the integration tests boot them)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from vmtest.errors import RecipeError
from vmtest.machine_api import UnsupportedOnMachine, describe, machine_kind
from vmtest.portable.accel import Accelerator
from vmtest.portable.image.builder import Image
from vmtest.portable.image.recipe import load_recipe
from vmtest.portable.runtime.container import NspawnMachine
from vmtest.portable.runtime.container_net import hosts_file, links, shared_vlans
from vmtest.portable.runtime.driver_log import CompositeLogger
from vmtest.portable.runtime.nspawn_command import (
    MOUNT_SCRIPT,
    guest_command,
    host_pid,
    machine_name,
    notify_fields,
    nspawn_argv,
    start_argv,
)
from vmtest.portable.runtime.qemu import MachineConfig
from vmtest.portable.runtime.spec import parse_machine_specs

HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), "amd64")
OTHER_ARCH = "arm64" if HOST_ARCH == "amd64" else "amd64"
OTHER_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}[OTHER_ARCH]


def config(tmp_path: Path, name: str, number: int, vlans: tuple[int, ...], kind: str = "vm") -> MachineConfig:
    recipe_path = tmp_path / f"{name}.toml"
    recipe_path.write_text(f'arch = "{HOST_ARCH}"\n')
    image = Image(tmp_path, load_recipe(recipe_path), "6.12")
    return MachineConfig(name, image, Accelerator("tcg", "test", "x86_64"), number, vlans=vlans, kind=kind)


def table(tmp_path: Path, body: str, arch: str = HOST_ARCH) -> str:
    (tmp_path / "r.toml").write_text(f'arch = "{arch}"\n')
    path = tmp_path / "machines.toml"
    path.write_text(body)
    return str(path)


def test_links_mirror_a_vms_nics_and_fit_interface_names(tmp_path: Path) -> None:
    machine = config(tmp_path, "server", 254, (1, 255))
    first, second = links(machine)
    assert (first.inside, first.address, first.mac) == ("eth1", "192.168.1.254/24", machine.vlan_mac(1))
    assert (second.inside, second.address) == ("eth2", f"{machine.vlan_address(255)}/24")
    assert all(len(name) <= 15 for link in (first, second) for name in (link.outside, link.inside))
    assert first.outside != second.outside


def test_hosts_file_names_every_machine_after_localhost(tmp_path: Path) -> None:
    text = hosts_file([config(tmp_path, "a", 1, (1,)), config(tmp_path, "b", 2, (2, 1), "container")])
    assert text.splitlines() == ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback",
                                 "192.168.1.1 a", "192.168.2.2 b"]


def test_a_vm_and_a_container_on_one_vlan_are_refused(tmp_path: Path) -> None:
    vm, box = config(tmp_path, "vm", 1, (1, 2)), config(tmp_path, "box", 2, (2,), "container")
    problem = shared_vlans([vm, box])
    assert problem is not None and "vlan 2" in problem and "VM vm" in problem and "container box" in problem
    assert shared_vlans([vm, config(tmp_path, "box", 2, (3,), "container")]) is None
    assert shared_vlans([box, config(tmp_path, "other", 3, (2,), "container")]) is None


def test_machine_kind_in_the_machines_table(tmp_path: Path) -> None:
    specs = parse_machine_specs([table(tmp_path, '[machines.a]\nrecipe = "r.toml"\nkind = "container"\n'
                                                 '[machines.b]\nrecipe = "r.toml"\nvlans = [2]\n')])
    assert [(spec.name, spec.kind) for spec in specs] == [("a", "container"), ("b", "vm")]
    with pytest.raises(RecipeError, match="kind must be one of 'vm', 'container', got 'lxc'"):
        parse_machine_specs([table(tmp_path, '[machines.a]\nrecipe = "r.toml"\nkind = "lxc"\n')])
    with pytest.raises(RecipeError, match=f"runs natively, but the recipe is for {OTHER_MACHINE}"):
        parse_machine_specs([table(tmp_path, '[machines.a]\nrecipe = "r.toml"\nkind = "container"\n',
                                   arch=OTHER_ARCH)])
    with pytest.raises(RecipeError, match="vlan 1 has both the VM b and the container a"):
        parse_machine_specs([table(tmp_path, '[machines.a]\nrecipe = "r.toml"\nkind = "container"\n'
                                             '[machines.b]\nrecipe = "r.toml"\n')])


def test_run_refuses_a_vlan_shared_by_a_vm_and_a_container_with_exit_2(tmp_path: Path) -> None:
    machines = table(tmp_path, '[machines.a]\nrecipe = "r.toml"\nkind = "container"\n[machines.b]\nrecipe = "r.toml"\n')
    script = tmp_path / "t.py"
    script.write_text("a.succeed('true')\n")
    run = subprocess.run([sys.executable, "-m", "vmtest.portable.cli", "run", "--machines", machines,
                          "--out", str(tmp_path / "out"), str(script)], capture_output=True, text=True)
    assert run.returncode == 2, run.stdout + run.stderr
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "vlan 1 has both the VM b and the container a" in lines[0], lines


def test_nspawn_boots_the_overlay_with_the_run_files_bound_read_only(tmp_path: Path) -> None:
    files = {"/etc/hosts": tmp_path / "hosts", "/etc/fstab": tmp_path / "fstab"}
    argv = nspawn_argv("web", "web-abc", tmp_path / "state", tmp_path / "shared", files, "/proc/7/ns/net")
    assert argv[0] == "systemd-nspawn" and f"--directory={tmp_path / 'state' / 'root'}" in argv
    assert {"--register=no", "--keep-unit", "--machine=web-abc", "--network-namespace-path=/proc/7/ns/net",
            f"--bind={tmp_path / 'shared'}:/tmp/shared", f"--bind-ro={tmp_path / 'hosts'}:/etc/hosts",
            "--bind-ro=/dev/null:/etc/systemd/system/backdoor.service"} <= set(argv)
    assert argv[-2:] == ["--boot", "systemd.hostname=web"]
    assert "--private-network" in nspawn_argv("web", "web-abc", tmp_path, tmp_path, {}, None)


def test_the_start_command_makes_nspawn_the_first_process_of_its_own_namespaces(tmp_path: Path) -> None:
    argv = start_argv(tmp_path / "disk.img", tmp_path / "state", ["systemd-nspawn", "--boot"])
    assert argv[:8] == ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private", "--"]
    assert argv[8:] == ["/bin/sh", "-c", MOUNT_SCRIPT, "sh", str(tmp_path / "disk.img"), str(tmp_path / "state"),
                        "systemd-nspawn", "--boot"]
    assert "loop,ro" in MOUNT_SCRIPT and "mount -t overlay" in MOUNT_SCRIPT and "/run/systemd/nspawn" in MOUNT_SCRIPT
    # The mount script passes the rest of its arguments to exec untouched (run with /bin/sh, mounts skipped).
    echo = subprocess.run(["/bin/sh", "-c", 'shift 2 && exec "$@"', "sh", "a b", "c", "printf", "%s|", "x y", "z"],
                          capture_output=True, text=True, check=True)
    assert echo.stdout == "x y|z|"


def test_guest_command_is_the_backdoors_bash_with_its_timeout() -> None:
    line = guest_command("echo 'hi'", 30)
    assert "source /etc/profile" in line and "cd /tmp" in line and "exec 2>/dev/console" in line
    assert line.endswith("exec timeout 30 bash -c 'set -euo pipefail; echo '\"'\"'hi'\"'\"''")
    assert guest_command("true", None).endswith("exec bash -c 'set -euo pipefail; true'")


def test_notify_datagrams_and_the_leaders_host_pid() -> None:
    assert notify_fields(b"STATUS=Container running.\nX_NSPAWN_LEADER_PID=4") == {
        "STATUS": "Container running.", "X_NSPAWN_LEADER_PID": "4"}
    status = "Name:\tsystemd\nNSpid:\t638\t4\t1\nNSsid:\t638\t4\t1\n"
    assert host_pid(status, 4) and not host_pid(status, 1)
    assert not host_pid("Name:\tsystemd\nNSpid:\t638\n", 638)


def test_what_a_container_cannot_do_names_the_machine_and_its_kind(tmp_path: Path) -> None:
    machine = NspawnMachine(tmp_path / "out", tmp_path / "vmtest-abcd1234", tmp_path / "disk.img",
                            CompositeLogger([]), "box")
    assert machine_kind(machine) == "container" and describe(machine) == "container box (NspawnMachine)"
    assert machine.machine_name == "box-abcd1234"
    assert (machine.files["/etc/fstab"]).read_text().startswith("#")
    for method, arguments in (("screenshot", ("shot",)), ("send_key", ("ctrl-alt-delete",)),
                              ("send_monitor_command", ("info",)), ("forward_port", ()), ("reboot", ()),
                              ("wait_for_console_text", ("login:",)), ("get_tty_text", ("1",))):
        with pytest.raises(UnsupportedOnMachine, match=rf"{method}\(\) is not available on the container box "
                                                       r"\(NspawnMachine\)"):
            getattr(machine, method)(*arguments)
    assert not machine.is_up() and machine.boot_seconds() is None
    machine.release()  # never started: nothing to do


def test_the_nspawn_machine_name_is_a_valid_host_name() -> None:
    # A run directory vmtest-m_yo0spr gave "server-m_yo0spr", which nspawn refused ("Invalid machine name").
    assert machine_name("server", Path("/tmp/vmtest-m_yo0spr")) == "server-m-yo0spr"
    assert machine_name("Big_Box", Path("/tmp/vmtest-AbC")) == "big-box-abc"
    assert len(machine_name("x" * 80, Path("/tmp/vmtest-abc"))) == 64

