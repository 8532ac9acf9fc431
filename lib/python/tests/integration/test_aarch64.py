"""An emulated aarch64 machine on one boot: architecture, commands, 9p and units, then the
conformance suite's serial-console and lifecycle areas (each boot costs minutes under TCG)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vmtest.errors import RequestedAssertionFailed
from vmtest.portable.runtime.driver import Driver

from ..conftest import RECIPES
from .test_conformance import LIFECYCLE, SERIAL_CONSOLE, assert_lifecycle_record, run_area

pytestmark = [pytest.mark.vm, pytest.mark.aarch64]


def test_aarch64_machine_then_console_and_lifecycle(make_driver: Callable[..., Driver],
                                                    subtests: pytest.Subtests) -> None:
    driver = make_driver(f"arm={RECIPES / 'minimal-arm64.toml'}")
    machine = driver.machines[0]
    assert driver.configs[0].accelerator.name == "tcg"
    machine.wait_for_unit("multi-user.target")
    assert machine.succeed("uname -m").strip() == "aarch64"
    # The builder compiled udev's hwdb with the host's systemd-hwdb: the image's own must read it,
    # and no maintainer-script shadow (image/configure.py) may be left behind.
    assert "ID_VENDOR_FROM_DATABASE=Linux Foundation" in machine.succeed("systemd-hwdb query usb:v1D6Bp0001")
    machine.succeed("test ! -e /usr/local/bin/deb-systemd-helper", "test ! -e /usr/local/sbin/invoke-rc.d")
    assert machine.execute("sleep 20", timeout=1)[0] == 124
    machine.succeed("echo from-arm > /root/arm.txt")
    machine.copy_from_machine("/root/arm.txt")
    assert (machine.out_dir / "arm.txt").read_text() == "from-arm\n"
    with pytest.raises(RequestedAssertionFailed, match="broken-unit-ran"):
        machine.execute("systemctl start broken.service")
        machine.wait_for_unit("broken.service", timeout=300)
    with subtests.test(msg="serial console"):
        run_area(driver, "serial console", SERIAL_CONSOLE)
    # last: it shuts the machine down, crashes it and starts it again
    with subtests.test(msg="lifecycle"):
        run_area(driver, "lifecycle", LIFECYCLE)
        assert_lifecycle_record(driver, "arm")
