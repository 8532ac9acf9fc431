from __future__ import annotations

import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vmtest.errors import RequestedAssertionFailed
from vmtest.portable.accel import Accelerator
from vmtest.portable.image.builder import Image
from vmtest.portable.image.recipe import load_recipe
from vmtest.portable.runtime.driver_log import JunitLogger
from vmtest.portable.runtime.qemu import MachineConfig, hosts_lines, kernel_params, start_script
from vmtest.waiting import once_a_second


def config(tmp_path: Path, name: str, number: int, arch: str = "amd64") -> MachineConfig:
    recipe_path = tmp_path / f"{name}.toml"
    recipe_path.write_text(f'arch = "{arch}"\n')
    image = Image(tmp_path, load_recipe(recipe_path), "6.12")
    return MachineConfig(name, image, Accelerator("tcg", "test", "x86_64"), number, vlans=(1, 2))


def test_start_script_is_hermetic_and_follows_the_contract(tmp_path: Path) -> None:
    server = config(tmp_path, "server", 2)
    text = start_script(server, hosts_lines([server]))
    assert "restrict=on" in text and "hostfwd" not in text
    assert '"$@"' in text and "${QEMU_OPTS:-}" in text and "${QEMU_NET_OPTS:+,$QEMU_NET_OPTS}" in text
    assert "$SHARED_DIR" in text and "mount_tag=shared" in text and "NIX_DISK_IMAGE" in text
    assert 'sock="$QEMU_VDE_SOCKET_2"' in text and "mac=52:54:00:12:02:02" in text
    params = kernel_params(server, "192.168.1.2 server\n")
    assert "systemd.hostname=server" in params and "vmtest.if=52:54:00:12:01:02,192.168.1.2/24" in params
    arm = config(tmp_path, "arm", 1, "arm64")
    assert "qemu-system-aarch64" in start_script(arm, "") and "console=ttyAMA0" in kernel_params(arm, "")


def test_junit_has_a_case_per_subtest_and_failures(tmp_path: Path) -> None:
    junit = JunitLogger(tmp_path / "junit.xml")
    junit.properties["machine.accelerator"] = "tcg"
    with junit.subtest("good"):
        junit.log("fine")
    with pytest.raises(RequestedAssertionFailed), junit.subtest("bad"):
        raise RequestedAssertionFailed("it broke")
    junit.close()
    root = ET.parse(tmp_path / "junit.xml").getroot()
    cases = {case.get("name"): case for case in root.iter("testcase")}
    assert list(cases) == ["main", "good", "bad"]
    assert cases["good"].find("failure") is None
    assert "it broke" in (cases["bad"].find("failure").get("message") or "")  # type: ignore[union-attr]
    assert root.find(".//property[@name='machine.accelerator']").get("value") == "tcg"  # type: ignore[union-attr]


def _wait_loop(tmp_path: Path, command: str, want_success: bool, attempts: int) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(["bash", "-c", "set -euo pipefail; " + once_a_second(command, want_success, attempts)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=30)
    return done.returncode, done.stdout, time.monotonic() - started


def test_once_a_second_tries_once_a_second_in_one_shell(tmp_path: Path) -> None:
    status, _, took = _wait_loop(tmp_path, "test -e flag", True, 3)
    assert status == 1 and 1.8 < took < 4, "three tries a second apart, then failure"
    threading.Timer(1.2, (tmp_path / "flag").touch).start()
    status, output, took = _wait_loop(tmp_path, "test -e flag && echo found", True, 10)
    assert (status, output) == (0, "found") and took < 4
    status, _, took = _wait_loop(tmp_path, "test -e flag", False, 2)
    assert status == 1, "waiting for a failure: the file is there"
    status, _, took = _wait_loop(tmp_path, "test -e missing", False, 5)
    assert status == 0 and took < 1, "the first try counts"
    status, output, _ = _wait_loop(tmp_path, "echo last words; false", True, 2)
    assert (status, output) == (1, "last words"), "the last try's output is kept for the error message"
