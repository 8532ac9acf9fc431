"""Mounts an image build leaves under its work directory, and removing that directory whatever is mounted in it.

mmdebstrap's root mode mounts proc, sys, dev/pts and dev/shm inside the root it
builds, in the host's mount namespace; a build that is killed or interrupted
leaves them there, and ``rm -rf`` on such a root would reach into the host's
/proc and /sys.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040)
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def mounts_below(directory: Path, mountinfo: str | None = None) -> list[Path]:
    """The mount points at or below ``directory``, deepest first."""
    text = mountinfo if mountinfo is not None else MOUNTINFO.read_text()
    root = directory.resolve()
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = Path(_unescape(fields[4]))
        if point == root or root in point.parents:
            found.append(point)
    return sorted(set(found), key=lambda path: len(path.parts), reverse=True)


def unmount_below(directory: Path) -> list[str]:
    """Unmount everything at or below ``directory`` (lazily when busy); returns what could not be."""
    problems = []
    for point in mounts_below(directory):
        result = subprocess.run(["umount", str(point)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            lazy = subprocess.run(["umount", "-l", str(point)], capture_output=True, text=True, check=False)
            if lazy.returncode != 0:
                problems.append(f"{point}: {lazy.stderr.strip() or result.stderr.strip()}")
    return problems


def remove_build_dir(directory: Path) -> None:
    """Unmount whatever is mounted below ``directory``, then delete it; never crosses into a mount."""
    if not directory.exists():
        return
    problems = unmount_below(directory)
    if problems or mounts_below(directory):
        raise OSError(f"cannot remove {directory}: still mounted below it: {'; '.join(problems)}")
    shutil.rmtree(directory, ignore_errors=True)
