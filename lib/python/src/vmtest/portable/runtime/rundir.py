"""A run's temporary directory (``$TMPDIR/vmtest-XXXXXXXX``), and removing the ones killed runs left.

It holds what QEMU and vde_switch need while the run lasts: the sockets, the machines'
disk overlays (often hundreds of MB), the start scripts. A run removes it when it ends;
a run that was killed (SIGKILL from a CI runner's time limit, the OOM killer) cannot.
So each run holds an exclusive lock (``flock``) on ``.vmtest-run`` in it for its whole
life, with its PID written there after the lock is taken, and ``vmtest run`` removes,
before it starts, every such directory whose lock nobody holds: the kernel released it
when its run died. A directory kept on purpose (``--keep-machine-state``) says so in the
same file and is left alone, as is anything without the file or owned by someone else.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
from pathlib import Path

PREFIX = "vmtest-"
LOCK_NAME = ".vmtest-run"
KEEP = "keep"


class RunDir:
    """A new run directory under ``parent`` (default: ``$TMPDIR``), locked until ``close``."""

    def __init__(self, keep: bool = False, parent: Path | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        self._descriptor: int | None = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._descriptor, fcntl.LOCK_EX)
        # Written after the lock is taken: an empty file is a run that is starting (see sweep).
        os.write(self._descriptor, f"{os.getpid()}{' ' + KEEP if keep else ''}\n".encode())

    def close(self) -> None:
        """Release the lock (the caller removes the directory, or keeps it on purpose)."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def _stale(directory: Path) -> bool:
    """Whether ``directory`` is ours and its run is gone; holds its lock while checking."""
    try:
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return False
        descriptor = os.open(directory / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its run is alive
        words = os.read(descriptor, 200).decode(errors="replace").split()
        # Empty: a run between taking its lock and writing its PID. Kept: on purpose.
        return bool(words) and KEEP not in words
    finally:
        os.close(descriptor)


def sweep_stale_run_dirs(parent: Path | None = None) -> list[Path]:
    """Remove the run directories under ``parent`` (default: ``$TMPDIR``) whose runs were killed;
    returns the ones removed."""
    root = parent or Path(tempfile.gettempdir())
    removed = []
    with contextlib.suppress(OSError):
        for candidate in sorted(root.glob(PREFIX + "*")):
            if _stale(candidate):
                shutil.rmtree(candidate, ignore_errors=True)
                if not candidate.exists():
                    removed.append(candidate)
    return removed
