"""Conformance: upstream-style testScripts per area, run in the driver's namespace on real VMs.

Each script asserts upstream's documented behaviour with its own negative control
(a wait that must fail, raising RequestedAssertionFailed as upstream's does). Areas:
systemd and units, waits, console and keyboard, files and copy, lifecycle (reboot on x86_64,
shutdown, crash, restart, cleanup_statedir, the run record),
networking with block/unblock, monitor and QMP, OCR, X11 (a desktop twin, and the named
failure without one); the serial console and lifecycle also on aarch64, in test_aarch64.py.
The logic without VMs: tests/unit/test_machine_logic.py.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from vmtest.portable.runtime.driver import Driver

from ..conftest import RECIPES

pytestmark = pytest.mark.vm
MINIMAL = RECIPES / "minimal.toml"
MINIMAL_ARM64 = RECIPES / "minimal-arm64.toml"

# The negative controls: `must_fail(lambda: …)` raises unless the call raises
# RequestedAssertionFailed (an AssertionError, as upstream's) whose text contains `says`.
PRELUDE = '''
def must_fail(call, says):
    try:
        call()
    except AssertionError as error:
        assert says in str(error), f"failed, but without {says!r}: {error}"
        return
    raise Exception(f"expected a failure saying {says!r}")
'''

SERIAL_CONSOLE = PRELUDE + r'''
machine.wait_for_unit("multi-user.target")

# the serial console: the PL011 on aarch64's virt machine, the 8250 on x86_64's pc
serial = "/dev/ttyAMA0" if machine.succeed("uname -m").strip() == "aarch64" else "/dev/ttyS0"

with subtest("wait_for_console_text searches all text gathered during the call"):
    machine.succeed(f"printf 'span-a-1\\nspan-b-2\\n' > {serial}")
    machine.wait_for_console_text(r"span-a-\d.*?span-b-\d", timeout=60)  # lines joined as upstream's
    # negative control: lines consumed by a call are not seen by the next
    must_fail(lambda: machine.wait_for_console_text("span-a-1", timeout=3), "console text")
    assert "span-b-2" in machine.get_console_log()
    assert any("span-a-1" in line for line in machine.full_console_log)

with subtest("send_console types on the serial line"):
    # a reader on the serial line answers what send_console typed there
    machine.succeed(f"systemd-run --expand-environment=no sh -c 'exec 3< {serial}; "
                    f"echo serial-reader-ready > {serial}; read -r line <&3; echo \"got:$line\" > {serial}'")
    machine.wait_for_console_text("serial-reader-ready", timeout=30)
    machine.send_console("typed-on-serial\n")
    machine.wait_for_console_text("got:typed-on-serial", timeout=60)
'''

KEYBOARD_AND_TTY = PRELUDE + r'''
SUBMITTED = r"^(?![\s\S]*login: conformance)"  # the typed name is no longer on the screen

with subtest("send_key maps one character as send_chars does"):
    machine.wait_until_tty_matches("1", "login:", timeout=120)
    machine.send_chars("conformance")
    machine.wait_until_tty_matches("1", "login: conformance", timeout=30)
    # negative control: typed but not submitted, the name stays on the screen
    must_fail(lambda: machine.wait_until_tty_matches("1", SUBMITTED, timeout=3), "never matched")
    t.assertIn("login: conformance", machine.get_tty_text("1"))

with subtest("dump_tty_contents copies the tty into the journal"):
    machine.dump_tty_contents("1")
    machine.wait_until_succeeds("journalctl -b --no-pager | grep -q 'login: conformance'", timeout=30)

with subtest("send_key sends one character as its key: Return submits the line"):
    machine.send_key("\n")  # Return, as upstream maps it
    machine.wait_until_tty_matches("1", SUBMITTED, timeout=60)
'''

UNITS = PRELUDE + """
machine.wait_for_unit("multi-user.target")

with subtest("wait_for_unit, get_unit_info, get_unit_property, systemctl"):
    machine.wait_for_unit("backdoor.service", timeout=60)
    info = machine.get_unit_info("backdoor.service")
    t.assertEqual((info["Id"], info["ActiveState"]), ("backdoor.service", "active"))
    t.assertEqual(machine.get_unit_property("backdoor.service", "KillSignal"), "1")
    status, output = machine.systemctl("is-active backdoor.service")
    t.assertEqual((status, output.strip()), (0, "active"))
    # negative control: a unit that does not exist is said to be missing, not waited for
    must_fail(lambda: machine.wait_for_unit("no-such.service", timeout=30), "does not exist")

