"""A QEMU machine's monitor, QMP and saved state: the monitor's commands, QMP events, and saving and
resuming its RAM, devices and disk (what ``checkpoint_store`` builds checkpoints from)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmtest.errors import MachineError, RequestedAssertionFailed
from vmtest.portable.runtime.monitor import MonitorMachine, clean_monitor_answer
from vmtest.portable.runtime.qmp import QMPClient
from vmtest.waiting import Deadline, Timeout, WaitTimedOut, format_seconds, gave_up, poll, timed_out, to_seconds

# How long start() waits for QEMU to connect its sockets before declaring it dead.
QEMU_CONNECT_TIMEOUT = 60.0


class SavedStateMachine(MonitorMachine):
    """The parts of a QEMU machine that talk to QEMU itself rather than to the guest."""

    qmp_client: QMPClient | None
    console_log_path: Path
    process: subprocess.Popen[bytes] | None
    monitor: Any
    _monitor_lock: threading.Lock
    booted: bool
    connected: bool
    boot_nice: int
    started_at: float | None
    connected_at: float | None

    def run_callbacks(self) -> None:
        raise NotImplementedError

    def wait_for_monitor_prompt(self) -> str:
        raise NotImplementedError

    def console_tail(self, lines: int = 15) -> str:
        raise NotImplementedError

    def _launch(self, allow_reboot: bool, incoming: Path | None = None) -> None:
        raise NotImplementedError

    @property
    def disk_path(self) -> Path:
        """This run's disk of the machine: a qcow2 overlay in its state directory."""
        return self.state_dir / f"{self.name}.qcow2"

    def qmp(self, command: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a QMP command; returns its answer. Raises MachineError when QMP is not connected."""
        if self.qmp_client is None:
            raise MachineError(f"{self.name}: QMP is not connected (command {command!r})")
        answer: dict[str, Any] = self.qmp_client.send(command, arguments)
        return answer

    def pause(self) -> None:
        """Stop the guest's CPUs (QMP ``stop``); raises MachineError when QMP is not connected."""
        self.qmp("stop")

    def run_on(self) -> None:
        """Let a paused guest run on (QMP ``cont``); nothing when QEMU is gone."""
        if self.qmp_client is not None and self.process is not None and self.process.poll() is None:
            self.qmp("cont")

    def save_state(self, target: Path, timeout: float) -> None:
        """Write the paused machine's RAM and device state to ``target`` (a QEMU migration stream).

        Raises MachineError naming how the save ended when it did not complete within ``timeout``.
        """
        self.qmp("migrate-set-parameters", {"max-bandwidth": 64 * 1024**3})
        self.qmp("migrate", {"uri": f"exec:cat > '{target}'"})
        status: dict[str, Any] = {}

        def done(_last_try: bool) -> bool:
            status.update(self.qmp("query-migrate"))
            return status.get("status") in ("completed", "failed", "cancelled")

        deadline = Deadline(timeout)
        poll(done, deadline, interval=0.1, last_try=False)
        if status.get("status") != "completed":
            ended = f"saving its state to {target} ended {status.get('status')!r}"
            reason = status.get("error-desc", "no reason given")
            raise MachineError(gave_up(self.name, ended, deadline.elapsed(), timeout) + f": {reason}")

    def resume_from(self, state: Path) -> None:
        """Start QEMU on the RAM and device state saved in ``state`` (a QEMU migration stream; the
        caller has put the saved disk in place) and return once the guest runs, connected: its
        backdoor shell was saved mid-session and answers without booting. Raises MachineError when
        QEMU rejects the state, naming QEMU's last words."""
        if self.booted:
            raise MachineError(f"{self.name}: cannot resume a checkpoint into a running machine")
        self.log(f"resuming vm from {state}")
        self.boot_nice = 0  # nothing boots: nothing to hold back
        self._launch(False, incoming=state)
        seen: list[str] = []

        def loaded(_last_try: bool) -> bool:
            # The state was saved paused, so the guest stays paused once it is loaded.
            seen.append(str(self.qmp("query-status").get("status")))
            return seen[-1] != "inmigrate" or self.process is None or self.process.poll() is not None

        deadline = Deadline(QEMU_CONNECT_TIMEOUT)
        if poll(loaded, deadline, interval=0.05, last_try=False) and seen[-1] == "paused":
            self.qmp("cont")
            seen.append(str(self.qmp("query-status").get("status")))
        if seen[-1] != "running":
            raise MachineError(
                gave_up(self.name, f"QEMU did not resume from {state}", deadline.elapsed(), deadline.limit,
                        f"status {seen[-1]!r}") + f"; console log: {self.console_log_path}\n" + self.console_tail(10))
        self.connected = True
        self.connected_at = time.monotonic()
        self.log(f"resumed: guest running after {format_seconds(self.connected_at - (self.started_at or 0))}")

    def send_monitor_command(self, command: str) -> str:
        """Send a QEMU human-monitor command; returns its answer."""
        self.run_callbacks()
        if self.monitor is None:
            raise MachineError(f"{self.name}: QEMU is not running (monitor command {command!r})")
        with self._monitor_lock:
            self.monitor.sendall(f"{command}\n".encode())
            if command == "quit":
                return ""
            return clean_monitor_answer(self.wait_for_monitor_prompt())

    def wait_for_qmp_event(
        self, event_filter: Callable[[dict[str, Any]], bool], timeout: Timeout = 600
    ) -> dict[str, Any]:
        """Wait for a QMP event accepted by ``event_filter`` (others are skipped, as upstream's).

        Raises RequestedAssertionFailed on timeout, MachineError when QMP is not connected.
        """
        if self.qmp_client is None:
            raise MachineError(f"{self.name}: QMP is not connected")
        try:
            return self.qmp_client.wait_for_event(event_filter, to_seconds(timeout))
        except WaitTimedOut as error:
            raise RequestedAssertionFailed(
                timed_out(self.name, "a QMP event the filter accepts", error.elapsed, error.limit)
            ) from None
