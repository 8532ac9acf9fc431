"""Shared fixtures: recipes, and drivers that boot real VMs from them."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vmtest.portable.runtime.driver import Driver
from vmtest.portable.runtime.logger import CompositeLogger, JunitLogger, TerminalLogger
from vmtest.portable.runtime.spec import prepare_machines

RECIPES = Path(__file__).parent / "recipes"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# pytest tears fixtures down on KeyboardInterrupt but not on SIGTERM: without this, a CI
# timeout or `kill` would leave the fixtures' QEMUs running.
signal.signal(signal.SIGTERM, _interrupt)


def vm_processes() -> list[str]:
    """Every live qemu-system or vde_switch process (to prove none is left behind).

    Zombies are dead already: they only wait for a parent (here, sometimes a PID 1
    that never reaps) and are not counted.
    """
    result = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True, check=True)
    live = []
    for line in result.stdout.splitlines():
        fields = line.split(None, 2)
        if len(fields) < 3:
            continue
        pid, stat, args = fields
        if not stat.startswith("Z") and ("qemu-system" in args or "vde_switch" in args):
            live.append(f"{pid} {args}")  # not the state: R/S flips while a process lives
    return live


@pytest.fixture
def make_driver(tmp_path: Path) -> Iterator[Callable[..., Driver]]:
    """Factory for drivers over recipes (``name=recipe.toml`` specs); all are torn down after the test."""
    drivers: list[Driver] = []

    def make(*specs: str, script: str = "") -> Driver:
        configs = prepare_machines(list(specs))
        out = tmp_path / f"out{len(drivers)}"
        logger = CompositeLogger([TerminalLogger(), JunitLogger(out / "junit.xml")])
        driver = Driver(configs, script, out, logger)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.terminate()