with subtest("require_unit_state"):
    machine.require_unit_state("backdoor.service")
    must_fail(lambda: machine.require_unit_state("broken.service", "active"),
              "expected unit 'broken.service' to be in state 'active'")

with subtest("start_job, stop_job and wait_for_job"):
    machine.wait_for_job("multi-user.target")
    t.assertEqual(machine.start_job("systemd-hostnamed.service")[0], 0)
    machine.wait_for_unit("systemd-hostnamed.service", timeout=60)
    t.assertEqual(machine.stop_job("systemd-hostnamed.service")[0], 0)
    machine.wait_until_fails("systemctl is-active systemd-hostnamed.service", timeout=30)
    # negative control: a unit that fails makes wait_for_job fail at once, as wait_for_unit does
    machine.start_job("broken.service")
    must_fail(lambda: machine.wait_for_job("broken.service"), "reached state 'failed'")

with subtest("the testScript namespace"):
    t.assertEqual((machines, machines_qemu, machines_nspawn), ([machine], [machine], []))
    t.assertIsInstance(machine, Machine)
    t.assertIsInstance(machine, BaseMachine)
    t.assertIs(driver.machines[0], machine)
    t.assertEqual([vlan.nr for vlan in vlans], [1])
    serial_stdout_off()
    serial_stdout_on()
    debug.breakpoint()  # upstream's no-op without the debug hook
    log.info("a line from the testScript")

with subtest("join_all waits for every machine to power off"):
    # no status request: the shutdown may have stopped the guest's shell before it could answer one
    machine.execute("systemctl poweroff --no-block", check_return=False)
    join_all()
    t.assertFalse(machine.booted or machine.is_up())
"""

WAITS = PRELUDE + r"""
machine.wait_for_unit("multi-user.target")

def later(seconds, command):
    machine.succeed(f"systemd-run --on-active={seconds} --timer-property=AccuracySec=100ms sh -c '{command}'")

with subtest("wait_until_succeeds returns the output of the try that succeeded"):
    later(3, "echo ready > /tmp/later")
    t.assertEqual(machine.wait_until_succeeds("cat /tmp/later", timeout=60), "ready\n")
    must_fail(lambda: machine.wait_until_succeeds("echo not-yet; false", timeout=3), "not-yet")

with subtest("wait_until_fails"):
    later(3, "rm /tmp/later")
    machine.wait_until_fails("test -e /tmp/later", timeout=60)
    must_fail(lambda: machine.wait_until_fails("true", timeout=3), "kept succeeding")

with subtest("wait_for_file"):
    later(3, "touch /tmp/file-later")
    machine.wait_for_file("/tmp/file-later", timeout=60)
    must_fail(lambda: machine.wait_for_file("/tmp/never", timeout=3), "file /tmp/never")

with subtest("wait_for_open_port and wait_for_closed_port"):
    machine.succeed("systemd-run --unit=web python3 -m http.server 8000 --bind 127.0.0.1")
    machine.wait_for_open_port(8000, timeout=60)
    must_fail(lambda: machine.wait_for_closed_port(8000, timeout=3), "TCP port localhost:8000 to close")
    machine.succeed("systemctl stop web")
    machine.wait_for_closed_port(8000, timeout=30)
    must_fail(lambda: machine.wait_for_open_port(8001, timeout=2), "TCP port localhost:8001 to open")

with subtest("wait_for_open_unix_socket, stream and datagram"):
    for kind, is_datagram in (("SOCK_STREAM", False), ("SOCK_DGRAM", True)):
        path = f"/run/{kind}.sock"
        listen = "s.listen(); " if not is_datagram else ""
        machine.succeed(
            f"systemd-run python3 -c 'import socket, time; s = socket.socket(socket.AF_UNIX, socket.{kind}); "
            f"s.bind(\"{path}\"); {listen}time.sleep(600)'"
        )
        machine.wait_for_open_unix_socket(path, is_datagram=is_datagram, timeout=60)
    must_fail(lambda: machine.wait_for_open_unix_socket("/run/none.sock", timeout=2), "unix socket /run/none.sock")

