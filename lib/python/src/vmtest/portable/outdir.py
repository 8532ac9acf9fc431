"""The output directory of a run: checked before any work, and fresh for every run.

A run's artifacts (JUnit, run record, serial logs, collected logs) must never
mix with an earlier run's: a directory that holds an earlier vmtest run is moved
aside to ``<name>.previous`` (replacing an older one), and a non-empty directory
that is not a vmtest run's is refused rather than touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# What marks a directory as an earlier vmtest run's output.
RUN_MARKERS = ("vmtest-run.json", "vmtest-junit.xml", "serial")
PREVIOUS_SUFFIX = ".previous"


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


def previous_path(out_dir: Path) -> Path:
    """Where an earlier run's artifacts in ``out_dir`` are moved."""
    return out_dir.with_name(out_dir.name + PREVIOUS_SUFFIX)


def prepare_output_dir(out_dir: Path) -> Path | None:
    """Make ``out_dir`` an empty, writable directory; returns where earlier contents went, if anywhere.

    Raises OutputDirError when it is not a directory, cannot be created or
    written, or holds files that are not an earlier vmtest run's.
    """
    moved: Path | None = None
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise OutputDirError(f"output directory {out_dir} is not a directory")
        try:
            entries = sorted(entry.name for entry in out_dir.iterdir())
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
                shutil.rmtree(moved, ignore_errors=True)
                out_dir.rename(moved)
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
