"""An emulated aarch64 machine: boot, architecture, commands, 9p and units."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vmtest.errors import RequestedAssertionFailed
from vmtest.runtime.driver import Driver

from ..conftest import RECIPES

pytestmark = [pytest.mark.vm, pytest.mark.aarch64]


def test_aarch64_machine(make_driver: Callable[..., Driver]) -> None:
    driver = make_driver(f"arm={RECIPES / 'minimal-arm64.toml'}")
    machine = driver.machines[0]
    assert driver.configs[0].accelerator.name == "tcg"
    machine.wait_for_unit("multi-user.target")
    assert machine.succeed("uname -m").strip() == "aarch64"
    assert machine.execute("sleep 20", timeout=1)[0] == 124
    machine.succeed("echo from-arm > /root/arm.txt")
    machine.copy_from_machine("/root/arm.txt")
    assert (machine.out_dir / "arm.txt").read_text() == "from-arm\n"
    with pytest.raises(RequestedAssertionFailed, match="broken-unit-ran"):
        machine.execute("systemctl start broken.service")
        machine.wait_for_unit("broken.service", timeout=300)
    machine.shutdown()
