"""QemuMachine's logic without a VM: a fake QEMU process, or a fake ``execute``/monitor.

The same behaviour on real VMs: tests/integration/test_conformance.py.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmtest.errors import MachineError, RequestedAssertionFailed
from vmtest.portable.runtime import ocr
from vmtest.portable.runtime.driver import Driver
from vmtest.portable.runtime.driver_log import CompositeLogger
from vmtest.portable.runtime.machine import QemuMachine
from vmtest.progress.events import Event, GuestResult, MachineStarted, MachineStopped

from .fake_qemu import FakeQemu


def machine(tmp_path: Path, **options: Any) -> QemuMachine:
    return QemuMachine(tmp_path / "out", tmp_path / "tmp", "/nonexistent/run-box-vm", CompositeLogger([]),
                       **options)


class Scripted(QemuMachine):
    """A machine whose guest commands and monitor commands answer from tables, recording what ran."""

    def __init__(self, tmp_path: Path, answers: dict[str, tuple[int, str]] | None = None) -> None:
        super().__init__(tmp_path / "out", tmp_path / "tmp", "run-box-vm", CompositeLogger([]))
        self.answers = answers or {}
        self.commands: list[str] = []
        self.monitor_commands: list[str] = []

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: Any = 900) -> tuple[int, str]:
        self.commands.append(command)
        return next((answer for key, answer in self.answers.items() if key in command), (0, ""))

    def send_monitor_command(self, command: str) -> str:
        self.monitor_commands.append(command)
        if command.startswith("screendump "):
            Path(command.split(" ", 1)[1]).write_bytes(b"P6\n1 1\n255\n\0\0\0")
        return ""


# -- the run record: boot_to_backdoor_seconds after shutdown/crash and start ------------------

@pytest.fixture
def fake_qemu(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(subprocess, "Popen", FakeQemu)
    yield


@pytest.mark.parametrize("stop", ["crash", "shutdown"])
def test_boot_seconds_is_never_negative_after_a_restart(tmp_path: Path, fake_qemu: None, stop: str) -> None:
    box = machine(tmp_path)
    box.start()
    box.connect()
    first = box.boot_seconds()
    assert first is not None and first >= 0
    getattr(box, stop)()
    assert not box.booted and not box.connected
    time.sleep(0.05)  # the second start is measurably later than the first connection
    box.start()
    # Started again, no command since: the previous boot's connection does not count.
    assert box.boot_seconds() is None
    box.connect()
    second = box.boot_seconds()
    assert second is not None and second >= 0
    box.crash()


def test_the_fake_qemu_really_exercises_start(tmp_path: Path, fake_qemu: None) -> None:
    # negative control for the test above: a connection time left from before a start
    # gives the negative figure the fix prevents.
    box = machine(tmp_path)
    box.start()
    box.connect()
    box.crash()
    stale = box.connected_at
    box.start()
    box.connected_at = stale  # what start() used to leave behind
    seconds = box.boot_seconds()
    assert seconds is not None and seconds < 0
    box.crash()


# -- console -----------------------------------------------------------------------------------

def test_console_text_may_span_lines(tmp_path: Path) -> None:
    box = machine(tmp_path)
    for line in ("boot: stage one", "stage two done", "login: "):
        box.last_lines.put(line)
    # joined with nothing, as upstream's StringIO of stripped lines
    assert box.wait_for_console_text(r"stage one.*two done", timeout=1) == "stage onestage two done"


def test_console_lines_consumed_are_not_seen_again(tmp_path: Path) -> None:
    box = machine(tmp_path)
    box.last_lines.put("marker-1")
    box.wait_for_console_text("marker-1", timeout=1)
    with pytest.raises(RequestedAssertionFailed, match=r"box: timed out waiting for console text .*marker-1"):
        box.wait_for_console_text("marker-1", timeout=0.2)


def test_console_text_times_out_naming_the_last_line_and_log(tmp_path: Path) -> None:
    box = machine(tmp_path)
    box.last_lines.put("something else")
    with pytest.raises(RequestedAssertionFailed) as raised:
        box.wait_for_console_text("never", timeout=0.3)
    message = str(raised.value)
    assert "(timeout 0.30 s)" in message and "'something else'" in message
    assert str(box.console_log_path) in message


# -- keyboard ------------------------------------------------------------------------------------

def test_send_key_maps_one_character_as_send_chars_does(tmp_path: Path) -> None:
    box = Scripted(tmp_path)
    box.send_key("\n", delay=None)
    box.send_key("A", delay=None)
    box.send_key("ctrl-alt-delete", delay=None)
    box.send_chars("a!", delay=None)
    assert box.monitor_commands == ["sendkey ret", "sendkey shift-a", "sendkey ctrl-alt-delete",
                                    "sendkey a", "sendkey shift-1"]


# -- the 2025 spellings and small methods -----------------------------------------------------

def test_keep_vm_state_is_keep_machine_state(tmp_path: Path) -> None:
    box = machine(tmp_path, keep_vm_state=True)
    assert box.keep_machine_state and box.keep_vm_state
    box.keep_vm_state = False
    assert not box.keep_machine_state


def test_the_state_directory_is_cleaned_unless_kept(tmp_path: Path) -> None:
    left = machine(tmp_path).state_dir / "disk.qcow2"
    left.write_text("old")
    machine(tmp_path, keep_machine_state=True)
    assert left.exists()
    machine(tmp_path)
    assert not left.exists() and left.parent.is_dir()


def test_create_machine_takes_both_spellings(tmp_path: Path) -> None:
    with Driver([], "", tmp_path / "out", CompositeLogger([]), tmp_dir=tmp_path / "tmp") as driver:
        old = driver.create_machine("run-old-vm", keep_vm_state=True)
        new = driver.create_machine("run-new-vm", keep_machine_state=True)
        assert old.keep_machine_state and new.keep_vm_state and old.name == "old"
        driver.machines.clear()  # nothing was started: nothing to release


def test_wait_for_job_waits_for_the_unit(tmp_path: Path) -> None:
    box = Scripted(tmp_path, {"--no-pager show": (0, "ActiveState=active\nSubState=running\n")})
    box.wait_for_job("nginx.service")
    assert any('show "nginx.service"' in command for command in box.commands)
    failed = Scripted(tmp_path, {"--no-pager show": (0, "ActiveState=failed\n")})
    with pytest.raises(RequestedAssertionFailed, match=r"unit 'nginx\.service' reached state 'failed'"):
        failed.wait_for_job("nginx.service")


def test_dump_tty_contents_goes_to_the_journal(tmp_path: Path) -> None:
    box = Scripted(tmp_path)
    box.dump_tty_contents("2")
    assert box.commands == ["fold -w 80 /dev/vcs2 | systemd-cat"]


# -- X11 -----------------------------------------------------------------------------------------

def test_x11_helpers_run_upstreams_commands(tmp_path: Path) -> None:
    box = Scripted(tmp_path, {"xwininfo": (0, "xterm\nFirefox\n")})
    box.wait_for_x(timeout=1)
    assert "Reached target Current graphical" in box.commands[0] and "/tmp/.X11-unix/X0" in box.commands[1]
    assert box.get_window_names() == ["xterm", "Firefox"]
    box.wait_for_window("Fire", timeout=1)


def test_x11_waits_fail_saying_what_was_missing(tmp_path: Path) -> None:
    no_session = Scripted(tmp_path, {"journalctl": (1, "")})
    with pytest.raises(RequestedAssertionFailed, match=r"box: timed out waiting for the X11 server .*graphical"):
        no_session.wait_for_x(timeout=0)
    no_socket = Scripted(tmp_path, {"X11-unix": (1, "")})
    with pytest.raises(RequestedAssertionFailed, match=r"missing: the X server socket"):
        no_socket.wait_for_x(timeout=0)
    windows = Scripted(tmp_path, {"xwininfo": (0, "xterm\n")})
    with pytest.raises(RequestedAssertionFailed, match=r"a window matching /Firefox/.*windows: 'xterm'"):
        windows.wait_for_window("Firefox", timeout=0)


# -- OCR ------------------------------------------------------------------------------------------

@pytest.fixture
def fake_ocr_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tesseract that has no legacy engine data and reads HELLO WORLD, and a magick that copies."""
    tools = tmp_path / "bin"
    tools.mkdir()
    calls = tmp_path / "calls"
    (tools / "tesseract").write_text(
        "#!/bin/sh\n"
        f'echo "tesseract $*" >> {calls}\n'
        'case " $* " in *" --oem 2 "*) echo "Error: Tesseract (legacy) engine requested, but components '
        'are not present in eng.traineddata!!" >&2; exit 1;; esac\n'
        "echo 'HELLO WORLD'\n"
    )
    (tools / "magick").write_text(f'#!/bin/sh\necho "magick $*" >> {calls}\nfor last; do :; done\n: > "$last"\n')
    for tool in tools.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    return calls