with subtest("retry and polling_condition from the namespace"):
    tries = []
    retry(lambda last_try: tries.append(last_try) or len(tries) == 2, timeout=10)
    t.assertEqual(tries, [False, False])
    must_fail(lambda: retry(lambda last_try: False, timeout=2), "timed out")

    @polling_condition(seconds_interval=1)
    def backdoor_answers():
        machine.succeed("true")

    with backdoor_answers:
        machine.succeed("sleep 2")

    @polling_condition(seconds_interval=0)
    def flag_file_exists():
        machine.succeed("test -e /tmp/flag")

    machine.succeed("touch /tmp/flag")
    with flag_file_exists:
        machine.succeed("rm /tmp/flag")
        # negative control: the condition broke, so the next command fails naming it
        must_fail(lambda: machine.succeed("true"), "flag_file_exists")
"""

FILES_AND_COPY = PRELUDE + r"""
import hashlib, pathlib, tempfile
machine.wait_for_unit("multi-user.target")
host = pathlib.Path(tempfile.mkdtemp(dir=machine.out_dir))
payload = host / "payload.bin"
payload.write_bytes(bytes(range(256)) * 4000)
digest = hashlib.sha256(payload.read_bytes()).hexdigest()

with subtest("copy_from_host: a file and a directory"):
    machine.copy_from_host(str(payload), "/root/in/payload.bin")
    t.assertEqual(machine.succeed("sha256sum /root/in/payload.bin").split()[0], digest)
    (host / "folder" / "sub").mkdir(parents=True)
    (host / "folder" / "sub" / "f.txt").write_text("in a folder\n")
    machine.copy_from_host(str(host / "folder"), "/root/folder")
    t.assertEqual(machine.succeed("cat /root/folder/sub/f.txt"), "in a folder\n")
    # negative control: a source that does not exist raises
    try:
        machine.copy_from_host(str(host / "missing"), "/root/missing")
    except FileNotFoundError:
        pass
    else:
        raise Exception("copy_from_host of a missing file did not raise")
    machine.fail("test -e /root/missing")

with subtest("copy_from_host_via_shell"):
    (host / "small.txt").write_text("via the shell\n")
    machine.copy_from_host_via_shell(str(host / "small.txt"), "/root/deep/small.txt")
    t.assertEqual(machine.succeed("cat /root/deep/small.txt"), "via the shell\n")

with subtest("copy_from_machine and copy_from_vm put files under out_dir"):
    machine.copy_from_machine("/root/in/payload.bin", "fromvm")
    copied = machine.out_dir / "fromvm" / "payload.bin"
    t.assertEqual(hashlib.sha256(copied.read_bytes()).hexdigest(), digest)
    machine.copy_from_vm("/root/folder")
    t.assertEqual((machine.out_dir / "folder" / "sub" / "f.txt").read_text(), "in a folder\n")
    # negative control: a guest path that does not exist fails the copy
    must_fail(lambda: machine.copy_from_machine("/root/not-there"), "not-there")

with subtest("the shared directory is /tmp/shared in the guest"):
    (machine.shared_dir / "from-host").write_text("shared\n")
    t.assertEqual(machine.succeed("cat /tmp/shared/from-host"), "shared\n")
    machine.succeed("echo back > /tmp/shared/from-guest")
    t.assertEqual((machine.shared_dir / "from-guest").read_text(), "back\n")
"""

MONITOR_AND_QMP = PRELUDE + r"""
machine.wait_for_unit("multi-user.target")

with subtest("send_monitor_command returns the human monitor's answer"):
    t.assertIn("VM status: running", machine.send_monitor_command("info status"))
    # negative control: an unknown command is answered, not ignored
    t.assertIn("unknown command", machine.send_monitor_command("no-such-command"))

with subtest("QMP: a command and awaited events"):
    t.assertEqual(machine.qmp_client.send("query-status")["status"], "running")
    machine.send_monitor_command("stop")
    machine.wait_for_qmp_event(lambda event: event["event"] == "STOP", timeout=30)
    t.assertIn("paused", machine.send_monitor_command("info status"))
    machine.send_monitor_command("cont")
    machine.wait_for_qmp_event(lambda event: event["event"] == "RESUME", timeout=30)
    machine.succeed("true")
    must_fail(lambda: machine.wait_for_qmp_event(lambda event: event["event"] == "NEVER", timeout=2),
              "timed out waiting for a QMP event")

