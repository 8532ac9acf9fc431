"""QemuMachine: the upstream driver's Machine API over a QEMU process and its backdoor shell.

Names, signatures and semantics follow nixpkgs' ``test_driver.machine`` (see
``shared/reference/nixos-test-driver.md`` §1 and §3). Where upstream assumes a
NixOS guest (``nc``), this runtime uses what any Debian guest has (bash
``/dev/tcp``, ``ss``). Errors name the machine, what was waited for, the
elapsed time and where the console log is.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import queue
import re
import select
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmtest import probes
from vmtest.errors import MachineError, RequestedAssertionFailed
from vmtest.runtime.logger import AbstractLogger
from vmtest.runtime.process import terminate_group
from vmtest.runtime.qmp import QMPClient
from vmtest.timeouts import Timeout, format_seconds, to_seconds, to_whole_seconds
from vmtest.units import parse_properties
from vmtest.waiting import Deadline, WaitTimedOut, once_a_second, retry, retry_or_raise, timed_out

MARKER = b"Spawning backdoor root shell..."
# How long start() waits for QEMU to connect its sockets before declaring it dead.
QEMU_CONNECT_TIMEOUT = 60.0
# The runtime's waits go back to the host at least this often (seconds of guest tries).
WAIT_SLICE_SECONDS = 10
CHAR_TO_KEY = {
    **{c: c for c in "abcdefghijklmnopqrstuvwxyz0123456789"},
    **{c.upper(): f"shift-{c}" for c in "abcdefghijklmnopqrstuvwxyz"},
    " ": "spc", "\n": "ret", "\t": "tab", "-": "minus", "=": "equal", ",": "comma",
    ".": "dot", "/": "slash", ";": "semicolon", "'": "apostrophe", "[": "bracket_left",
    "]": "bracket_right", "\\": "backslash", "`": "grave_accent", "!": "shift-1",
    "@": "shift-2", "#": "shift-3", "$": "shift-4", "%": "shift-5", "^": "shift-6",
    "&": "shift-7", "*": "shift-8", "(": "shift-9", ")": "shift-0", "_": "shift-minus",
    "+": "shift-equal", ":": "shift-semicolon", '"': "shift-apostrophe", "<": "shift-comma",
    ">": "shift-dot", "?": "shift-slash", "|": "shift-backslash", "~": "shift-grave_accent",
    "{": "shift-bracket_left", "}": "shift-bracket_right",
}


class UnitFailed(RequestedAssertionFailed):
    """``wait_for_unit`` gave up on the unit: it failed, went inactive with no job, or timed out."""


def _ppm_to_png(ppm: bytes) -> bytes:
    """Convert a binary PPM (what QEMU's ``screendump`` writes) to PNG."""
    fields: list[bytes] = []
    stream = io.BytesIO(ppm)
    while len(fields) < 4:
        line = stream.readline()
        if not line:
            raise ValueError("truncated PPM header")
        fields += line.split(b"#", 1)[0].split()
    magic, width, height, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    if magic != b"P6" or maxval != 255:
        raise ValueError(f"unsupported PPM ({magic!r}, maxval {maxval})")
    pixels = stream.read(width * height * 3)
    if len(pixels) != width * height * 3:
        raise ValueError("truncated PPM pixel data")
    stride = width * 3
    raw = b"".join(b"\0" + pixels[row * stride:(row + 1) * stride] for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _clean_monitor_answer(raw: str) -> str:
    """The monitor's answer without the readline echo of the command and the prompt."""
    text = _ANSI_ESCAPE.sub("", raw).replace("\r", "")
    _, _, answer = text.partition("\n")
    return answer.removesuffix("(qemu) ")


class QemuMachine:
    """A QEMU virtual machine driven through its backdoor root shell."""

    def __init__(
        self,
        out_dir: Path,
        tmp_dir: Path,
        start_command: str,
        logger: AbstractLogger,
        name: str | None = None,
        keep_machine_state: bool = False,
        callbacks: list[Callable[[], Any]] | None = None,
        boot_panic_retries: int = 0,
        boot_nice: int = 0,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.tmp_dir = Path(tmp_dir)
        self.start_command = start_command
        self.logger = logger
        match = re.search(r"run-(.+)-vm$", start_command)
        self.name = name or (match.group(1) if match else "machine")
        self.keep_machine_state = keep_machine_state
        self.callbacks = callbacks if callbacks is not None else []
        self.state_dir = self.tmp_dir / f"machine-state-{self.name}"
        if not keep_machine_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.shared_dir = self.tmp_dir / "shared-xchg"
        self.shared_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.monitor_path = self.state_dir / "monitor"
        self.shell_path = self.state_dir / "shell"
        self.qmp_path = self.state_dir / "qmp"
        self.console_log_path = self.out_dir / "serial" / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.monitor: socket.socket | None = None
        self.shell: socket.socket | None = None
        self.qmp_client: QMPClient | None = None
        self.serial_thread: threading.Thread | None = None
        self.booted = False
        self.connected = False
        self.started_at: float | None = None
        self.connected_at: float | None = None
        self._console_lines: list[str] = []
        self._console_queue: queue.Queue[str] = queue.Queue()
        self._shell_lock = threading.RLock()
        self._unread_outputs = 0
        self._monitor_lock = threading.Lock()
        self.boot_panic_retries = boot_panic_retries
        self.boot_panics: list[str] = []
        self.boot_nice = boot_nice

    def __repr__(self) -> str:
        return f"<QemuMachine '{self.name}'>"

    # -- logging ---------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        """Log ``msg`` with this machine's name."""
        self.logger.log(msg, {"machine": self.name})

    def log_serial(self, msg: str) -> None:
        self.logger.log_serial(msg, self.name)

    def nested(self, msg: str, attrs: dict[str, str] | None = None) -> Any:
        """A log section for this machine (a context manager)."""
        return self.logger.nested(msg, {**(attrs or {}), "machine": self.name})

    def run_callbacks(self) -> None:
        for callback in self.callbacks:
            callback()

    # -- lifecycle -------------------------------------------------------------------------

    def is_up(self) -> bool:
        return self.booted and self.connected

    def _listen(self, path: Path) -> socket.socket:
        if path.exists():
            path.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(1)
        return server

    def _accept(self, server: socket.socket, what: str) -> socket.socket:
        deadline = time.monotonic() + QEMU_CONNECT_TIMEOUT
        server.settimeout(0.2)
        while True:
            try:
                connection, _ = server.accept()
                connection.settimeout(None)
                return connection
            except TimeoutError:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise MachineError(
                        f"{self.name}: QEMU exited with status {self.process.returncode} before "
                        f"connecting its {what} socket; console log: {self.console_log_path}\n"
                        + "\n".join(self._console_lines[-20:])
                    ) from None
                if time.monotonic() > deadline:
                    raise MachineError(
                        f"{self.name}: QEMU did not connect its {what} socket within "
                        f"{QEMU_CONNECT_TIMEOUT:.0f} s (start command: {self.start_command})"
                    ) from None

    def start(self, allow_reboot: bool = False) -> None:
        """Start QEMU (no-op if running); returns once the monitor answers, before the guest boots."""
        if self.booted:
            return
        self.log("starting vm")
        monitor_server = self._listen(self.monitor_path)
        shell_server = self._listen(self.shell_path)
        arguments = [
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            "-monitor", f"unix:{self.monitor_path}",
            "-chardev", f"socket,id=shell,path={self.shell_path}",
            "-device", "virtio-serial", "-device", "virtconsole,chardev=shell",
            "-device", "virtio-rng-pci", "-serial", "stdio",
        ]
        if not allow_reboot:
            arguments.append("-no-reboot")
        environment = {
            **os.environ,
            "TMPDIR": str(self.state_dir),
            "SHARED_DIR": str(self.shared_dir),
            "USE_TMPDIR": "1",
        }
        self.console_log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        # nice(1) execs the script, which execs QEMU: one process, and every thread QEMU
        # creates inherits the nice value.
        nice = f"nice -n {self.boot_nice} " if self.boot_nice else ""
        self.process = subprocess.Popen(
            # exec: QEMU (which the start script execs too) is then our own child, reaped by
            # us; a forked script would leave it to PID 1, which may never reap it.
            f"exec {nice}{self.start_command} {shlex.join(arguments)}",
            shell=True,
            executable="/bin/sh",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.state_dir,
            env=environment,
            start_new_session=True,  # so release() can kill QEMU and anything the script started
        )
        self.pid = self.process.pid
        if self.boot_nice:
            self._set_session_nice(self.boot_nice)
        self.serial_thread = threading.Thread(target=self._read_serial, name=f"serial-{self.name}", daemon=True)
        self.serial_thread.start()
        try:
            self.monitor = self._accept(monitor_server, "monitor")
            self.shell = self._accept(shell_server, "shell")
        finally:
            monitor_server.close()
            shell_server.close()
        self._wait_for_monitor_prompt()
        self.qmp_client = QMPClient(self.qmp_path)
        self.booted = True
        self.log(f"QEMU running (pid {self.pid})" + (f", booting at nice {self.boot_nice} until first needed"
                                                     if self.boot_nice else ""))

    def _set_session_nice(self, nice: int) -> None:
        """Nice the autogroup of QEMU's session (its own: start_new_session), when the kernel
        groups sessions: CFS then shares the CPU between groups first, and a thread's nice
        value counts only inside its group."""
        try:
            Path(f"/proc/{self.pid}/autogroup").write_text(f"{nice}\n")
        except FileNotFoundError:
            pass  # no autogroups (CONFIG_SCHED_AUTOGROUP off) or QEMU has exited
        except OSError as error:
            self.log(f"WARNING: cannot set the nice value of QEMU's session to {nice}: {error.strerror}")

    def _end_boot_priority(self) -> None:
        """Put QEMU back to nice 0: the testScript now waits for this machine."""
        if not self.boot_nice or self.pid is None:
            return
        self.boot_nice = 0
        self._set_session_nice(0)
        tasks = Path(f"/proc/{self.pid}/task")
        try:
            # Twice: a thread created during the first pass may have inherited the old value.
            for _ in range(2):
                for task in tasks.iterdir():
                    try:
                        os.setpriority(os.PRIO_PROCESS, int(task.name), 0)
                    except ProcessLookupError:
                        continue
        except PermissionError:
            self.log("WARNING: cannot raise QEMU's priority back to nice 0 (needs CAP_SYS_NICE); "
                     "the machine keeps running niced")
            return
        except FileNotFoundError:
            return  # QEMU has exited; connect() reports that
        self.log("back to nice 0")

    def _read_serial(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with self.console_log_path.open("a", encoding="utf-8", errors="replace") as log:
            for raw in iter(self.process.stdout.readline, b""):
                line = raw.decode(errors="replace").replace("\r", "").rstrip("\n")
                self._console_lines.append(line)
                self._console_queue.put(line)
                log.write(line + "\n")
                log.flush()
                self.log_serial(line)

    def _wait_for_monitor_prompt(self) -> str:
        assert self.monitor is not None
        answer = b""
        while not answer.endswith(b"(qemu) "):
            chunk = self.monitor.recv(4096)
            if not chunk:
                raise MachineError(
                    f"{self.name}: the QEMU monitor closed (QEMU died?); console log: {self.console_log_path}"
                )
            answer += chunk
        return answer.decode(errors="replace")

    def connect(self) -> None:
        """Wait for the backdoor marker on the shell (boots the machine first if needed).

        A guest kernel panic before the backdoor answers is retried ``boot_panic_retries``
        times (the driver allows one under TCG, whose emulation rarely crashes a boot),
        each one logged and kept in ``boot_panics``; then MachineError is raised.
        """
        if self.connected:
            return
        with self.nested("waiting for the VM to finish booting"):
            while True:
                first_line = len(self._console_lines)
                try:
                    self._wait_for_marker()
                    break
                except MachineError:
                    panic = [line for line in self._console_lines[first_line:] if "Kernel panic" in line]
                    if not panic or len(self.boot_panics) >= self.boot_panic_retries:
                        raise
                    self.boot_panics.append(panic[0].strip())
                    self.log(
                        f"WARNING: the guest kernel panicked during boot ({panic[0].strip()}); booting again "
                        f"(retry {len(self.boot_panics)} of {self.boot_panic_retries}). The panic is kept in "
                        f"{self.console_log_path}."
                    )
                    self.wait_for_shutdown()
            assert self.started_at is not None
            self.connected = True
            self.connected_at = time.monotonic()
            self.log(f"connected to guest root shell after {format_seconds(self.connected_at - self.started_at)}")

    def _wait_for_marker(self) -> None:
        self.start()
        self._end_boot_priority()
        assert self.shell is not None and self.process is not None and self.started_at is not None
        received = b""
        while MARKER not in received:
            ready, _, _ = select.select([self.shell], [], [], 30)
            if not ready:
                self.log(
                    f"Guest root shell did not produce any data yet after "
                    f"{format_seconds(time.monotonic() - self.started_at)}..."
                )
                self.log("  To debug, enter the VM and run 'systemctl status backdoor.service'.")
                continue
            chunk = self.shell.recv(1024)
            if not chunk:
                raise self._died("while waiting for the backdoor shell")
            received = (received + chunk)[-4096:]

    def _died(self, doing: str) -> MachineError:
        status = None
        if self.process is not None:
            try:
                status = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                status = None
        self.connected = False
        elapsed = format_seconds(time.monotonic() - self.started_at) if self.started_at else "?"
        tail = "\n".join(f"  {line}" for line in self._console_lines[-15:])
        return MachineError(
            f"{self.name}: the VM's shell closed {doing} ({elapsed} after start; "
            f"QEMU exit status {status if status is not None else 'unknown, still running'}). "
            f"Console log: {self.console_log_path}. Last console lines:\n{tail}"
        )

    def _read_line_block(self, doing: str) -> bytes:
        """Read from the shell until what was received ends with a newline."""
        assert self.shell is not None
        chunks: list[bytes] = []
        while True:
            chunk = self.shell.recv(1 << 20)
            if not chunk:
                raise self._died(doing)
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                return b"".join(chunks)

    def _decode_output(self, line: bytes, doing: str) -> bytes:
        try:
            return base64.b64decode(line.strip(), validate=True)
        except ValueError:
            # QEMU drops virtio-console bytes when the host reader falls behind
            # (hw/char/virtio-console.c, flush_buf); say so rather than return garbage.
            raise MachineError(
                f"{self.name}: the command's output was corrupted in transit {doing} "
                f"({len(line)} bytes of base64 received; the virtio console dropped data). Transfer "
                f"large data in checksummed chunks (vmtest.logs does) or through copy_from_machine."
            ) from None

    def execute(
        self,
        command: str,
        check_return: bool = True,
        check_output: bool = True,
        timeout: Timeout | None = 900,
    ) -> tuple[int, str]:
        """Run ``command`` under ``set -euo pipefail`` in the guest; returns (status, stdout).

        With ``timeout`` the guest's ``timeout(1)`` ends the command and the
        status is 124. Raises MachineError if the VM dies meanwhile.
        """
        self.run_callbacks()
        self.connect()
        prefix = f"timeout {to_whole_seconds(timeout)} " if timeout is not None else ""
        line = f"{prefix}bash -c {shlex.quote('set -euo pipefail; ' + command)} | (base64 -w 0; echo)\n"
        doing = f"while running `{command[:200]}`"
        with self._shell_lock:
            assert self.shell is not None
            # The guest's single bash runs commands in turn: an earlier command sent with
            # check_output=False still owes its output line, which must not be taken for ours.
            while self._unread_outputs:
                self._read_line_block(doing)
                self._unread_outputs -= 1
            try:
                self.shell.sendall(line.encode())
            except OSError:
                raise self._died(doing) from None
            if not check_output:
                self._unread_outputs += 1
                return (-2, "")
            output = self._decode_output(self._read_line_block(doing), doing)
            if not check_return:
                return (-1, output.decode(errors="replace"))
            self.shell.sendall(b"echo ${PIPESTATUS[0]}\n")
            status = int(self._read_line_block(doing).strip())
        return (status, output.decode(errors="replace"))

    def succeed(self, *commands: str, timeout: Timeout | None = None) -> str:
        """Run each command; raises RequestedAssertionFailed at the first non-zero status."""
        output = ""
        for command in commands:
            with self.nested(f"must succeed: {command}"):
                started = time.monotonic()
                status, out = self.execute(command, timeout=timeout)
                if status != 0:
                    self.log(f"output: {out}")
                    hint = " (guest timeout expired)" if status == 124 and timeout is not None else ""
                    raise RequestedAssertionFailed(
                        f"{self.name}: command `{command}` failed (exit code {status}){hint} after "
                        f"{format_seconds(time.monotonic() - started)}; output: {out[-2000:]!r}"
                    )
                output += out
        return output

    def fail(self, *commands: str, timeout: Timeout | None = None) -> str:
        """Run each command; raises RequestedAssertionFailed if one exits 0."""
        output = ""
        for command in commands:
            with self.nested(f"must fail: {command}"):
                status, out = self.execute(command, timeout=timeout)
                if status == 0:
                    raise RequestedAssertionFailed(
                        f"{self.name}: command `{command}` unexpectedly succeeded; output: {out[-2000:]!r}"
                    )
                output += out
        return output

    def wait_until_succeeds(self, command: str, timeout: Timeout = 900) -> str:
        """Retry ``command`` every second until it exits 0; returns its output."""
        output = ""
        last_status = None

        def check_success(_last_try: bool) -> bool:
            nonlocal output, last_status
            last_status, output = self.execute(command, timeout=timeout)
            return last_status == 0

        def did_not_succeed(error: WaitTimedOut) -> RequestedAssertionFailed:
            return RequestedAssertionFailed(
                f"{self.name}: `{command}` did not succeed: {error}; last exit code "
                f"{last_status}, last output: {output[-1000:]!r}"
            )

        with self.nested(f"waiting for success: {command}"):
            retry_or_raise(check_success, timeout, did_not_succeed)
        return output

    def wait_until_fails(self, command: str, timeout: Timeout = 900) -> str:
        """Retry ``command`` every second until it exits non-zero; returns its output."""
        output = ""

        def check_failure(_last_try: bool) -> bool:
            nonlocal output
            status, output = self.execute(command, timeout=timeout)
            return status != 0

        def kept_succeeding(error: WaitTimedOut) -> RequestedAssertionFailed:
            return RequestedAssertionFailed(
                f"{self.name}: `{command}` kept succeeding: {error}; last output: {output[-1000:]!r}"
            )

        with self.nested(f"waiting for failure: {command}"):
            retry_or_raise(check_failure, timeout, kept_succeeding)
        return output

    def sleep(self, secs: Timeout) -> None:
        """Sleep inside the guest (time passes with the guest clock)."""
        seconds = to_seconds(secs)
        self.succeed(f"sleep {seconds:g}", timeout=seconds + 30)

    def shutdown(self) -> None:
        """Power the guest off through the shell and wait for QEMU to exit."""
        if not self.booted:
            return
        with self.nested("shutting down"):
            assert self.shell is not None
            with contextlib.suppress(OSError):
                self.shell.sendall(b"poweroff\n")
            self.wait_for_shutdown()

    def crash(self) -> None:
        """Simulate a sudden power failure (monitor ``quit``)."""
        if not self.booted:
            return
        self.log("simulating a crash")
        with contextlib.suppress(MachineError):
            self.send_monitor_command("quit")
        self.wait_for_shutdown()

    def reboot(self) -> None:
        """Press Ctrl+Alt+Delete; the machine reconnects on the next command."""
        self.send_key("ctrl-alt-delete")
        self.connected = False

    def wait_for_shutdown(self) -> None:
        """Wait for QEMU to exit, then close this machine's sockets."""
        if not self.booted or self.process is None:
            return
        with self.nested("waiting for the VM to power off"):
            self.process.wait()
            self._close()

    def _close(self) -> None:
        for sock in (self.shell, self.monitor):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        if self.qmp_client is not None:
            self.qmp_client.close()
        self.shell = self.monitor = None
        self.qmp_client = None
        self.booted = False
        self.connected = False
        self._unread_outputs = 0

    def release(self) -> None:
        """Tear down: kill QEMU (and its process group), close sockets, join the serial reader."""
        if self.process is None:
            return
        terminate_group(self.process)
        self._close()
        if self.serial_thread is not None:
            self.serial_thread.join(timeout=5)

    # -- systemd ---------------------------------------------------------------------------

    def systemctl(self, q: str, user: str | None = None) -> tuple[int, str]:
        """Run ``systemctl q`` (as ``user``'s manager if given)."""
        if user is not None:
            q = q.replace("'", "\\'")
            return self.execute(
                f"su -l {user} --shell /bin/sh -c "
                f"$'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user {q}'"
            )
        return self.execute(f"systemctl {q}")

    def start_job(self, jobname: str, user: str | None = None) -> tuple[int, str]:
        return self.systemctl(f"start {jobname}", user)

    def stop_job(self, jobname: str, user: str | None = None) -> tuple[int, str]:
        return self.systemctl(f"stop {jobname}", user)

    def get_unit_info(self, unit: str, user: str | None = None) -> dict[str, str]:
        """``systemctl show unit`` as a dict; raises RequestedAssertionFailed if that fails."""
        status, lines = self.systemctl(f'--no-pager show "{unit}"', user)
        if status != 0:
            raise RequestedAssertionFailed(
                f'{self.name}: retrieving systemctl info for unit "{unit}"'
                f"{'' if user is None else f' under user {user!r}'} failed with exit code {status}"
            )
        return parse_properties(lines)

    def get_unit_property(self, unit: str, property: str, user: str | None = None) -> str:
        """One property of ``unit`` (``systemctl show --property``)."""
        status, output = self.systemctl(f'--no-pager show "{unit}" --property="{property}"', user)
        if status != 0:
            raise RequestedAssertionFailed(
                f'{self.name}: retrieving property "{property}" of unit "{unit}" failed with exit code {status}'
            )
        properties = parse_properties(output.strip())
        if property not in properties:
            raise RequestedAssertionFailed(f'{self.name}: unit "{unit}" has no property "{property}"')
        return properties[property]

    def _unit_journal(self, unit: str, lines: int = 25) -> str:
        try:
            _, journal = self.execute(
                f"journalctl --no-pager -n {lines} -u {shlex.quote(unit)} 2>&1", timeout=30
            )
        except MachineError:
            return "(journal unavailable: the VM is gone)"
        return journal.strip()

    def require_unit_state(self, unit: str, require_state: str = "active") -> None:
        """Raise RequestedAssertionFailed unless ``unit``'s ActiveState is ``require_state``."""
        with self.nested(f"checking if unit '{unit}' has reached state '{require_state}'"):
            state = self.get_unit_info(unit)["ActiveState"]
            if state != require_state:
                raise RequestedAssertionFailed(
                    f"{self.name}: expected unit '{unit}' to be in state '{require_state}' "
                    f"but it is in state '{state}'\n{self._unit_journal(unit)}"
                )

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: Timeout = 900) -> None:
        """Wait until ``unit`` is active.

        Raises RequestedAssertionFailed at once if it fails, or if it is
        inactive with no job pending (seen twice), and after ``timeout``
        otherwise; the message carries the last state and the unit's journal.
        """
        started = time.monotonic()
        last: dict[str, str] = {}

        def fail(reason: str) -> UnitFailed:
            return UnitFailed(
                f"{self.name}: unit '{unit}' {reason} after {format_seconds(time.monotonic() - started)} "
                f"(timeout {format_seconds(to_seconds(timeout))}); last state: "
                f"{last.get('ActiveState')}/{last.get('SubState')}, result {last.get('Result')}.\n"
                f"journal of {unit}:\n{self._unit_journal(unit)}"
            )

        def check_active(_last_try: bool) -> bool:
            nonlocal last
            last = self.get_unit_info(unit, user)
            state = last["ActiveState"]
            if state == "failed":
                raise fail("reached state 'failed'")
            if state == "inactive":
                _, jobs = self.systemctl("list-jobs --full 2>&1", user)
                if "No jobs" in jobs:
                    last = self.get_unit_info(unit, user)
                    if last["ActiveState"] == state:
                        raise fail("is inactive and there are no pending jobs")
            return state == "active"

        with self.nested(f"waiting for unit {unit}" + (f" with user {user}" if user else "")):
            try:
                retry(check_active, timeout)
            except UnitFailed:
                raise
            except RequestedAssertionFailed:  # the timeout, or systemctl show itself failing
                raise fail("did not become active") from None

    # -- waits -----------------------------------------------------------------------------

    def _wait(self, description: str, command: str, want_success: bool, timeout: Timeout) -> None:
        deadline = Deadline.of(timeout)
        last_output = ""

        def check(_last_try: bool) -> bool:
            nonlocal last_output
            # Upstream runs one execute per second. Here the guest tries once a second itself
            # for up to WAIT_SLICE_SECONDS per execute: each execute costs the guest several
            # process starts (shell, timeout, base64), a real share of a TCG guest's CPU when
            # the wait lasts minutes beside the work it waits for.
            attempts = max(1, min(WAIT_SLICE_SECONDS, int(deadline.limit - deadline.elapsed())))
            status, last_output = self.execute(once_a_second(command, want_success, attempts),
                                               timeout=attempts + 10)
            return status == 0

        def timed_out_waiting(_: WaitTimedOut) -> RequestedAssertionFailed:
            return RequestedAssertionFailed(
                timed_out(self.name, description, deadline.elapsed(), deadline.limit)
                + (f"; last output: {last_output[-500:]!r}" if last_output else "")
            )

        with self.nested(f"waiting for {description}"):
            retry_or_raise(check, timeout, timed_out_waiting)

    def wait_for_file(self, filename: str, timeout: Timeout = 900) -> None:
        """Wait until ``filename`` exists in the guest (``test -e``, unquoted like upstream)."""
        self._wait(f"file {filename}", f"test -e {filename}", True, timeout)

    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: Timeout = 900) -> None:
        """Wait until something accepts TCP connections on ``addr:port`` in the guest (no netcat needed)."""
        self._wait(f"TCP port {addr}:{port} to open", probes.tcp_open(port, addr), True, timeout)

    def wait_for_closed_port(self, port: int, addr: str = "localhost", timeout: Timeout = 900) -> None:
        """Wait until nothing accepts TCP connections on ``addr:port``."""
        self._wait(f"TCP port {addr}:{port} to close", probes.tcp_open(port, addr), False, timeout)

    def wait_for_open_unix_socket(self, addr: str, is_datagram: bool = False, timeout: Timeout = 900) -> None:
        """Wait until a process listens on the Unix socket ``addr`` (``ss``, no netcat needed)."""
        self._wait(f"unix socket {addr}", probes.unix_socket_listening(addr, is_datagram), True, timeout)

    # -- console ---------------------------------------------------------------------------

    def get_console_log(self) -> str:
        """Everything the serial console printed so far."""
        return "\n".join(self._console_lines)

    def send_console(self, chars: str) -> None:
        """Type ``chars`` on the serial console."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(chars.encode())
        self.process.stdin.flush()

    def wait_for_console_text(self, regex: str, timeout: Timeout | None = None) -> str:
        """Wait for a console line matching ``regex`` (lines already consumed are not seen again)."""
        pattern = re.compile(regex)
        limit = to_seconds(timeout) if timeout is not None else None
        started = time.monotonic()
        with self.nested(f"waiting for {regex} to appear on console"):
            while True:
                remaining = None if limit is None else limit - (time.monotonic() - started)
                if remaining is not None and remaining <= 0:
                    raise RequestedAssertionFailed(
                        f"{self.name}: console text matching {regex!r} did not appear within "
                        f"{format_seconds(limit or 0)}; console log: {self.console_log_path}"
                    )
                try:
                    line = self._console_queue.get(timeout=min(remaining or 1.0, 1.0))
                except queue.Empty:
                    if self.process is not None and self.process.poll() is not None and self._console_queue.empty():
                        raise MachineError(
                            f"{self.name}: QEMU exited while waiting for {regex!r} on the console"
                        ) from None
                    continue
                if pattern.search(line):
                    return line

    def get_tty_text(self, tty: str) -> str:
        """The text shown on virtual console ``tty`` (``/dev/vcs<tty>``)."""
        status, output = self.execute(
            f"fold -w$(stty -F /dev/tty{tty} size | awk '{{print $2}}') /dev/vcs{tty}"
        )
        if status != 0:
            raise RequestedAssertionFailed(f"{self.name}: cannot read tty{tty} (exit code {status})")
        return output

    def wait_until_tty_matches(self, tty: str, regexp: str, timeout: Timeout = 900) -> None:
        """Wait until virtual console ``tty`` shows text matching ``regexp``."""
        pattern = re.compile(regexp)
        last = ""

        def tty_matches(_last_try: bool) -> bool:
            nonlocal last
            last = self.get_tty_text(tty)
            return bool(pattern.search(last))

        def never_matched(_: WaitTimedOut) -> RequestedAssertionFailed:
            return RequestedAssertionFailed(
                f"{self.name}: tty{tty} never matched {regexp!r}; last text: {last[-500:]!r}"
            )

        with self.nested(f"waiting for {regexp} to appear on tty {tty}"):
            retry_or_raise(tty_matches, timeout, never_matched)

    def shell_interact(self, address: str | None = None) -> None:
        """Attach the terminal (or ``address``, a socat address) to the guest's root shell."""
        self.connect()
        assert self.shell is not None
        if shutil.which("socat") is None:
            raise MachineError("shell_interact needs socat on the host (apt-get install socat)")
        target = address or "READLINE,prompt=$ "
        self.log("Terminal is ready (there is no initial prompt):")
        subprocess.run(["socat", target, f"FD:{self.shell.fileno()}"], pass_fds=[self.shell.fileno()], check=False)

    # -- files -----------------------------------------------------------------------------

    def copy_from_host_via_shell(self, source: str, target: str) -> None:
        """Copy a host file into the guest through the shell (no shared folder needed)."""
        data = base64.b64encode(Path(source).read_bytes()).decode()
        self.succeed(f"mkdir -p $(dirname {shlex.quote(target)})")
        self.succeed(f"echo -n {data} | base64 -d > {shlex.quote(target)}")

    def copy_from_host(self, source: str, target: str) -> None:
        """Copy a host file or directory to ``target`` in the guest through the 9p shared dir."""
        host_src = Path(source)
        staging = Path(tempfile.mkdtemp(dir=self.shared_dir))
        try:
            host_copy = staging / host_src.name
            if host_src.is_dir():
                shutil.copytree(host_src, host_copy)
            else:
                shutil.copy(host_src, host_copy)
            guest_src = Path("/tmp/shared") / staging.name / host_src.name
            self.succeed(
                f"mkdir -p $(dirname {shlex.quote(target)})",
                f"cp -r {shlex.quote(str(guest_src))} {shlex.quote(target)}",
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def copy_from_machine(self, source: str, target_dir: str = "") -> None:
        """Copy a guest file or directory to ``out_dir/target_dir/<basename>`` on the host."""
        staging = Path(tempfile.mkdtemp(dir=self.shared_dir))
        try:
            guest_dir = Path("/tmp/shared") / staging.name
            self.succeed(f"cp -r {shlex.quote(source)} {shlex.quote(str(guest_dir))}/")
            copied = staging / Path(source).name
            destination = self.out_dir / target_dir / Path(source).name
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.is_dir():
                shutil.rmtree(destination)
            shutil.move(str(copied), destination)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def copy_from_vm(self, source: str, target_dir: str = "") -> None:
        """The pre-2026 name of ``copy_from_machine``."""
        self.copy_from_machine(source, target_dir)

    # -- monitor, QMP, screen, keyboard, network --------------------------------------------

    def send_monitor_command(self, command: str) -> str:
        """Send a QEMU human-monitor command; returns its answer."""
        self.run_callbacks()
        if self.monitor is None:
            raise MachineError(f"{self.name}: QEMU is not running (monitor command {command!r})")
        with self._monitor_lock:
            self.monitor.sendall(f"{command}\n".encode())
            if command == "quit":
                return ""
            return _clean_monitor_answer(self._wait_for_monitor_prompt())

    def wait_for_qmp_event(
        self, event_filter: Callable[[dict[str, Any]], bool], timeout: Timeout = 600
    ) -> dict[str, Any]:
        """Wait for a QMP event accepted by ``event_filter``."""
        if self.qmp_client is None:
            raise MachineError(f"{self.name}: QMP is not connected")
        return self.qmp_client.wait_for_event(event_filter, to_seconds(timeout))

    def screenshot(self, filename: str) -> None:
        """Save the screen as PNG (``.png`` added if no suffix; in out_dir if no directory)."""
        if "." not in filename:
            filename += ".png"
        target = Path(filename) if "/" in filename else self.out_dir / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        ppm = self.state_dir / "screenshot.ppm"
        with self.nested(f"making screenshot {target}"):
            answer = self.send_monitor_command(f"screendump {ppm}")
            try:
                target.write_bytes(_ppm_to_png(ppm.read_bytes()))
            except (OSError, ValueError) as error:
                raise MachineError(
                    f"{self.name}: cannot make a screenshot ({error}); monitor said: {answer.strip()!r}"
                ) from None
            finally:
                ppm.unlink(missing_ok=True)

    def send_key(self, key: str, delay: float | None = 0.01, log: bool = True) -> None:
        """Press ``key`` (QEMU key name, e.g. ``ctrl-alt-delete``)."""
        if log:
            self.log(f"sending key {key!r}")
        self.send_monitor_command(f"sendkey {key}")
        if delay is not None:
            time.sleep(delay)

    def send_chars(self, chars: str, delay: float | None = 0.01) -> None:
        """Type ``chars`` on the keyboard."""
        with self.nested(f"sending keys {chars!r}"):
            for char in chars:
                if char not in CHAR_TO_KEY:
                    raise MachineError(f"{self.name}: no key for character {char!r}")
                self.send_key(CHAR_TO_KEY[char], delay, log=False)

    def block(self) -> None:
        """Take the first VLAN NIC's link down."""
        self.send_monitor_command("set_link virtio-net-pci.1 off")

    def unblock(self) -> None:
        """Bring the first VLAN NIC's link back up."""
        self.send_monitor_command("set_link virtio-net-pci.1 on")

    def forward_port(self, host_port: int = 8080, guest_port: int = 80) -> None:
        """Forward 127.0.0.1:host_port on the host to guest_port (loopback only, never all interfaces)."""
        answer = self.send_monitor_command(f"hostfwd_add tcp:127.0.0.1:{int(host_port)}-:{int(guest_port)}")
        if "could not" in answer.lower() or "error" in answer.lower():
            raise MachineError(f"{self.name}: forwarding port {host_port} -> {guest_port} failed: {answer.strip()}")

