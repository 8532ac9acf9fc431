"""Container machines for real: systemd-nspawn containers booted from the images VMs boot, their
execute semantics, their VLANs, and that nothing of them outlives a run, however it ends."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vmtest.errors import RequestedAssertionFailed
from vmtest.machine_api import UnsupportedOnMachine
from vmtest.portable.runtime.container import NspawnMachine
from vmtest.portable.runtime.driver import Driver
from vmtest.waiting import Deadline, poll

from ..conftest import RECIPES

MINIMAL = RECIPES / "minimal.toml"
# machines/debian-vm.toml: it has busybox (ping) and iproute2.
DEBIAN_VM = Path(__file__).parents[4] / "machines" / "debian-vm.toml"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/systemd-nspawn").exists(),
    reason="containers need root and systemd-nspawn (apt-get install systemd-container)")


def machines_table(tmp_path: Path, machines: dict[str, tuple[Path, list[int]]]) -> str:
    path = tmp_path / "machines.toml"
    path.write_text("".join(f'[machines.{name}]\nrecipe = "{recipe}"\nkind = "container"\nvlans = {vlans}\n'
                            for name, (recipe, vlans) in machines.items()))
    return str(path)


def leftovers(marker: str, pids: list[int]) -> list[str]:
    """What of a run is still on the host: live processes among ``pids``, mounts, loop devices and
    nspawn files naming ``marker`` (the run directory's suffix)."""
    found = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            found.append(f"process {pid} ({Path(f'/proc/{pid}/comm').read_text().strip()})")
    found += [f"mount {line}" for line in Path("/proc/self/mountinfo").read_text().splitlines() if marker in line]
    loops = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                           capture_output=True, text=True, check=True).stdout
    found += [f"loop device {line.strip()}" for line in loops.splitlines() if marker in line]
    nspawn_run = Path("/run/systemd/nspawn/propagate")
    found += [f"nspawn file {path}" for path in (nspawn_run.iterdir() if nspawn_run.is_dir() else ())
              if marker in path.name]
    return found


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def test_a_container_runs_commands_as_the_vm_backdoor_does(make_driver: Callable[..., Driver],
                                                          tmp_path: Path) -> None:
    driver = make_driver(machines_table(tmp_path, {"box": (MINIMAL, [1])}))
    box = driver.machines[0]
    assert isinstance(box, NspawnMachine)
    assert driver.test_symbols()["machines_nspawn"] == [box] and driver.test_symbols()["machines_qemu"] == []
    started = time.monotonic()
    assert box.succeed("cat /etc/vmtest-recipe") == "minimal\n"
    first = time.monotonic() - started
    print(f"container start to first command: {first:.2f} s (boot_seconds {box.boot_seconds():.2f} s)")
    assert first < 30
    # What a script can tell: status, stdout only (stderr goes to the console), environment, directory.
    assert box.execute("echo out; echo err >&2; exit 3") == (3, "out\n")
    # No getty hangs up the console the commands' stderr goes to (that failed `echo err >&2` with EIO).
    assert box.execute("systemctl is-enabled console-getty.service") == (1, "masked\n")
    assert box.succeed("echo $HOME $USER; pwd; hostname") == "/root root\n/tmp\nbox\n"
    assert box.execute("false; echo not reached") == (1, "")  # set -e, as the backdoor's bash -c
    assert box.execute("false | true") == (1, "")  # pipefail
    started = time.monotonic()
    assert box.execute("echo before; sleep 30", timeout=2) == (124, "before\n")
    assert time.monotonic() - started < 10
    with pytest.raises(RequestedAssertionFailed, match="guest timeout expired"):
        box.succeed("sleep 30", timeout=1)
    box.wait_for_unit("multi-user.target", timeout=60)
    with pytest.raises(RequestedAssertionFailed, match=r"broken\.service.*failed"):
        box.systemctl("start broken.service")
        box.wait_for_unit("broken.service", timeout=30)
    # Files through the shared directory.
    source = tmp_path / "hello.txt"
    source.write_text("from the host\n")
    box.copy_from_host(str(source), "/root/in/hello.txt")
    box.succeed("grep -q 'from the host' /root/in/hello.txt && echo back > /root/out.txt")
    box.copy_from_machine("/root/out.txt", "copied")
    assert (driver.out_dir / "copied" / "out.txt").read_text() == "back\n"
    # The console goes to the machine's log, as a VM's serial console.
    assert "Detected virtualization systemd-nspawn" in box.console_log_path.read_text()
    # What a container has not: a clear error naming it.
    with pytest.raises(UnsupportedOnMachine, match=r"screenshot\(\) is not available on the container box"):
        box.screenshot("screen")
    # State survives shutdown and start, as a VM's disk; a crash ends it at once.
    box.shutdown()
    assert not box.is_up() and box.process is not None and box.process.poll() is not None
    box.start()
    assert box.succeed("cat /root/out.txt") == "back\n"
    started = time.monotonic()
    box.crash()
    assert time.monotonic() - started < 10 and not box.is_up()