with subtest("screenshot writes a PNG under out_dir"):
    machine.screenshot("conformance-screen")
    png = (machine.out_dir / "conformance-screen.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000, len(png)
"""

LIFECYCLE = PRELUDE + """
machine.wait_for_unit("multi-user.target")

with subtest("shutdown keeps the disk, start boots it again"):
    machine.succeed("echo persisted > /root/state")
    machine.shutdown()
    t.assertFalse(machine.is_up() or machine.booted or machine.connected)
    machine.start()
    # negative control: no command since the start, so nothing is measured against the old boot
    t.assertIsNone(machine.boot_seconds())
    t.assertEqual(machine.succeed("cat /root/state"), "persisted\\n")
    t.assertGreater(machine.boot_seconds(), 0)

with subtest("cleanup_statedir: the next start boots a fresh disk"):
    machine.shutdown()
    machine.cleanup_statedir()
    machine.start()
    machine.fail("test -e /root/state")

with subtest("a poweroff from inside, awaited by wait_for_shutdown"):
    # no status request: the shutdown may have stopped the guest's shell before it could answer one
    machine.execute("systemctl poweroff --no-block", check_return=False)
    machine.wait_for_shutdown()
    t.assertFalse(machine.is_up() or machine.booted)

with subtest("crash, then a start with no command since"):
    machine.start()
    machine.succeed("true")
    machine.crash()
    t.assertFalse(machine.is_up())
    machine.start()
"""

# Before LIFECYCLE on x86_64 (on aarch64 a boot under TCG costs minutes): the first start allows
# reboots, so Ctrl+Alt+Delete resets the guest in the same QEMU.
REBOOT = PRELUDE + """
machine.start(allow_reboot=True)
machine.wait_for_unit("multi-user.target")

with subtest("reboot: Ctrl+Alt+Delete, and the next command waits for the new boot"):
    first_boot = machine.succeed("cat /proc/sys/kernel/random/boot_id")
    machine.succeed("echo kept > /root/across-reboot", "touch /run/gone-after-reboot")
    pid = machine.pid
    machine.reboot()
    machine.wait_for_unit("multi-user.target", timeout=600)
    t.assertNotEqual(machine.succeed("cat /proc/sys/kernel/random/boot_id"), first_boot)
    t.assertEqual(machine.pid, pid, "the same QEMU: the guest was reset, not started again")
    t.assertEqual(machine.succeed("cat /root/across-reboot"), "kept\\n")
    # negative control: what only the old boot had (a tmpfs) is gone
    machine.fail("test -e /run/gone-after-reboot")
"""

OCR = PRELUDE + '''
machine.wait_for_unit("multi-user.target")
machine.wait_until_tty_matches("1", "login:", timeout=120)
machine.wait_for_text("login", timeout=120)
assert any("login" in text for text in machine.get_screen_text_variants())
assert "login" in machine.get_screen_text()
# negative control
must_fail(lambda: machine.wait_for_text("text-nobody-displays", timeout=5), "on the screen (OCR)")
'''

# The minimal twin runs no X server: what it can show is the failure, named.
X11_WITHOUT_A_DESKTOP = PRELUDE + """
machine.wait_for_unit("multi-user.target")
must_fail(lambda: machine.wait_for_x(timeout=3), "missing: the graphical session target")
"""

# The desktop twin (tests/recipes/desktop.toml): an X server in a user's session, one window.
X11 = PRELUDE + """
machine.wait_for_unit("multi-user.target")
machine.wait_for_x(timeout=300)
machine.wait_for_window("vmtest-window", timeout=120)
t.assertIn("vmtest-window", machine.get_window_names())
must_fail(lambda: machine.wait_for_window("no-such-window", timeout=3), "a window matching /no-such-window/")

with subtest("the user's manager, through systemctl(user=)"):
    machine.wait_for_unit("xserver.service", user="alice", timeout=60)
    t.assertEqual(machine.get_unit_property("xserver.service", "ActiveState", user="alice"), "active")
    t.assertEqual(machine.systemctl("is-active vmtest-window.service", user="alice")[1].strip(), "active")
    t.assertEqual(machine.get_unit_info("vmtest-window.service", user="alice")["SubState"], "running")
    # negative control: the system manager does not have the user's unit
    must_fail(lambda: machine.wait_for_unit("xserver.service", timeout=10), "does not exist")
"""


# Two machines on VLAN 1: names, addresses, and block/unblock of a machine's links.
NETWORKING = PRELUDE + """
start_all()
t.assertEqual(sorted(machines_qemu, key=lambda m: m.name), sorted([alpha, beta], key=lambda m: m.name))
t.assertIn("192.168.1.1/24", alpha.succeed("ip -br addr"))
t.assertIn("192.168.1.2/24", beta.succeed("ip -br addr"))
t.assertEqual(beta.succeed("getent hosts alpha").split()[0], "192.168.1.1")
alpha.succeed("systemd-run --unit=web python3 -m http.server 8080")
alpha.wait_for_open_port(8080, timeout=60)
beta.wait_until_succeeds("curl -sf http://alpha:8080/ >/dev/null", timeout=60)

with subtest("block cuts the machine's links, unblock restores them"):
    alpha.block()
    # negative control: the same request that worked now fails
    beta.fail("curl -sf --max-time 3 http://alpha:8080/")
    alpha.unblock()
    beta.wait_until_succeeds("curl -sf --max-time 3 http://alpha:8080/ >/dev/null", timeout=60)
"""


def run_area(driver: Driver, area: str, script: str) -> None:
    """Run one area's script in a fresh namespace of ``driver``, as a testScript of its own."""
    with driver.logger.nested(f"conformance area: {area}"):
        exec(compile(script, f"<conformance: {area}>", "exec"), driver.test_symbols(), None)


def assert_lifecycle_record(driver: Driver, name: str) -> None:
    """After LIFECYCLE and teardown: a start with no command since the crash is not measured, never negative."""
    driver.terminate()
    record = json.loads((driver.out_dir / "vmtest-run.json").read_text())
    assert record["machines"][name]["boot_to_backdoor_seconds"] is None


# The areas one minimal machine shows on one boot (a boot costs about a minute under TCG), in an
# order where none disturbs the next: OCR reads the login prompt before the keyboard part types
# into it, and the units part ends with a poweroff.
MINIMAL_AREAS = {
    "serial console": SERIAL_CONSOLE,
    "OCR": OCR,
    "keyboard and tty": KEYBOARD_AND_TTY,
    "waits": WAITS,
    "files and copy": FILES_AND_COPY,
    "monitor and QMP": MONITOR_AND_QMP,
    "X11 without a desktop": X11_WITHOUT_A_DESKTOP,
    "units": UNITS,
}


def test_areas_on_one_minimal_machine(make_driver: Callable[..., Driver], subtests: pytest.Subtests) -> None:
    """Each area's script in a fresh namespace on the same booted machine; each is its own subtest,
    so one area's failure is reported and the next areas still run."""
    driver = make_driver(f"machine={MINIMAL}")
    for area, script in MINIMAL_AREAS.items():
        with subtests.test(msg=area):
            if area == "OCR" and shutil.which("tesseract") is None:
                pytest.skip("needs tesseract-ocr on the host")
            run_area(driver, area, script)


def test_reboot_then_lifecycle(make_driver: Callable[..., Driver]) -> None:
    driver = make_driver(f"machine={MINIMAL}")
    run_area(driver, "reboot", REBOOT)
    run_area(driver, "lifecycle", LIFECYCLE)
    assert_lifecycle_record(driver, "machine")


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"host says hi")

    def log_message(self, *args: object) -> None:
        return None


