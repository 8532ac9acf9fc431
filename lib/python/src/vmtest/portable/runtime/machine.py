"""QemuMachine: the upstream driver's Machine API over a QEMU process and its backdoor shell.

Names, signatures and semantics follow nixpkgs' ``test_driver.machine``, down to the guest commands
the methods run (``nc -z``, ``xwininfo``, ``journalctl``: a Debian twin carries what a NixOS node has
for them, tests/repo/guest_interface.py). Errors name the machine, what was waited for, the elapsed
time and where the console log is.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import select
import shlex
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmtest.artifacts import SERIAL_LOGS
from vmtest.errors import MachineError
from vmtest.machine_api import CheckpointSites, UnsupportedOnMachine
from vmtest.portable.runtime.backdoor import (
    BACKDOOR_DEVICES,
    MARKER,
    STATUS_REQUEST,
    CorruptOutput,
    command_line,
    read_line_block,
    read_output,
)
from vmtest.portable.runtime.base_machine import BaseMachine
from vmtest.portable.runtime.console import ConsoleMachine
from vmtest.portable.runtime.driver_log import AbstractLogger
from vmtest.portable.runtime.machine_state import QEMU_CONNECT_TIMEOUT, SavedStateMachine
from vmtest.portable.runtime.process import (
    end_boot_priority,
    run_tied,
    set_session_nice,
    spawn,
    terminate_group,
    wait_for_exit,
)
from vmtest.portable.runtime.qmp import QMPClient
from vmtest.portable.runtime.x11 import X11Machine
from vmtest.progress.events import Emit, Event, GuestResult, MachineStarted, MachineStopped
from vmtest.waiting import Deadline, Timeout, format_seconds, to_seconds

__all__ = ["MARKER", "BaseMachine", "QemuMachine"]


class QemuMachine(ConsoleMachine, SavedStateMachine, X11Machine):
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
        vsock_guest: Path | None = None,
        vsock_host: Path | None = None,
        *,
        boot_panic_retries: int = 0,
        boot_nice: int = 0,
        boot_timeout: float | None = None,
        redact: Callable[[str], str] | None = None,
        keep_vm_state: bool = False,
        progress: Emit | None = None,
    ) -> None:
        if vsock_guest is not None or vsock_host is not None:  # the 2026 driver's SSH backdoor over vsock
            raise UnsupportedOnMachine(f"QemuMachine {name or start_command}: the SSH backdoor over vsock "
                                       "(vsock_guest, vsock_host) is the NixOS driver's; the portable runtime "
                                       "has none: shell_interact()")
        self.out_dir = Path(out_dir)
        self.tmp_dir = Path(tmp_dir)
        self.start_command = start_command
        self.logger = logger
        match = re.search(r"run-(.+)-vm$", start_command)
        self.name = name or (match.group(1) if match else "machine")
        # keep_vm_state: the pre-2026 spelling, accepted as a keyword.
        self.keep_machine_state = keep_machine_state or keep_vm_state
        self.callbacks = callbacks if callbacks is not None else []
        self.state_dir = self.tmp_dir / f"machine-state-{self.name}"
        if not self.keep_machine_state and self.state_dir.exists():
            self.cleanup_statedir()
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.shared_dir = self.tmp_dir / "shared-xchg"
        self.shared_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.monitor_path = self.state_dir / "monitor"
        self.shell_path = self.state_dir / "shell"
        self.qmp_path = self.state_dir / "qmp"
        self.console_log_path = self.out_dir / SERIAL_LOGS / f"{self.name}.log"
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
        # Upstream's names: every console line since start, and the lines
        # wait_for_console_text has not consumed yet.
        self.full_console_log: list[str] = []
        self.last_lines: queue.Queue[str] = queue.Queue()
        self._shell_lock = threading.RLock()
        self._unread_outputs = 0
        self._monitor_lock = threading.Lock()
        self.boot_panic_retries = boot_panic_retries
        self.boot_panics: list[str] = []
        self.boot_nice = boot_nice
        self.boot_timeout = boot_timeout
        self.redact = redact or (lambda text: text)
        self.serial_write_error: str | None = None
        self.progress = progress
        # Why the host gave this machine its accelerator (the driver sets it): reports show it, as the
        # guest only sees the outcome.
        self.accelerator_reason: str | None = None
        # The run's checkpoints (vmtest.checkpoint), set by the driver when it keeps them.
        self.checkpoint_store: CheckpointSites | None = None

    def show_progress(self, event: Event) -> None:
        """Show ``event`` on the run's progress display (a guest's words redacted); without one, log a
        guest result's line."""
        if isinstance(event, GuestResult):
            event = event.redacted(self.redact)
        if self.progress is not None:
            self.progress(event)
        elif isinstance(event, GuestResult):
            self.log(event.line())

    def boot_seconds(self) -> float | None:
        """Seconds from the latest start to the backdoor's answer, or None if it has not answered since."""
        if self.started_at is None or self.connected_at is None:
            return None
        return self.connected_at - self.started_at

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
        deadline = Deadline(QEMU_CONNECT_TIMEOUT)
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
                        + self.console_tail(20)
                    ) from None
                if deadline.expired():
                    raise MachineError(
                        f"{self.name}: QEMU did not connect its {what} socket within "
                        f"{QEMU_CONNECT_TIMEOUT:.0f} s (start command: {self.start_command})"
                    ) from None

    def start(self, allow_reboot: bool = False) -> None:
        """Start QEMU (no-op if running); returns once the monitor answers, before the guest boots."""
        if self.booted:
            return
        self.log("starting vm")
        self._launch(allow_reboot)

    def _launch(self, allow_reboot: bool, incoming: Path | None = None) -> None:
        # cleanup_statedir() may have removed it: the next start boots a fresh disk, as a new machine's
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        monitor_server = self._listen(self.monitor_path)
        shell_server = self._listen(self.shell_path)
        arguments = [
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            "-monitor", f"unix:{self.monitor_path}",
            "-chardev", f"socket,id=shell,path={self.shell_path}",
            *BACKDOOR_DEVICES,
            "-device", "virtio-rng-pci", "-serial", "stdio",
        ]
        if not allow_reboot:
            arguments.append("-no-reboot")
        if incoming is not None:
            arguments += ["-incoming", f"exec:cat {shlex.quote(str(incoming))}"]
        environment = {
            **os.environ,
            "TMPDIR": str(self.state_dir),
            "SHARED_DIR": str(self.shared_dir),
            "USE_TMPDIR": "1",
        }
        self.console_log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        self.show_progress(MachineStarted(self.name))
        # A new boot: the previous one's connection time would make boot_seconds() negative.
        self.connected_at = None
        self.connected = False
        # nice(1) execs the script, which execs QEMU: one process, and every thread QEMU
        # creates inherits the nice value.
        nice = f"nice -n {self.boot_nice} " if self.boot_nice else ""
        # spawn: QEMU gets SIGKILL if vmtest dies without a teardown (SIGKILL, the OOM killer).
        self.process = spawn(
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
            set_session_nice(self.pid, self.boot_nice, self.log)
        self.serial_thread = threading.Thread(target=self._read_serial, name=f"serial-{self.name}", daemon=True)
        self.serial_thread.start()
        try:
            self.monitor = self._accept(monitor_server, "monitor")
            self.shell = self._accept(shell_server, "shell")
        finally:
            monitor_server.close()
            shell_server.close()
        self.wait_for_monitor_prompt()
        self.qmp_client = QMPClient(self.qmp_path)
        self.booted = True
        self.log(f"QEMU running (pid {self.pid})" + (f", booting at nice {self.boot_nice} until first needed"
                                                     if self.boot_nice else ""))

    def _end_boot_priority(self) -> None:
        """Put QEMU back to nice 0: the testScript now waits for this machine."""
        if not self.boot_nice or self.pid is None:
            return
        self.boot_nice = 0
        end_boot_priority(self.pid, self.log)

    def wait_for_monitor_prompt(self) -> str:
        """Read the monitor up to its ``(qemu) `` prompt; returns the raw text.

        Raises MachineError if QEMU is not running or the monitor closes first
        (upstream returns what it read).
        """
        if self.monitor is None:
            raise MachineError(f"{self.name}: QEMU is not running (waiting for the monitor prompt)")
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
        """Wait for the backdoor marker on the shell (boots the machine first if needed). A guest kernel
        panic before it answers is retried ``boot_panic_retries`` times (one under TCG, issue 29), each
        logged and kept in ``boot_panics``; then MachineError is raised."""
        if self.connected:
            return
        with self.nested("waiting for the VM to finish booting"):
            while True:
                first_line = len(self.full_console_log)
                try:
                    self._wait_for_marker()
                    break
                except MachineError:
                    # QEMU gone: its last console lines (the panic) may still be in the reader's hands.
                    if self.process is not None and self.process.poll() is not None and self.serial_thread:
                        self.serial_thread.join(timeout=5)
                    panic = [line for line in self.full_console_log[first_line:] if "Kernel panic" in line]
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
        deadline = Deadline(self.boot_timeout) if self.boot_timeout else None
        received = b""
        while MARKER not in received:
            wait = 30.0 if deadline is None else max(0.0, min(30.0, deadline.remaining()))
            ready, _, _ = select.select([self.shell], [], [], wait)
            if not ready:
                if deadline is not None and deadline.expired():
                    raise MachineError(
                        f"{self.name}: the backdoor shell did not connect within the boot deadline of "
                        f"{format_seconds(deadline.limit)} ({format_seconds(time.monotonic() - self.started_at)} "
                        f"after start; set it with --boot-timeout). Console log: {self.console_log_path}. "
                        f"Last console lines:\n{self.console_tail()}"
                    )
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
        return MachineError(
            f"{self.name}: the VM's shell closed {doing} ({elapsed} after start; "
            f"QEMU exit status {status if status is not None else 'unknown, still running'}). "
            f"Console log: {self.console_log_path}. Last console lines:\n{self.console_tail()}"
        )

    def _read_line_block(self, doing: str, keep: bool = True) -> bytearray:
        """Read from the shell until what was received ends with a newline (kept only with ``keep``)."""
        assert self.shell is not None
        block = read_line_block(self.shell, keep=keep)
        if block is None:
            raise self._died(doing)
        return block

    def _read_output(self, doing: str) -> bytearray:
        """Read a command's base64 output line and decode it as it arrives."""
        assert self.shell is not None
        try:
            output = read_output(self.shell)
        except CorruptOutput as error:
            # QEMU drops virtio-console bytes when the host reader falls behind
            # (hw/char/virtio-console.c, flush_buf); say so rather than return garbage.
            raise MachineError(
                f"{self.name}: the command's output was corrupted in transit {doing} "
                f"({error.received} bytes of base64 received: {error}; the virtio console dropped data). "
                f"Transfer large data in checksummed chunks (vmtest.logs does) or through copy_from_machine."
            ) from None
        if output is None:
            raise self._died(doing)
        return output

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
        line = command_line(command, timeout)
        doing = f"while running `{command[:200]}`"
        with self._shell_lock:
            assert self.shell is not None
            # The guest's single bash runs commands in turn: an earlier command sent with
            # check_output=False still owes its output line, which must not be taken for ours.
            while self._unread_outputs:
                self._read_line_block(doing, keep=False)
                self._unread_outputs -= 1
            try:
                self.shell.sendall(line)
            except OSError:
                raise self._died(doing) from None
            if not check_output:
                self._unread_outputs += 1
                return (-2, "")
            # Decoded straight into a str, and the bytes let go: the output is held at most twice.
            text = self._read_output(doing).decode(errors="replace")
            if not check_return:
                return (-1, text)
            self.shell.sendall(STATUS_REQUEST)
            status = int(self._read_line_block(doing).strip())
        return (status, text)

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

    def wait_for_shutdown(self, timeout: Timeout | None = None) -> None:
        """Wait for QEMU to exit (the VM powered off), then close this machine's sockets; with a
        ``timeout``, raises RequestedAssertionFailed when it is still running then (it is left running)."""
        if not self.booted or self.process is None:
            return
        with self.nested("waiting for the VM to power off"):
            wait_for_exit(self.process, None if timeout is None else to_seconds(timeout), self.name,
                          "the VM did not power off")
            self._close()

    def _close(self) -> None:
        self.show_progress(MachineStopped(self.name))
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

    def shell_interact(self, address: str | None = None) -> None:
        """Attach the terminal (or ``address``, a socat address) to the guest's root shell."""
        self.connect()
        assert self.shell is not None
        if shutil.which("socat") is None:
            raise MachineError("shell_interact needs socat on the host (apt-get install socat)")
        target = address or "READLINE,prompt=$ "
        self.log("Terminal is ready (there is no initial prompt):")
        run_tied(["socat", target, f"FD:{self.shell.fileno()}"], pass_fds=[self.shell.fileno()], check=False)

    def switch_root(self) -> None:
        """Go from the initrd to the real root (upstream's semantics) and reconnect.

        Waits for ``initrd.target``, isolates ``initrd-switch-root.target`` and waits for the
        backdoor again; needs a backdoor running in the initrd (NixOS ``testing.initrdBackdoor``),
        which the Debian images here do not have, so it raises as ``wait_for_unit`` does there.
        """
        self.wait_for_unit("initrd.target")
        self.execute(
            "systemctl isolate --no-block initrd-switch-root.target 2>/dev/null >/dev/null",
            check_return=False,
            check_output=False,
        )
        self.connected = False
        self.connect()
