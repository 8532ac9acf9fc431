"""The processes the runtime starts (QEMU, vde_switch, mmdebstrap): tied to vmtest's life, their
priority, and stopping them without leaving any behind.

Whatever ends vmtest (a SIGKILL from a CI runner's time limit, the OOM killer), its children
must not outlive it: each is started with ``prctl(PR_SET_PDEATHSIG)``, so the kernel signals
it when vmtest dies. The kernel sends that signal when the *thread* that forked the child
exits, not the process: a QEMU started from a short-lived thread (``start_all`` starts the
machines in parallel) would be killed as soon as that thread ended. ``spawn`` therefore
forks every long-lived child from the main thread or from one spawner thread that lives
as long as the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmtest.errors import RequestedAssertionFailed
from vmtest.waiting import gave_up

PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    return function


_PRCTL = _prctl()


def die_with_parent(signum: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel send ``signum`` to the child when the thread forking it
    (see ``spawn``) or its whole process dies; a child whose parent died before that is set up
    sends it to itself."""
    parent = os.getpid()
    prctl = _PRCTL
    # Made here, in the parent: the child between fork and exec calls nothing it need not.
    arguments = (ctypes.c_ulong(signum), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))

    def preexec() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, *arguments)
        if os.getppid() != parent:
            os.kill(os.getpid(), signum)

    return preexec


class _Job:
    """One ``subprocess.Popen`` for the spawner thread; the caller may stop waiting for it."""

    def __init__(self, start: Callable[[], subprocess.Popen[Any]]) -> None:
        self.start = start
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.process: subprocess.Popen[Any] | None = None
        self.error: BaseException | None = None
        self.abandoned = False


class _Spawner:
    """A thread that lives as long as the process and forks the children other threads ask for."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            process: subprocess.Popen[Any] | None = None
            try:
                process = job.start()
            except BaseException as error:  # handed to the thread that asked
                job.error = error
            with job.lock:
                orphan = job.abandoned
                job.process = process
                job.done.set()
            if orphan and process is not None:
                terminate_group(process)

    def run(self, start: Callable[[], subprocess.Popen[Any]]) -> subprocess.Popen[Any]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="vmtest-spawner", daemon=True)
                self._thread.start()
        job = _Job(start)
        self._jobs.put(job)
        try:
            job.done.wait()
        except BaseException:
            # Interrupted (SIGINT, SIGTERM): nobody would own the child, so the spawner stops it.
            with job.lock:
                job.abandoned = not job.done.is_set()
                started = job.process
            if started is not None:
                terminate_group(started)
            raise
        if job.error is not None:
            raise job.error
        assert job.process is not None
        return job.process


_SPAWNER = _Spawner()


def spawn(argv: Any, *, death_signal: int = signal.SIGKILL, **options: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(argv, **options)`` for a child that must not outlive vmtest: it gets
    ``death_signal`` when vmtest dies, however it dies. Forked from the main thread, or else from
    the spawner thread, never from a thread that may end before the child."""
    preexec = die_with_parent(death_signal)

    def start() -> subprocess.Popen[Any]:
        return subprocess.Popen(argv, preexec_fn=preexec, **options)

    if threading.current_thread() is threading.main_thread():
        return start()
    return _SPAWNER.run(start)


def run_tied(argv: list[str], **options: Any) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` for a helper (mke2fs, qemu-img, cp) that must not outlive vmtest. The calling
    thread waits for it, so it outlives the child unless the whole process dies."""
    return subprocess.run(argv, preexec_fn=die_with_parent(), **options)


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


def wait_for_exit(process: subprocess.Popen[Any], timeout: float | None, name: str, what: str) -> None:
    """Wait for ``process`` (a machine's QEMU or nspawn) to exit, at most ``timeout`` seconds (None: for
    ever); raises RequestedAssertionFailed naming machine ``name`` and ``what`` did not happen."""
    started = time.monotonic()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        assert timeout is not None
        elapsed = time.monotonic() - started
        raise RequestedAssertionFailed(gave_up(name, what, elapsed, timeout, f"pid {process.pid} still running"))\
            from None