@pytest.mark.fault(fault="a guest tries to reach the host or the internet",
                   handling="no default route (IPv4 or IPv6: user-net has ipv6=off), restrict=on: nothing arrives")
def test_networking_and_isolation(make_driver: Callable[..., Driver]) -> None:
    driver = make_driver(f"alpha={MINIMAL}", f"beta={MINIMAL}", script=NETWORKING)
    driver.test_script()
    alpha = driver.machines[0]
    # Hermetic: no default route, and even with one user-mode networking (restrict=on)
    # delivers nothing off the VM: a server on the host's loopback stays unreachable.
    server = HTTPServer(("127.0.0.1", 0), _Hello)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the control: the server does answer on the host
        assert alpha.succeed("ip route show default") == ""
        assert alpha.succeed("ip -6 route show default") == "", "user-net runs with ipv6=off: no RA, no route"
        assert "unreachable" in alpha.fail("ip route get 192.0.2.1 2>&1")
        alpha.succeed("ip route add default via 10.0.2.2")
        status, output = alpha.execute(f"curl -s --max-time 5 http://10.0.2.2:{port}/ 2>&1")
        assert status != 0 and "host says hi" not in output
    finally:
        server.shutdown()


def test_x11(make_driver: Callable[..., Driver]) -> None:
    driver = make_driver(f"machine={RECIPES / 'desktop.toml'}", script=X11)
    driver.test_script()
