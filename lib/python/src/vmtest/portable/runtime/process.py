"""The processes the runtime starts (QEMU, vde_switch): their priority, and stopping them without leaving any behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any


def terminate_group(process: subprocess.Popen[Any], grace: float = 5.0) -> None:
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


def set_session_nice(pid: int, nice: int, log: Callable[[str], None]) -> None:
    """Nice the autogroup of ``pid``'s session (QEMU's own: start_new_session), when the kernel
    groups sessions: CFS then shares the CPU between groups first, and a thread's nice
    value counts only inside its group. A refusal is logged as a warning."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")
    except FileNotFoundError:
        pass  # no autogroups (CONFIG_SCHED_AUTOGROUP off) or QEMU has exited
    except OSError as error:
        log(f"WARNING: cannot set the nice value of QEMU's session to {nice}: {error.strerror}")


def end_boot_priority(pid: int, log: Callable[[str], None]) -> None:
    """Put ``pid``'s session and every thread of it back to nice 0; a refusal is logged as a warning."""
    set_session_nice(pid, 0, log)
    tasks = Path(f"/proc/{pid}/task")
    try:
        # Twice: a thread created during the first pass may have inherited the old value.
        for _ in range(2):
            for task in tasks.iterdir():
                try:
                    os.setpriority(os.PRIO_PROCESS, int(task.name), 0)
                except ProcessLookupError:
                    continue
    except PermissionError:
        log("WARNING: cannot raise QEMU's priority back to nice 0 (needs CAP_SYS_NICE); "
            "the machine keeps running niced")
        return
    except FileNotFoundError:
        return  # QEMU has exited; connect() reports that
    log("back to nice 0")
