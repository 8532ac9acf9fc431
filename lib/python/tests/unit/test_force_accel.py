"""``vmtest run --force-accel``: a VM that would run under TCG stops the run before any work (exit 2,
one line naming each such machine and why), as the NixOS test option qemu.forceAccel fails QEMU."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmtest.portable.cli import main

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def run(tmp_path: Path, kind: str, *flags: str) -> int:
    script = tmp_path / "script.py"
    script.write_text("box.succeed('true')\n")
    machines = tmp_path / "machines.toml"
    machines.write_text(f'[machines.box]\nrecipe = "{RECIPES / "minimal.toml"}"\nkind = "{kind}"\n')
    return main(["run", *flags, str(script), "--machines", str(machines), "--out", str(tmp_path / "out"),
                 "--progress", "off"])


def test_a_vm_under_tcg_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VMTEST_ACCEL", "tcg")
    assert run(tmp_path, "vm", "--force-accel") == 2
    error = capsys.readouterr().err.strip()
    assert error == ("vmtest: --force-accel: no hardware acceleration for box (x86_64): forced by VMTEST_ACCEL=tcg "
                     "(nothing was started)")
    assert not (tmp_path / "out").exists(), "refused before any work"


def test_kvm_and_containers_pass_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vmtest.portable.run_command as run_command

    monkeypatch.setenv("VMTEST_ACCEL", "kvm")
    specs = run_command.parse_machine_specs([f"box={RECIPES / 'minimal.toml'}"])
    assert run_command._emulated_vms(specs) == []
    monkeypatch.setenv("VMTEST_ACCEL", "tcg")
    assert [spec.name for spec in specs] == ["box"] and len(run_command._emulated_vms(specs)) == 1
    containers = tmp_path / "machines.toml"
    containers.write_text(f'[machines.box]\nrecipe = "{RECIPES / "minimal.toml"}"\nkind = "container"\n')
    assert run_command._emulated_vms(run_command.parse_machine_specs([str(containers)])) == []
