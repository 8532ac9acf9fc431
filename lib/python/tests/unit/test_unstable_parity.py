"""The portable runtime takes what nixos-unstable's driver added: ``sleep(duration=…)``,
``wait_for_shutdown(timeout=…)``, ``polling_condition(interval=…)`` and the vsock constructor
arguments (refused with a clear message: the runtime has no vsock backdoor)."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from vmtest.errors import RequestedAssertionFailed
from vmtest.machine_api import UnsupportedOnMachine
from vmtest.portable.runtime.driver import Driver
from vmtest.portable.runtime.driver_log import CompositeLogger
from vmtest.portable.runtime.machine import QemuMachine
from vmtest.portable.runtime.process import wait_for_exit

from .test_machine_logic import Scripted


def test_sleep_takes_a_duration_or_the_older_secs(tmp_path: Path) -> None:
    machine = Scripted(tmp_path)
    machine.sleep(duration=timedelta(seconds=5))
    machine.sleep(2)
    assert machine.commands == ["sleep 5", "sleep 2"]
    for arguments in ({}, {"secs": 1, "duration": timedelta(seconds=1)}):
        with pytest.raises(TypeError, match=r"box.sleep\(\) takes one of 'secs' and 'duration'"):
            machine.sleep(**arguments)  # type: ignore[arg-type]


def test_waiting_for_an_exit_gives_up_at_the_timeout_naming_the_machine() -> None:
    sleeper = subprocess.Popen([shutil.which("sleep") or "sleep", "30"])
    try:
        started = time.monotonic()
        gave_up = r"^box: the VM did not power off after 0\.2\d s \(timeout 0\.20 s, pid \d+ still running\)$"
        with pytest.raises(RequestedAssertionFailed, match=gave_up):
            wait_for_exit(sleeper, 0.2, "box", "the VM did not power off")
        assert time.monotonic() - started < 5
    finally:
        sleeper.kill()
        sleeper.wait()
    wait_for_exit(sleeper, 0.2, "box", "the VM did not power off")  # exited: returns at once


def test_polling_condition_takes_an_interval_or_the_older_seconds_interval(tmp_path: Path) -> None:
    with Driver([], "", tmp_path / "out", CompositeLogger([]), tmp_dir=tmp_path / "tmp") as driver:
        every = driver.polling_condition(interval=timedelta(seconds=5))(lambda: True)
        older = driver.polling_condition(seconds_interval=3)(lambda: True)
        default = driver.polling_condition(lambda: True)
        assert (every.seconds_interval, older.seconds_interval, default.seconds_interval) == (5, 3, 2.0)
        with pytest.raises(TypeError, match="takes one of 'interval' and 'seconds_interval'"):
            driver.polling_condition(seconds_interval=3, interval=timedelta(seconds=5))


def test_a_vsock_backdoor_is_refused_with_what_to_use_instead(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedOnMachine, match=r"QemuMachine box: the SSH backdoor over vsock .*: shell_interact"):
        QemuMachine(tmp_path / "out", tmp_path / "tmp", "run-box-vm", CompositeLogger([]), "box", False, None,
                    tmp_path / "vsock")
