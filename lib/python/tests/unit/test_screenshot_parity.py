"""``screenshot`` as upstream's: into an existing directory only (upstream's ``pnmtopng … > 'path'``
fails in the shell when the directory is missing, and raises MachineError); a name without ``/`` goes
to out_dir, a path with one is taken as given (a relative one from the working directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmtest.errors import MachineError
from vmtest.portable.runtime.driver_log import CompositeLogger
from vmtest.portable.runtime.machine import QemuMachine


class Screen(QemuMachine):
    """A QemuMachine whose monitor's screendump writes a 1x1 PPM."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path / "out", tmp_path / "tmp", "run-box-vm", CompositeLogger([]))
        self.monitor_commands: list[str] = []

    def send_monitor_command(self, command: str) -> str:
        self.monitor_commands.append(command)
        if command.startswith("screendump "):
            Path(command.split(" ", 1)[1]).write_bytes(b"P6\n1 1\n255\n\0\0\0")
        return ""


def test_screenshot_into_a_missing_directory_fails_as_upstreams(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    box = Screen(tmp_path)
    (tmp_path / "out").mkdir()  # the driver's output directory exists (both drivers make it)
    box.screenshot("plain")
    assert (tmp_path / "out/plain.png").read_bytes().startswith(b"\x89PNG")
    # upstream: `pnmtopng … > 'missing/shot.png'` fails in the shell, and MachineError is raised
    with pytest.raises(MachineError, match="cannot make a screenshot"):
        box.screenshot(str(tmp_path / "missing/shot.png"))
    assert not (tmp_path / "missing").exists()
    # a relative path with a directory is taken from the working directory, not out_dir
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MachineError):
        box.screenshot("sub/shot")
    (tmp_path / "sub").mkdir()
    box.screenshot("sub/shot")
    assert (tmp_path / "sub/shot.png").is_file() and not (tmp_path / "out/sub").exists()
