"""The Machine API on one real Debian trixie x86_64 VM (TCG here)."""

from __future__ import annotations

import hashlib
import socket
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from vmtest.errors import RequestedAssertionFailed
from vmtest.portable.runtime.driver import Driver
from vmtest.portable.runtime.logger import CompositeLogger, JunitLogger, TerminalLogger
from vmtest.portable.runtime.machine import QemuMachine
from vmtest.portable.runtime.spec import prepare_machines

from ..conftest import RECIPES

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    out = tmp_path_factory.mktemp("api-out")
    configs = prepare_machines([f"machine={RECIPES / 'minimal.toml'}"])
    logger = CompositeLogger([TerminalLogger(), JunitLogger(out / "junit.xml")])
    with Driver(configs, "", out, logger) as driver:
        driver.start_all()
        driver.machines[0].wait_for_unit("multi-user.target")
        yield driver


@pytest.fixture
def machine(driver: Driver) -> QemuMachine:
    return driver.machines[0]


def test_execute_framing(machine: QemuMachine) -> None:
    assert machine.execute("echo hello") == (0, "hello\n")
    assert machine.execute("exit 3") == (3, "")
    assert machine.execute("echo partial; false; echo never")[0] == 1  # set -e applies
    assert machine.execute("false | true")[0] == 1  # pipefail applies
    assert machine.execute("echo x; exit 5", check_return=False) == (-1, "x\n")
    assert machine.execute("touch /tmp/no-output", check_output=False) == (-2, "")
    machine.wait_for_file("/tmp/no-output")
    assert machine.execute("echo $((6 * 7))")[1] == "42\n"


def test_guest_timeout_gives_124(machine: QemuMachine) -> None:
    started = time.monotonic()
    assert machine.execute("sleep 30", timeout=2)[0] == 124
    assert machine.execute("sleep 30", timeout=timedelta(seconds=1))[0] == 124
    assert time.monotonic() - started < 20
    with pytest.raises(RequestedAssertionFailed, match=r"exit code 124\).*guest timeout"):
        machine.succeed("sleep 30", timeout=1)


def test_multi_megabyte_and_binary_output(machine: QemuMachine) -> None:
    big = machine.succeed("head -c 6000000 /dev/zero | tr '\\0' a")
    assert len(big) == 6_000_000 and set(big) == {"a"}
    digest = machine.succeed("head -c 3000000 /dev/urandom | tee /tmp/random | sha256sum | cut -d' ' -f1").strip()
    assert machine.succeed("base64 -w0 /tmp/random | sha256sum | cut -d' ' -f1").strip() != digest
    assert machine.execute("printf 'a\\000b\\377c'")[1] == "a\x00b\ufffdc"


def test_succeed_and_fail_raise_with_context(machine: QemuMachine) -> None:
    assert machine.succeed("echo one", "echo two") == "one\ntwo\n"
    expected = r"machine: command `echo out; exit 7` failed \(exit code 7\).*out"
    with pytest.raises(RequestedAssertionFailed, match=expected):
        machine.succeed("echo out; exit 7")
    assert machine.fail("echo nope; exit 1") == "nope\n"
    with pytest.raises(RequestedAssertionFailed, match="unexpectedly succeeded"):
        machine.fail("true")


def test_wait_until_succeeds_and_fails(machine: QemuMachine) -> None:
    machine.succeed("rm -f /tmp/flag; (sleep 2; touch /tmp/flag) >/dev/null 2>&1 &")
    assert machine.wait_until_succeeds("test -e /tmp/flag && echo seen", timeout=30) == "seen\n"
    machine.succeed("(sleep 2; rm /tmp/flag) >/dev/null 2>&1 &")
    machine.wait_until_fails("test -e /tmp/flag", timeout=30)
    with pytest.raises(RequestedAssertionFailed, match=r"did not succeed.*last exit code 1"):
        machine.wait_until_succeeds("test -e /nonexistent", timeout=2)


@pytest.mark.fault(fault='a unit the testScript waits for fails',
                   handling="fails at once (not at the timeout) with the unit's state and journal")
def test_wait_for_unit_fails_fast_on_failed_unit(machine: QemuMachine) -> None:
    machine.execute("systemctl start broken.service")
    started = time.monotonic()
    with pytest.raises(RequestedAssertionFailed) as raised:
        machine.wait_for_unit("broken.service", timeout=600)
    assert time.monotonic() - started < 30, "must fail at once, not after the timeout"
    message = str(raised.value)
    assert "broken.service" in message and "failed" in message
    assert "broken-unit-ran" in message, "the unit's journal belongs in the error"


def test_wait_for_unit_fails_on_inactive_unit_without_jobs(machine: QemuMachine) -> None:
    machine.succeed("mkdir -p /run/systemd/system",
                    "printf '[Service]\\nExecStart=/bin/true\\n' > /run/systemd/system/vmtest-idle.service",
                    "systemctl daemon-reload")
    with pytest.raises(RequestedAssertionFailed, match="inactive and there are no pending jobs"):
        machine.wait_for_unit("vmtest-idle.service", timeout=600)


@pytest.mark.fault(fault="`wait_for_unit` on a unit that does not exist",
                   handling="fails at once: the unit 'does not exist (no such unit: LoadState=not-found)'")
