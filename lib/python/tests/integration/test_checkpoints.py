"""Checkpoints on real VMs: a cold run saves the booted machine, the next run resumes it, and each
way a checkpoint can fail to fit makes the block run cold, with a message saying why.

The negative controls that only need the decision (a changed line above the block, a changed
recipe, a truncated state) run with VMTEST_TEST_BOOT=0, so their block does not boot; the
one QEMU itself rejects (a damaged stream) boots cold for real and saves anew.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vmtest.portable.runtime.driver import Driver

from ..conftest import RECIPES, vm_processes

pytestmark = pytest.mark.vm
MINIMAL = RECIPES / "minimal.toml"

SCRIPT = """\
import os
from vmtest import checkpoint

with checkpoint("booted", [machine]) as resumed:
    if not resumed and os.environ.get("VMTEST_TEST_BOOT", "1") == "1":
        machine.wait_for_unit("multi-user.target")
        machine.succeed("echo made-before-the-checkpoint > /root/state")
        machine.succeed("logger vmtest-entry-of-the-saved-run")
        machine.succeed("systemd-run --unit=sleeper sleep infinity")
"""


def run(make_driver: Callable[..., Driver], tmp_path: Path, script: str = SCRIPT,
        spec: str = f"machine={MINIMAL}") -> Driver:
    path = tmp_path / "script.py"
    path.write_text(script)
    driver = make_driver(spec, script=script, script_path=path, checkpoints=tmp_path / "checkpoints")
    driver.test_script()
    return driver


def messages(driver: Driver) -> str:
    assert driver.checkpoints is not None
    return "\n".join(driver.checkpoints.messages)


@pytest.mark.fault(fault="a checkpoint that does not fit: a changed line above it, a changed recipe, "
                         "a truncated or damaged state file",
                   handling="not resumed: the message says why, the block runs (boots) cold; a broken one is "
                            "discarded and saved anew")
def test_saved_then_resumed_and_what_does_not_fit_boots_cold(
        make_driver: Callable[..., Driver], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cold = run(make_driver, tmp_path)
    assert cold.checkpoints is not None and cold.checkpoints.resumed == []
    assert [saved["name"] for saved in cold.checkpoints.saved] == ["booted"], messages(cold)
    # the control for the journal check below: the saved run's entry is in its own journal
    cold.machines[0].succeed("journalctl --no-pager | grep -q vmtest-entry-of-the-saved-run")
    cold.terminate()
    stored = sorted((tmp_path / "checkpoints").iterdir())
    assert [p.name.rsplit("-", 1)[0] for p in stored] == ["booted-machine"]
    assert stored[0].stat().st_mode & 0o077 == 0, "guest memory and disks: for their owner only"

    started = time.monotonic()
    warm = run(make_driver, tmp_path)
    machine = warm.machines[0]
    assert machine.succeed("cat /root/state") == "made-before-the-checkpoint\n"
    first_command_after = time.monotonic() - started
    assert warm.checkpoints is not None and warm.checkpoints.resumed == ["booted"], messages(warm)
    assert warm.checkpoints.saved == []
    assert machine.succeed("systemctl is-active sleeper.service").strip() == "active"
    assert abs(float(machine.succeed("date +%s.%N")) - time.time()) < 5, "the guest clock was stepped"
    machine.fail("journalctl --no-pager | grep -q vmtest-entry-of-the-saved-run")
    machine.succeed("echo from-the-guest > /tmp/shared/written-after-resume")
    assert (machine.shared_dir / "written-after-resume").read_text() == "from-the-guest\n"
    machine.copy_from_machine("/root/state")
    assert (machine.out_dir / "state").read_text() == "made-before-the-checkpoint\n"
    assert "Linux version" not in machine.console_log_path.read_text(errors="replace"), "nothing booted"
    print(f"resumed: first command after the checkpoint {first_command_after:.1f} s after the driver was made")
    warm.terminate()

    monkeypatch.setenv("VMTEST_TEST_BOOT", "0")
    changed_line = run(make_driver, tmp_path, SCRIPT.replace("import os\n", "import os  # changed\n"))
    assert "line 1 of script.py changed" in messages(changed_line)
    assert changed_line.checkpoints is not None and changed_line.checkpoints.resumed == []
    changed_line.terminate()

    # the recipe with more memory: the same image ([vm] settings do not change it), another machine
    recipe = tmp_path / "changed" / "minimal.toml"
    recipe.parent.mkdir()
    recipe.write_text(MINIMAL.read_text().replace("memory_mb = 768", "memory_mb = 1024"))
    assert recipe.read_text() != MINIMAL.read_text()
    changed_recipe = run(make_driver, tmp_path, spec=f"machine={recipe}")
    assert "machine machine's spec changed" in messages(changed_recipe)
    changed_recipe.terminate()

    checkpoint = stored[0]
    backup = tmp_path / "backup"
    shutil.copytree(checkpoint, backup)
    state = checkpoint / "machine.state"
    with state.open("r+b") as stream:
        stream.truncate(state.stat().st_size // 2)
    truncated = run(make_driver, tmp_path)
    assert "truncated" in messages(truncated) and "discarded" in messages(truncated), messages(truncated)
    assert not checkpoint.exists()
    truncated.terminate()

    shutil.copytree(backup, checkpoint)
    with state.open("r+b") as stream:
        stream.seek(4)
        stream.write(bytes(4092))  # the magic stays; the stream version and what follows do not
    monkeypatch.setenv("VMTEST_TEST_BOOT", "1")
    damaged = run(make_driver, tmp_path)
    assert "QEMU could not resume machine" in messages(damaged) and "booting cold" in messages(damaged)
    assert "Unsupported migration stream version" in messages(damaged), "QEMU's own reason is shown"
    assert damaged.checkpoints is not None and damaged.checkpoints.resumed == []
    assert damaged.machines[0].boot_seconds() is not None, "it booted cold"
    assert [saved["name"] for saved in damaged.checkpoints.saved] == ["booted"], messages(damaged)
    damaged.terminate()
    assert vm_processes() == []