def test_ocr_runs_upstreams_commands_and_falls_back_without_legacy_data(
        tmp_path: Path, fake_ocr_tools: Path) -> None:
    box = Scripted(tmp_path)
    assert box.get_screen_text_variants() == ["HELLO WORLD\n"] * 3
    calls = fake_ocr_tools.read_text().splitlines()  # the three readings run at once: in any order
    tesseract = [call for call in calls if call.startswith("tesseract")]
    assert len(tesseract) == 6, "each reading: --oem 2 first, then the default engine"
    assert sum(call.endswith("- --oem 2 -c debug_file=/dev/null --psm 11") for call in tesseract) == 3
    assert sum(call.endswith("- --oem 3 -c debug_file=/dev/null --psm 11") for call in tesseract) == 3
    magick = sorted(call for call in calls if call.startswith("magick"))
    positive = [call for call in magick if call.endswith(".positive.png")]
    negative = [call for call in magick if call.endswith(".negative.png")]
    assert positive[0].startswith("magick convert " + " ".join(ocr.MAGICK_HEAD + ocr.MAGICK_TAIL))
    assert " -posterize 3 -negate -gamma 100 " in negative[0]
    box.wait_for_text("HELLO", timeout=1)
    with pytest.raises(RequestedAssertionFailed, match=r"/GOODBYE/ on the screen \(OCR\).*HELLO WORLD"):
        box.wait_for_text("GOODBYE", timeout=0)
    assert not list(box.state_dir.glob("screenshot*")), "screenshots are removed after OCR"


