"""Stopping the processes the runtime starts (QEMU, vde_switch) without leaving any behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def terminate_group(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM ``process``'s process group, SIGKILL it after ``grace`` seconds, and reap it.

    The runtime starts every child in its own session, so the group also holds
    whatever a start script spawned.
    """
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
