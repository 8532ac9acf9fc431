"""A stand-in for a QEMU process: it connects the monitor and shell sockets and answers like one.

``QemuMachine.start()`` then runs its real code (sockets, serial reader, monitor
prompt) without a VM: the fake prints the monitor prompt, the backdoor marker on the
shell, and exits on the monitor's ``quit`` or the shell's ``poweroff``.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

from vmtest.portable.runtime.backdoor import MARKER


class FakeQemu:
    """Shaped like the ``subprocess.Popen`` that ``QemuMachine.start`` makes."""

    def __init__(self, command: str, *, cwd: Path, **_: Any) -> None:
        self.command = command
        self.pid = 0  # never a real process group: tests must not call release()
        self.returncode: int | None = None
        read_end, self._write_end = os.pipe()
        self.stdout = os.fdopen(read_end, "rb")
        self.stdin = open(os.devnull, "wb")  # noqa: SIM115 - lives as long as the fake process
        self._exited = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._run, args=(Path(cwd),), daemon=True).start()

    def _connect(self, path: Path) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        self._sockets.append(sock)
        return sock

    def _run(self, state_dir: Path) -> None:
        monitor = self._connect(state_dir / "monitor")
        shell = self._connect(state_dir / "shell")
        os.write(self._write_end, b"fake serial line\n")
        monitor.sendall(b"QEMU 9.2.0 monitor\r\n(qemu) ")
        shell.sendall(MARKER + b"\n")
        threading.Thread(target=self._exit_on, args=(shell, b"poweroff"), daemon=True).start()
        self._exit_on(monitor, b"quit")

    def _exit_on(self, sock: socket.socket, word: bytes) -> None:
        received = b""
        while word not in received:
            try:
                chunk = sock.recv(1024)
            except OSError:
                return
            if not chunk:
                return
            received += chunk
        self._exit()

    def _exit(self) -> None:
        if self._exited.is_set():
            return
        self.returncode = 0
        self._exited.set()
        os.close(self._write_end)
        for sock in self._sockets:
            sock.close()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._exited.wait(timeout)
        assert self.returncode is not None, "the fake QEMU did not exit"
        return self.returncode
