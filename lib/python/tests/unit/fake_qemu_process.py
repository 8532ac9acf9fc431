"""A stand-in for QEMU that is a real process: ``python fake_qemu_process.py <QEMU's arguments>``.

Unlike ``fake_qemu.FakeQemu`` (a thread shaped like a Popen), this one is forked and exec'd the
way the runtime starts QEMU (``process.spawn``, through the start script), so a test can kill
the vmtest that started it and see whether it outlives it. It connects the monitor and
shell sockets the arguments name, prints a serial line, answers every monitor command with
the prompt (and exits on ``quit``), and serves the backdoor shell with the host's bash (the
guest's ``poweroff`` ends it, and this process with it). Like QEMU, it keeps running when
vmtest's end of the sockets closes: only a signal or ``quit``/``poweroff`` ends it. Each one
writes its PID to ``$FAKE_QEMU_PIDS/qemu-<pid>`` when that is set.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

MARKER = b"Spawning backdoor root shell..."  # backdoor.MARKER, without importing vmtest
# Read by every bash of the fake guest (BASH_ENV): the guest commands the runtime sends that the
# host must not run.
POWEROFF = 77
GUEST_BASH_ENV = f"poweroff() {{ exit {POWEROFF}; }}\nsync() {{ :; }}\n"


def _argument(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


def _serve_monitor(monitor: socket.socket) -> bool:
    """Answer monitor commands; True on ``quit``, False when the monitor's peer went away."""
    received = b""
    while True:
        chunk = monitor.recv(4096)
        if not chunk:
            return False
        received += chunk
        while b"\n" in received:
            line, received = received.split(b"\n", 1)
            if line.strip() == b"quit":
                return True
            monitor.sendall(b"(qemu) ")


def _power_off_with(guest: subprocess.Popen[bytes]) -> None:
    if guest.wait() == POWEROFF:
        os._exit(0)


def main(argv: list[str]) -> int:
    monitor_path = _argument(argv, "-monitor").removeprefix("unix:")
    options = dict(part.split("=", 1) for part in _argument(argv, "-chardev").split(",") if "=" in part)
    pids = os.environ.get("FAKE_QEMU_PIDS")
    if pids:
        Path(pids).mkdir(parents=True, exist_ok=True)
        Path(pids, f"qemu-{os.getpid()}").write_text(f"{os.getpid()}\n")
    bash_env = Path.cwd() / "fake-guest-bash-env"
    bash_env.write_text(GUEST_BASH_ENV)
    monitor = _connect(monitor_path)
    shell = _connect(options["path"])
    print("fake serial line: booted", flush=True)
    monitor.sendall(b"QEMU 9.2.0 monitor - type 'help' for more information\r\n(qemu) ")
    shell.sendall(MARKER + b"\n")
    guest = subprocess.Popen([shutil.which("bash") or "bash"], stdin=shell.fileno(), stdout=shell.fileno(),
                             stderr=subprocess.DEVNULL, env={**os.environ, "BASH_ENV": str(bash_env)})
    threading.Thread(target=_power_off_with, args=(guest,), daemon=True).start()
    if not _serve_monitor(monitor):
        threading.Event().wait()  # as QEMU: running on, whoever left
    guest.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