def test_ocr_without_tesseract_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(MachineError, match=r"box: OCR needs `tesseract`.*apt-get install tesseract-ocr"):
        Scripted(tmp_path).get_screen_text()


# -- progress: machines say when they start and stop; guest results are redacted -------------------

def test_a_machine_shows_its_start_and_stop_on_the_progress_display(tmp_path: Path, fake_qemu: None) -> None:
    events: list[Event] = []
    box = machine(tmp_path, progress=events.append)
    box.start()
    box.connect()
    box.crash()
    assert [event for event in events if isinstance(event, MachineStarted | MachineStopped)] == [
        MachineStarted("box"), MachineStopped("box")]


def test_guest_results_are_redacted_on_the_display_and_logged_without_one(tmp_path: Path) -> None:
    events: list[Event] = []
    hide = lambda text: text.replace("hunter2", "<redacted>")  # noqa: E731
    shown = machine(tmp_path / "a", progress=events.append, redact=hide)
    shown.show_progress(GuestResult("box", "test_login", "failed", 2.0, "AssertionError: hunter2 != x"))
    assert events == [GuestResult("box", "test_login", "failed", 2.0, "AssertionError: <redacted> != x")]
    lines: list[str] = []
    logged = machine(tmp_path / "b", redact=hide)
    logged.log = lines.append  # type: ignore[method-assign]
    logged.show_progress(GuestResult("box", "test_login", "failed", 2.0, "AssertionError: hunter2 != x"))
    assert lines == ["FAIL test_login (2.00 s): AssertionError: <redacted> != x"]


def test_a_panic_the_console_reader_has_not_logged_yet_is_still_retried(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Seen in a full run (2026-12-07): QEMU exited after the guest's panic, the shell closed, and the
    # panic line reached the console log only after the retry rule had looked: no retry.
    box = machine(tmp_path, boot_panic_retries=1)
    box.process = subprocess.Popen(["true"])
    box.process.wait()
    panic = "[    2.871409] Kernel panic - not syncing: Fatal exception in interrupt"
    attempts: list[int] = []

    def wait_for_marker() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            def late_reader() -> None:
                time.sleep(0.3)
                box.full_console_log.append(panic)

            box.serial_thread = threading.Thread(target=late_reader)
            box.serial_thread.start()
            raise MachineError("box: the VM's shell closed while waiting for the backdoor shell")
        box.started_at = time.monotonic()

    monkeypatch.setattr(box, "_wait_for_marker", wait_for_marker)
    monkeypatch.setattr(box, "wait_for_shutdown", lambda timeout=None: None)
    box.connect()
    assert len(attempts) == 2 and box.boot_panics == [panic]

