"""Lifecycle on real VMs: death mid-command, shutdown, crash, and CLI runs that fail, time out or are killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from vmtest.errors import MachineError
from vmtest.portable.runtime.driver import Driver

from ..conftest import RECIPES, vm_processes

pytestmark = pytest.mark.vm
MINIMAL = RECIPES / "minimal.toml"


def vmtest_cli(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vmtest.portable.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs,  # type: ignore[call-overload]
    )


@pytest.mark.fault(fault='QEMU killed while a command runs',
                   handling="MachineError naming the machine, the command, QEMU's exit status and the "
                            "console's last lines")
def test_vm_killed_mid_command_gives_a_clear_error(make_driver: Callable[..., Driver]) -> None:
    driver = make_driver(f"victim={MINIMAL}")
    machine = driver.machines[0]
    machine.wait_for_unit("multi-user.target")
    assert machine.process is not None
    # The process group: the start script's shell and the QEMU it runs, as an OOM kill or crash would.
    group = machine.process.pid
    threading.Timer(2, lambda: os.killpg(group, signal.SIGKILL)).start()
    started = time.monotonic()
    with pytest.raises(MachineError) as raised:
        machine.execute("sleep 600")
    assert time.monotonic() - started < 30, "a dead VM must not hang the caller"
    message = str(raised.value)
    assert "victim" in message and "sleep 600" in message and "Console log:" in message
    assert not machine.is_up()


def _nice_values(pid: int) -> tuple[set[int], str]:
    """The nice value of every thread of ``pid`` (field 19 of stat), and its autogroup line."""
    threads = {
        int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
        for task in Path(f"/proc/{pid}/task").iterdir()
    }
    autogroup = Path(f"/proc/{pid}/autogroup")
    return threads, autogroup.read_text().strip() if autogroup.exists() else ""


def test_boot_nice_holds_until_the_machine_is_first_needed(make_driver: Callable[..., Driver],
                                                            tmp_path: Path) -> None:
    table = tmp_path / "machines.toml"
    table.write_text(f'[machines.niced]\nrecipe = "{MINIMAL}"\nboot_nice = 19\n')
    machine = make_driver(str(table)).machines[0]
    machine.start()
    assert machine.pid is not None
    threads, autogroup = _nice_values(machine.pid)
    assert threads == {19}, "every QEMU thread boots niced"
    assert autogroup == "" or autogroup.endswith(" nice 19"), autogroup
    machine.succeed("true")  # the first command: the test now waits for this machine
    threads, autogroup = _nice_values(machine.pid)
    assert threads == {0}
    assert autogroup == "" or autogroup.endswith(" nice 0"), autogroup


def test_upstream_style_script_runs_unchanged(tmp_path: Path) -> None:
    script = tmp_path / "upstream.py"
    script.write_text(
        "start_all()\n"
        'machine.wait_for_unit("multi-user.target")\n'
        'machine.succeed("systemctl is-active multi-user.target")\n'
        "with subtest('hostname'):\n"
        '    t.assertEqual(machine.succeed("hostname").strip(), "machine")\n'
    )
    process = vmtest_cli("run", str(script), "--machines", f"machine={MINIMAL}", "--out", str(tmp_path / "out"))
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    suite = ET.parse(tmp_path / "out" / "vmtest-junit.xml").getroot()
    names = [case.get("name") for case in suite.iter("testcase")]
    assert names == ["main", "hostname"]
    assert not list(suite.iter("failure"))


@pytest.mark.fault(fault='a testScript step fails',
                   handling="the script's file and line in the message; JUnit with the failed subtest; "
                            "run record; exit 1")
def test_failing_script_writes_junit_and_leaves_no_process(tmp_path: Path) -> None:
    before = vm_processes()
    script = tmp_path / "fails.py"
    script.write_text(
        "start_all()\n"
        "with subtest('passes'):\n"
        '    machine.succeed("true")\n'
        "with subtest('fails'):\n"
        '    machine.succeed("echo about to fail; exit 4")\n'
    )
    out = tmp_path / "out"
    process = vmtest_cli("run", str(script), "--machines", f"machine={MINIMAL}", "--out", str(out))
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 1, output
    assert "fails.py, line 5" in output and "exit code 4" in output
    cases = {case.get("name"): case for case in ET.parse(out / "vmtest-junit.xml").getroot().iter("testcase")}
    assert cases["passes"].find("failure") is None
    failure = cases["fails"].find("failure")
    assert failure is not None and "exit code 4" in (failure.get("message") or "")
    assert (out / "vmtest-run.json").is_file() and (out / "serial" / "machine.log").is_file()
    assert vm_processes() == before


@pytest.mark.fault(fault='one SIGTERM while a command runs',
                   handling="'terminated (SIGTERM)', JUnit written, every process reaped, exit 143")
def test_sigterm_and_global_timeout_reap_everything(tmp_path: Path) -> None:
    before = vm_processes()
    script = tmp_path / "slow.py"
    script.write_text("start_all()\nmachine.wait_for_unit('multi-user.target')\nmachine.succeed('sleep 600')\n")
    process = vmtest_cli("run", str(script), "--machines", f"machine={MINIMAL}", "--out", str(tmp_path / "a"))
    deadline = time.monotonic() + 120
    while len(vm_processes()) < len(before) + 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(vm_processes()) >= len(before) + 2, "QEMU and vde_switch should be running"
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "terminated (SIGTERM)" in output
    assert (tmp_path / "a" / "vmtest-junit.xml").is_file()
    assert vm_processes() == before

    process = vmtest_cli("run", str(script), "--machines", f"machine={MINIMAL}", "--out", str(tmp_path / "b"),
                         "--global-timeout", "8")
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1, output
    assert "global timeout of 8.00 s reached" in output
    assert '"outcome": "timed out"' in (tmp_path / "b" / "vmtest-run.json").read_text()
    assert vm_processes() == before


@pytest.mark.fault(fault='a malformed testScript or a missing recipe',
                   handling='one line with the file and line, exit 2, nothing booted')
def test_bad_input_is_reported_without_booting(tmp_path: Path) -> None:
    malformed = tmp_path / "malformed.py"
    malformed.write_text("start_all()\nif True\n    pass\n")
    process = vmtest_cli("run", str(malformed), "--machines", f"machine={MINIMAL}")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert f"testScript {malformed} is malformed: line 2" in output
    process = vmtest_cli("run", str(malformed), "--machines", "machine=/nonexistent/recipe.toml")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2 and "line 2" in output  # the script is checked first
    good = tmp_path / "good.py"
    good.write_text("start_all()\n")
    process = vmtest_cli("run", str(good), "--machines", "machine=/nonexistent/recipe.toml")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2 and "recipe /nonexistent/recipe.toml: file not found" in output


@pytest.mark.fault(fault='a recipe names a package Debian does not have',
                   handling='the recipe, the package and the suite named; exit 2')
def test_unknown_package_names_recipe_and_package(tmp_path: Path) -> None:
    recipe = tmp_path / "typo.toml"
    recipe.write_text('suite = "trixie"\npackages = ["nginx-lite-does-not-exist"]\n')
    env = {**os.environ, "VMTEST_CACHE": str(tmp_path / "cache")}
    process = vmtest_cli("build", str(recipe), env=env)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 2, output
    assert f"recipe {recipe}: packages: nginx-lite-does-not-exist: no such package in Debian trixie/amd64" in output