def test_wait_for_unit_says_no_such_unit(machine: QemuMachine) -> None:
    started = time.monotonic()
    with pytest.raises(RequestedAssertionFailed) as raised:
        machine.wait_for_unit("vmtest-never-defined.service", timeout=600)
    assert time.monotonic() - started < 30
    assert "unit 'vmtest-never-defined.service' does not exist (no such unit" in str(raised.value)


def test_systemd_helpers(machine: QemuMachine) -> None:
    machine.wait_for_unit("backdoor.service", timeout=timedelta(seconds=60))
    info = machine.get_unit_info("backdoor.service")
    assert info["ActiveState"] == "active" and info["Id"] == "backdoor.service"
    assert machine.get_unit_property("backdoor.service", "KillSignal") == "1"
    status, output = machine.systemctl("is-active backdoor.service")
    assert (status, output.strip()) == (0, "active")
    machine.require_unit_state("backdoor.service")
    with pytest.raises(RequestedAssertionFailed, match=r"expected unit 'broken\.service' to be in state 'active'"):
        machine.require_unit_state("broken.service", "active")
    assert machine.start_job("systemd-hostnamed.service")[0] == 0
    assert machine.stop_job("systemd-hostnamed.service")[0] == 0


def test_ports_and_sockets_without_netcat(machine: QemuMachine) -> None:
    machine.succeed("systemd-run --unit=web python3 -m http.server 8000 --bind 127.0.0.1")
    machine.wait_for_open_port(8000, timeout=60)
    machine.succeed("systemctl stop web")
    machine.wait_for_closed_port(8000, timeout=30)
    with pytest.raises(RequestedAssertionFailed, match=r"TCP port localhost:8001 to open after .*timeout 2"):
        machine.wait_for_open_port(8001, timeout=2)
    machine.succeed(
        "systemd-run --unit=sock python3 -c "
        "'import socket,time; s=socket.socket(socket.AF_UNIX); s.bind(\"/run/t.sock\"); s.listen(); time.sleep(600)'"
    )
    machine.wait_for_open_unix_socket("/run/t.sock", timeout=60)
    with pytest.raises(RequestedAssertionFailed, match=r"unix socket /run/none\.sock"):
        machine.wait_for_open_unix_socket("/run/none.sock", timeout=2)


def test_file_transfer(machine: QemuMachine, tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 4000)
    machine.copy_from_host(str(payload), "/root/in/payload.bin")
    expected = hashlib.sha256(payload.read_bytes()).hexdigest()
    assert machine.succeed("sha256sum /root/in/payload.bin").split()[0] == expected
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "f.txt").write_text("in a folder\n")
    machine.copy_from_host(str(folder), "/root/folder")
    assert machine.succeed("cat /root/folder/sub/f.txt") == "in a folder\n"
    small = tmp_path / "small.txt"
    small.write_text("via the shell\n")
    machine.copy_from_host_via_shell(str(small), "/root/deep/small.txt")
    assert machine.succeed("cat /root/deep/small.txt") == "via the shell\n"
    machine.copy_from_machine("/root/in/payload.bin", "fromvm")
    copied = machine.out_dir / "fromvm" / "payload.bin"
    assert hashlib.sha256(copied.read_bytes()).hexdigest() == expected
    machine.copy_from_vm("/root/folder", "")
    assert (machine.out_dir / "folder" / "sub" / "f.txt").read_text() == "in a folder\n"


def test_console(machine: QemuMachine) -> None:
    assert "connecting to host..." in machine.get_console_log()
    machine.succeed("echo console-marker-$((40 + 2)) > /dev/ttyS0")
    line = machine.wait_for_console_text(r"console-marker-\d+", timeout=30)
    assert "console-marker-42" in line
    with pytest.raises(RequestedAssertionFailed, match="timed out waiting for console text"):
        machine.wait_for_console_text("never-printed-text", timeout=1)
    assert machine.console_log_path.is_file()


def test_monitor_screenshot_keyboard(machine: QemuMachine) -> None:
    assert "VM status: running" in machine.send_monitor_command("info status")
    machine.screenshot("api-screen")
    png = (machine.out_dir / "api-screen.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    machine.wait_until_tty_matches("1", "login:", timeout=60)
    machine.send_chars("Typed-By_vmtest")
    machine.wait_until_tty_matches("1", r"login: Typed-By_vmtest", timeout=60)
    with pytest.raises(RequestedAssertionFailed, match="never matched"):
        machine.wait_until_tty_matches("1", "text nobody typed", timeout=1)
    assert machine.qmp_client is not None
    assert machine.qmp_client.send("query-status")["status"] == "running"


def test_forward_port_binds_loopback_only(machine: QemuMachine) -> None:
    machine.succeed("mkdir -p /srv/www && echo forwarded > /srv/www/index.html")
    machine.succeed("systemd-run --unit=www python3 -m http.server 80 --directory /srv/www")
    machine.wait_for_open_port(80, timeout=60)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    machine.forward_port(port, 80)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read()
    assert body == b"forwarded\n"
    listening = Path("/proc/net/tcp").read_text()
    assert f":{port:04X} " in listening
    assert f"00000000:{port:04X}" not in listening, "the forward must not listen on all interfaces"


def test_sleep_and_logging(machine: QemuMachine) -> None:
    started = time.monotonic()
    machine.sleep(timedelta(seconds=1))
    machine.sleep(1)
    assert time.monotonic() - started >= 2
    with machine.nested("a nested section"):
        machine.log("inside")
    machine.start()  # idempotent
    assert machine.is_up()
