"""NspawnMachine: the Machine API over a systemd-nspawn container booted from a VM image's disk.

The same image a VM boots (``disk.img``, a raw ext4 root file system) boots as a container: no
kernel, no TCG, a boot in about a second. As upstream's ``NspawnMachine`` (nixpkgs #478109) does,
``execute`` enters the container's namespaces with ``nsenter`` and the container reports its
leader PID and readiness on a datagram ``NOTIFY_SOCKET`` drained for its whole life. What a script
can tell is the VM's backdoor: the same bash with the same environment (``/etc/profile``, ``cd
/tmp``, stderr to the console), ``set -euo pipefail``, and a timeout is the guest's ``timeout(1)``,
status 124.

Nothing outlives the run, however it ends. The container starts as::

    unshare --pid --fork --kill-child --mount --propagation private -- /bin/sh -c '<mounts>; exec "$@"' \
        sh <disk.img> <state dir> systemd-nspawn --directory=<state dir>/root …

in a PID namespace of its own, whose first process is systemd-nspawn: when nspawn dies, the kernel
kills everything in it, the container's systemd included (a SIGKILLed nspawn alone leaves its
container running). ``unshare`` is started by ``process.spawn`` (SIGKILL when vmtest dies) and
SIGKILLs nspawn when it dies itself. The image is mounted read-only through a loop device
(``autoclear``) with an overlay on top whose upper directory is in the machine's state directory
(state survives ``shutdown``/``start`` as a VM's disk does), both in that private mount namespace:
the host never sees them, and they go with the namespace. The VLANs are ``container_net``'s.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from vmtest.artifacts import SERIAL_LOGS
from vmtest.errors import MachineError
from vmtest.machine_api import UnsupportedOnMachine, describe
from vmtest.portable.runtime.console import follow_console
from vmtest.portable.runtime.container_net import LOCALHOST, NetworkNamespace, hosts_file, write_file
from vmtest.portable.runtime.driver_log import AbstractLogger
from vmtest.portable.runtime.nspawn_command import (
    BOOT_DEADLINE_SECONDS,
    BOOTED,
    GUEST_PATH,
    HOST_GRACE_SECONDS,
    NSPAWN_ENVIRONMENT,
    guest_command,
    host_pid,
    machine_name,
    notify_fields,
    nspawn_argv,
    start_argv,
)
from vmtest.portable.runtime.process import run_tied, spawn, terminate_group, wait_for_exit
from vmtest.portable.runtime.x11 import X11Machine
from vmtest.progress.events import Emit, MachineStarted, MachineStopped
from vmtest.waiting import Deadline, Timeout, format_seconds, poll, to_seconds, to_whole_seconds

NO_SCREEN = "a container has no screen, keyboard or virtual consoles (boot the machine as a VM)"
NO_QEMU = "a container has no QEMU monitor or QMP (boot the machine as a VM)"
NO_CONSOLE_INPUT = "a container's console is read-only"


def _unsupported(method: str, why: str) -> Callable[..., NoReturn]:
    def refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise UnsupportedOnMachine(f"{method}() is not available on the {describe(self)}: {why}")

    refuse.__name__ = refuse.__qualname__ = method
    refuse.__doc__ = f"Raises UnsupportedOnMachine: {why}."
    return refuse


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


class NspawnMachine(X11Machine):
    """A container booted by systemd-nspawn from an image's disk, driven through ``nsenter``."""

    def __init__(
        self,
        out_dir: Path,
        tmp_dir: Path,
        disk: Path,
        logger: AbstractLogger,
        name: str,
        *,
        hosts: str = LOCALHOST,
        network: NetworkNamespace | None = None,
        keep_machine_state: bool = False,
        callbacks: list[Callable[[], Any]] | None = None,
        boot_timeout: float | None = None,
        redact: Callable[[str], str] | None = None,
        progress: Emit | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.tmp_dir = Path(tmp_dir)
        self.disk = Path(disk)
        self.logger = logger
        self.name = name
        self.network = network
        self.keep_machine_state = keep_machine_state
        self.callbacks = callbacks if callbacks is not None else []
        self.boot_timeout = boot_timeout or BOOT_DEADLINE_SECONDS
        self.redact = redact or (lambda text: text)
        self.progress = progress
        self.state_dir = self.tmp_dir / f"machine-state-{self.name}"
        if not self.keep_machine_state and self.state_dir.exists():
            self.cleanup_statedir()
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.shared_dir = self.tmp_dir / "shared-xchg"
        self.shared_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.console_log_path = self.out_dir / SERIAL_LOGS / f"{self.name}.log"
        # Unique on this host: nspawn keeps per-machine paths under /run/systemd/nspawn.
        self.machine_name = machine_name(self.name, self.tmp_dir)
        self.files = self._write_guest_files(hosts)
        self.process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.leader: int | None = None
        self.booted = False
        self.connected = False
        self.started_at: float | None = None
        self.connected_at: float | None = None
        self.boot_panics: list[str] = []  # the driver's run record asks every machine
        self.accelerator_reason: str | None = None
        self.checkpoint_store: Any = None
        self.console_tail_lines: list[str] = []
        self._notify: socket.socket | None = None
        self._namespace_leader: int | None = None
        self._threads: list[threading.Thread] = []
        self._background: list[subprocess.Popen[bytes]] = []

    def _write_guest_files(self, hosts: str) -> dict[str, Path]:
        files = self.state_dir.parent / f"container-files-{self.name}"
        journald = "[Journal]\nForwardToConsole=yes\nTTYPath=/dev/console\nMaxLevelConsole=info\n"
        return {
            "/etc/hosts": write_file(files / "hosts", hosts),
            "/etc/resolv.conf": write_file(files / "resolv.conf", ""),
            # The image's fstab mounts /dev/vda and 9p shares: a container has neither.
            "/etc/fstab": write_file(files / "fstab", "# a vmtest container: nspawn mounts everything\n"),
            "/etc/systemd/journald.conf.d/vmtest.conf": write_file(files / "journald.conf", journald),
        }

    def run_callbacks(self) -> None:
        for callback in self.callbacks:
            callback()

    def is_up(self) -> bool:
        return self.booted and self.connected

    def boot_seconds(self) -> float | None:
        """Seconds from the latest start to the first command's shell, or None if not connected since."""
        if self.started_at is None or self.connected_at is None:
            return None
        return self.connected_at - self.started_at

    def _show(self, event: Any) -> None:
        if self.progress is not None:
            self.progress(event)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the container (no-op if running); returns at once, before it boots."""
        if self.booted:
            return
        self.log("starting container")
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        notify_path = self.state_dir / "notify"
        notify_path.unlink(missing_ok=True)
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(notify_path))
        self._namespace_leader = self.leader = None
        nspawn = nspawn_argv(self.name, self.machine_name, self.state_dir, self.shared_dir, self.files,
                             self.network.path if self.network is not None else None)
        self.console_log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        self.connected_at = None
        self.connected = False
        self._show(MachineStarted(self.name))
        # A fresh environment, as upstream's: the host's PATH and variables are not the guest's.
        environment = {"PATH": os.environ.get("PATH", GUEST_PATH), "NOTIFY_SOCKET": str(notify_path),
                       **NSPAWN_ENVIRONMENT}
        try:
            self.process = spawn(start_argv(self.disk, self.state_dir, nspawn), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment,
                                 cwd=self.state_dir, start_new_session=True)
        except FileNotFoundError:
            raise MachineError(f"{describe(self)}: containers need unshare (util-linux) and systemd-nspawn "
                               "(apt-get install systemd-container)") from None
        self.pid = self.process.pid
        self.booted = True
        self._threads = [threading.Thread(target=target, name=f"{what}-{self.name}", daemon=True)
                         for target, what in ((self._drain_notify, "notify"), (self._read_console, "console"))]
        for thread in self._threads:
            thread.start()
        self.log(f"systemd-nspawn running (pid {self.pid}): {shlex.join(nspawn)}")

    def _drain_notify(self) -> None:
        # Drained for the container's whole life, as upstream's: its systemd sends READY=1 again on
        # every daemon-reexec and would block on a full socket.
        sock, process = self._notify, self.process
        assert sock is not None and process is not None
        sock.settimeout(0.5)
        while process.poll() is None:
            try:
                fields = notify_fields(sock.recv(4096))
            except TimeoutError:
                continue
            except OSError:
                return
            if "X_NSPAWN_LEADER_PID" in fields:
                self._namespace_leader = int(fields["X_NSPAWN_LEADER_PID"])

    def _read_console(self) -> None:
        # The container's console (nspawn's output) is the machine's serial console: to the log and
        # to serial/<name>.log, as a VM's is. The reading never stops while nspawn writes.
        assert self.process is not None and self.process.stdout is not None
        follow_console(self.process.stdout, self.console_log_path, self.redact, self._keep_line,
                       lambda error: self.log(f"WARNING: cannot write the console log {self.console_log_path}: "
                                              f"{error.strerror or error}"))

    def _keep_line(self, line: str) -> None:
        self.console_tail_lines = [*self.console_tail_lines[-19:], line]
        self.log_serial(line)

    def console_tail(self, lines: int = 10) -> str:
        return "\n".join(self.console_tail_lines[-lines:])

    def _gone(self, doing: str) -> MachineError:
        status = self.process.poll() if self.process is not None else None
        if status is not None:
            for thread in self._threads:  # the console's last words
                thread.join(timeout=2)
        elapsed = format_seconds(time.monotonic() - self.started_at) if self.started_at else "?"
        self.connected = False
        return MachineError(
            f"{describe(self)}: the container is gone {doing} ({elapsed} after start; systemd-nspawn "
            f"{'exit status ' + str(status) if status is not None else 'still running'}). Console log: "
            f"{self.console_log_path}. Last console lines:\n{self.console_tail()}")

    def connect(self) -> None:
        """Wait until the container's systemd has reached basic.target (where a VM's backdoor starts)."""
        if self.connected:
            return
        self.start()
        assert self.process is not None and self.started_at is not None
        process = self.process
        deadline = Deadline(max(0.0, self.boot_timeout - (time.monotonic() - self.started_at)))
        with self.nested("waiting for the container to finish booting"):
            last = "no leader PID from systemd-nspawn yet"

            def booted(_last_try: bool) -> bool:
                nonlocal last
                if process.poll() is not None:
                    return True
                if self.leader is None:
                    self.leader = self._find_leader()
                    if self.leader is None:
                        return False
                status, output = self._nsenter(BOOTED, 10, quiet=True)
                last = f"basic.target {output.strip() or 'not active yet'}"
                return status == 0

            ready = poll(booted, deadline, interval=0.05)
            if process.poll() is not None:
                raise self._gone("while booting")
            if not ready:
                raise MachineError(
                    f"{describe(self)}: did not boot within the boot deadline of {format_seconds(self.boot_timeout)} "
                    f"({format_seconds(time.monotonic() - self.started_at)} after start; set it with "
                    f"--boot-timeout); last: {last}. Console log: {self.console_log_path}. Last console "
                    f"lines:\n{self.console_tail()}")
        self.connected = True
        self.connected_at = time.monotonic()
        self.log(f"connected to the container after {format_seconds(self.connected_at - self.started_at)}")

    def _find_leader(self) -> int | None:
        """The host PID of the container's systemd, once nspawn has named it (in its own PID namespace)."""
        if self._namespace_leader is None or self.pid is None:
            return None
        for nspawn in _children(self.pid):
            for child in _children(nspawn):
                with contextlib.suppress(OSError):
                    if host_pid(Path(f"/proc/{child}/status").read_text(), self._namespace_leader):
                        return child
        return None

    def _nsenter_argv(self, script: str) -> list[str]:
        assert self.leader is not None
        return ["nsenter", f"--target={self.leader}", "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup",
                "/bin/bash", "--norc", "--noprofile", "-c", script]

    def _nsenter(self, script: str, timeout: float | None, quiet: bool = False) -> tuple[int, str]:
        try:
            done = run_tied(self._nsenter_argv(script), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={"PATH": GUEST_PATH}, timeout=timeout)
        except subprocess.TimeoutExpired as expired:
            output = expired.stdout or b""
            return 124, output.decode(errors="replace") if isinstance(output, bytes) else output
        if done.stderr and not quiet:
            self.log(f"nsenter: {done.stderr.decode(errors='replace').strip()}")
        return done.returncode, done.stdout.decode(errors="replace")

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: Timeout | None = 900) -> tuple[int, str]:
        """Run ``command`` under ``set -euo pipefail`` in the container; returns (status, stdout).

        With ``timeout`` the guest's ``timeout(1)`` ends the command and the status is 124 (the
        host ends nsenter 30 s later if the guest does not). Raises MachineError if the
        container is gone.
        """
        self.run_callbacks()
        self.connect()
        script = guest_command(command, timeout)
        if not check_output:
            assert self.leader is not None
            self._background = [job for job in self._background if job.poll() is None]
            self._background.append(spawn(self._nsenter_argv(script), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, env={"PATH": GUEST_PATH}))
            return (-2, "")
        host_limit = None if timeout is None else to_whole_seconds(timeout) + HOST_GRACE_SECONDS
        status, output = self._nsenter(script, host_limit)
        if status != 0 and not (self.leader is not None and _alive(self.leader)):
            raise self._gone(f"while running `{command[:200]}`")
        if status == 124 and host_limit is not None:
            self.log(f"`{command[:200]}` timed out (timeout {format_seconds(to_whole_seconds(timeout or 0))})")
        return (-1 if not check_return else status, output)

    def shutdown(self) -> None:
        """Power the container off (``systemctl poweroff``) and wait for nspawn to exit."""
        if not self.booted:
            return
        with self.nested("shutting down"):
            if self.connected:
                with contextlib.suppress(MachineError):
                    self.execute("systemctl poweroff", check_output=False)
            elif self.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGTERM)  # nspawn halts the container on SIGTERM
            self.wait_for_shutdown()

    def crash(self) -> None:
        """Simulate a sudden power failure: SIGKILL nspawn, and with it every process of the container."""
        if not self.booted or self.process is None:
            return
        self.log("simulating a crash")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.wait_for_shutdown()

    def wait_for_shutdown(self, timeout: Timeout | None = None) -> None:
        """Wait for nspawn to exit (the container powered off), then close this machine's sockets; with a
        ``timeout``, raises RequestedAssertionFailed when it is still running then (it is left running)."""
        if not self.booted or self.process is None:
            return
        with self.nested("waiting for the container to power off"):
            wait_for_exit(self.process, None if timeout is None else to_seconds(timeout), self.name,
                          "the container did not power off")
            self._close()

    def _close(self) -> None:
        self._show(MachineStopped(self.name))
        for job in self._background:
            terminate_group(job, grace=1.0)
        self._background = []
        if self._notify is not None:
            self._notify.close()
            self._notify = None
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        self.booted = self.connected = False
        self.leader = None

    def release(self) -> None:
        """Tear down: SIGTERM nspawn (it halts the container), SIGKILL after 5 s; nothing is left."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.logger.info(f"kill NspawnMachine {self.name} (pid {self.process.pid})")
        terminate_group(self.process)
        if self.booted:
            self._close()

    # -- what a container does not have --------------------------------------------------------

    screenshot = _unsupported("screenshot", NO_SCREEN)
    get_screen_text = _unsupported("get_screen_text", NO_SCREEN)
    get_screen_text_variants = _unsupported("get_screen_text_variants", NO_SCREEN)
    wait_for_text = _unsupported("wait_for_text", NO_SCREEN)
    send_key = _unsupported("send_key", NO_SCREEN)
    send_chars = _unsupported("send_chars", NO_SCREEN)
    get_tty_text = _unsupported("get_tty_text", NO_SCREEN)
    wait_until_tty_matches = _unsupported("wait_until_tty_matches", NO_SCREEN)
    dump_tty_contents = _unsupported("dump_tty_contents", NO_SCREEN)
    send_console = _unsupported("send_console", NO_CONSOLE_INPUT)
    console_interact = _unsupported("console_interact", NO_CONSOLE_INPUT)
    shell_interact = _unsupported("shell_interact", "no interactive shell on containers yet")
    wait_for_console_text = _unsupported("wait_for_console_text", "console text waits are for VMs")
    send_monitor_command = _unsupported("send_monitor_command", NO_QEMU)
    wait_for_qmp_event = _unsupported("wait_for_qmp_event", NO_QEMU)
    block = _unsupported("block", NO_QEMU)
    unblock = _unsupported("unblock", NO_QEMU)
    forward_port = _unsupported("forward_port", "a container has no user-mode network to forward from")
    reboot = _unsupported("reboot", "a container has no kernel to reboot (use shutdown() and start())")
    switch_root = _unsupported("switch_root", "a container boots without an initrd")


def new_container(driver: Any, config: Any, boot_timeout: float | None) -> NspawnMachine:
    """The NspawnMachine of ``config`` (a ``MachineConfig`` of kind container) in ``driver``'s run, in
    a network namespace on its VLANs (``driver.container_network``)."""
    network = driver.container_network.attach(config)
    return NspawnMachine(
        out_dir=driver.out_dir, tmp_dir=driver.tmp_dir, disk=config.image.disk, logger=driver.logger,
        name=config.name, hosts=hosts_file(driver.configs), network=network,
        keep_machine_state=driver.keep_machine_state, callbacks=[driver.check_polling_conditions],
        boot_timeout=boot_timeout, redact=driver.redactor.redact, progress=driver.progress,
    )