def test_containers_reach_each_other_by_name_on_their_vlan_only(make_driver: Callable[..., Driver],
                                                               tmp_path: Path) -> None:
    driver = make_driver(machines_table(tmp_path, {
        "alpha": (DEBIAN_VM, [1]), "beta": (DEBIAN_VM, [1]), "gamma": (DEBIAN_VM, [2]),
    }))
    links_before = host_links()
    alpha, beta, gamma = driver.machines
    driver.start_all()
    assert "192.168.1.2 beta" in alpha.succeed("cat /etc/hosts")
    assert alpha.succeed("ip -o -4 address show dev eth1").split()[3] == "192.168.1.1/24"
    alpha.succeed("busybox ping -c 1 -W 5 beta")
    beta.succeed("busybox ping -c 1 -W 5 alpha")
    # Negative controls: gamma (vlan 2) is unreachable from vlan 1, and nothing has a way off this host.
    status, _ = alpha.execute("busybox ping -c 1 -W 2 192.168.2.3")
    assert status != 0
    status, _ = gamma.execute("busybox ping -c 1 -W 2 192.168.1.1")
    assert status != 0
    assert alpha.succeed("ip route show default") == ""
    assert gamma.succeed("ip -o link show | grep -c ': eth'") == "1\n"
    # The bridges and veths are in the run's own namespaces, not on the host.
    assert host_links() == links_before


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_nothing_outlives_a_run_that_is_killed(tmp_path: Path, signum: int) -> None:
    machines = machines_table(tmp_path, {"one": (MINIMAL, [1]), "two": (MINIMAL, [1])})
    script = tmp_path / "t.py"
    script.write_text("start_all()\none.succeed('true')\ntwo.succeed('ping6 -c1 ::1 || true')\n"
                      "print('BOTH-UP', flush=True)\nimport time\ntime.sleep(600)\n")
    links_before = host_links()
    run = subprocess.Popen([sys.executable, "-m", "vmtest.portable.cli", "run", "--machines", machines,
                            "--out", str(tmp_path / "out"), "--progress", "plain", str(script)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert run.stdout is not None
    output: list[str] = []
    for line in run.stdout:
        output.append(line)
        if "BOTH-UP" in line:
            break
    text = "".join(output)
    assert "BOTH-UP" in text, text[-3000:]
    marker = re.search(r"/tmp/vmtest-(\w+)/", text)
    assert marker is not None, text[-3000:]
    pids = [int(pid) for pid in re.findall(r"\((?:holder )?pid (\d+)", text)]
    # The containers' own processes: every descendant of the nspawns, found now, before the kill.
    for pid in list(pids):
        pids += [int(child) for child in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                        text=True).stdout.split()]
    for pid in list(pids):
        pids += [int(child) for child in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                        text=True).stdout.split()]
    assert len(pids) >= 6, text[-3000:]  # two holders, two unshares, two nspawns (and their containers)
    assert leftovers(marker.group(1), pids), "the check sees a live run"
    run.send_signal(signum)
    run.communicate(timeout=60)
    found: list[str] = []

    def clean(_last_try: bool) -> bool:
        nonlocal found
        found = leftovers(marker.group(1), pids)
        return not found

    assert poll(clean, Deadline(15), interval=0.2), f"left after {signal.Signals(signum).name}: {found}"
    assert host_links() == links_before
