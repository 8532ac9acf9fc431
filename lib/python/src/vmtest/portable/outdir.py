"""The output directory of a run: checked before any work, and fresh for every run.

A run's artifacts (JUnit, run record, serial logs, collected logs) must never
mix with an earlier run's: a directory that holds an earlier vmtest run is moved
aside to ``<name>.previous`` (replacing an older one), and a non-empty directory
that is not a vmtest run's is refused rather than touched.

Two runs must never share one: a run holds an exclusive lock (``flock``) on
``<out>/.vmtest-lock`` for its whole life, taken before anything in the directory
is looked at or moved. A second run into the same directory stops at once (exit 2),
naming the directory and the PID that holds it, and leaves it as it was. The lock
file stays in place (it is never moved to ``.previous``): a lock file that moved or
was deleted while held would let a third run take a new one. The kernel releases
the lock when its run ends, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType

from vmtest.artifacts import OUTPUT_LOCK, RUN_MARKERS, previous_path


class OutputDirError(ValueError):
    """The output directory cannot be used; the message is one line for the user."""


def _why(error: OSError) -> str:
    return error.strerror or str(error)


def _check_writable(directory: Path) -> None:
    """Create ``directory`` if needed and write a byte into it; raises OSError."""
    directory.mkdir(parents=True, exist_ok=True)
    descriptor, probe = tempfile.mkstemp(prefix=".vmtest-write-check-", dir=directory)
    try:
        os.write(descriptor, b"x")
    finally:
        os.close(descriptor)
        os.unlink(probe)


class OutputLock:
    """This run's exclusive lock on its output directory (see the module's docstring); a context manager
    that releases it."""

    def __init__(self, directory: Path, descriptor: int, created: bool) -> None:
        self.directory = directory
        self.path = directory / OUTPUT_LOCK
        self._descriptor: int | None = descriptor
        self._created = created

    def release(self, *, forget: bool = False) -> None:
        """Release the lock; with ``forget``, also delete the lock file if this run created it (a run
        that refused the directory leaves nothing in it)."""
        if self._descriptor is None:
            return
        if forget and self._created:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self._descriptor)
        self._descriptor = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _holder(descriptor: int) -> str:
    """Who holds the lock, as its holder wrote it: ``PID 1234, since 2025-01-31 12:00:00``."""
    with contextlib.suppress(OSError):
        words = os.pread(descriptor, 200, 0).decode(errors="replace").split(maxsplit=1)
        if words and words[0].isdigit():
            return f"PID {words[0]}" + (f", since {words[1].strip()}" if len(words) > 1 else "")
    return "its PID not written yet"


def lock_output_dir(out_dir: Path) -> OutputLock:
    """Create ``out_dir`` if needed and lock it for this run, before anything in it is looked at.

    Raises OutputDirError (one line) when it is not a directory, cannot be created or written,
    or another run holds it: then naming the PID that does.
    """
    if (out_dir.exists() or out_dir.is_symlink()) and not out_dir.is_dir():
        raise OutputDirError(f"output directory {out_dir} is not a directory")
    path = out_dir / OUTPUT_LOCK
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        raise OutputDirError(f"output directory {out_dir} is not writable: {_why(error)}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(descriptor)
        os.close(descriptor)
        raise OutputDirError(
            f"output directory {out_dir} is in use by another vmtest run ({holder}; lock {path}): "
            "wait for it to end or give another --out"
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()} {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
    return OutputLock(out_dir, descriptor, created)


def prepare_output_dir(out_dir: Path) -> Path | None:
    """Make ``out_dir`` an empty, writable directory (but for its lock file); returns where earlier
    contents went, if anywhere. Call it holding the directory's lock (``lock_output_dir``).

    Raises OutputDirError when it is not a directory, cannot be created or
    written, or holds files that are not an earlier vmtest run's.
    """
    moved: Path | None = None
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise OutputDirError(f"output directory {out_dir} is not a directory")
        try:
            entries = sorted(entry.name for entry in out_dir.iterdir() if entry.name != OUTPUT_LOCK)
        except OSError as error:
            raise OutputDirError(f"output directory {out_dir} cannot be read: {_why(error)}") from None
        if entries:
            if not any(marker in entries for marker in RUN_MARKERS):
                raise OutputDirError(
                    f"output directory {out_dir} is not empty and holds no earlier vmtest run "
                    f"({', '.join(entries[:3])}{', …' if len(entries) > 3 else ''}); give an empty or new one"
                )
            moved = previous_path(out_dir)
            try:
                # The entries move, not the directory: its lock file stays where the lock is held.
                if moved.is_dir() and not moved.is_symlink():
                    shutil.rmtree(moved)
                else:
                    moved.unlink(missing_ok=True)
                moved.mkdir()
                for name in entries:
                    (out_dir / name).rename(moved / name)
            except OSError as error:
                raise OutputDirError(
                    f"output directory {out_dir} holds an earlier run that cannot be moved to {moved}: "
                    f"{_why(error)}"
                ) from None
    try:
        _check_writable(out_dir)
    except OSError as error:
        raise OutputDirError(f"output directory {out_dir} is not writable: {_why(error)}") from None
    return moved


def check_file_target(path: Path) -> None:
    """Check that a report file (``--junit-xml``) can be created at ``path``; raises OutputDirError."""
    if path.is_dir():
        raise OutputDirError(f"report path {path} is a directory")
    try:
        _check_writable(path.parent)
    except OSError as error:
        raise OutputDirError(f"report path {path}: its directory is not writable: {_why(error)}") from None
