"""Checkpoint decisions without VMs: the key's parts, why a checkpoint does not fit, broken files,
and vmtest.checkpoint on a driver that keeps none. On real VMs: tests/integration/test_checkpoints.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vmtest import checkpoint
from vmtest.portable.runtime.checkpoint_store import (
    QEMU_STATE_MAGIC,
    Fingerprint,
    Stored,
    differences,
    human_bytes,
    read_stored,
    script_lines_through_block,
)

SOURCE = """\
import os
with checkpoint("a", [m]) as resumed:
    if not resumed:
        m.start()
after = 1
"""


def fingerprint(**changes: Any) -> Fingerprint:
    parts: dict[str, Any] = {"qemu": {"qemu-system-x86_64": "QEMU emulator version 7.2.15"},
                             "images": {"server": "server-abc"}, "machines": {"server": "s1"},
                             "script": "t.py", "lines": ("l1", "l2", "l3"), "disks": {"server": "1024:1"}}
    parts.update(changes)
    return Fingerprint(**parts)


def test_the_key_covers_the_script_through_the_block_end() -> None:
    assert script_lines_through_block(SOURCE, 2) == SOURCE.splitlines()[:4]
    # a line that is no `with` statement: up to it
    assert script_lines_through_block(SOURCE, 1) == ["import os"]
    assert script_lines_through_block("with (\n  checkpoint('a', [m])\n):\n  pass\nx = 1\n", 2)[-1] == "  pass"


def test_each_difference_is_named() -> None:
    assert differences(fingerprint(), fingerprint()) == []
    assert fingerprint().key() == fingerprint().key() != fingerprint(lines=("l1",)).key()
    assert differences(fingerprint(), fingerprint(qemu={"qemu-system-x86_64": "QEMU emulator version 9.2"})) == [
        "QEMU changed (qemu-system-x86_64: QEMU emulator version 7.2.15 -> QEMU emulator version 9.2)"]
    assert differences(fingerprint(), fingerprint(images={"server": "server-def"})) == [
        "machine server's image changed (server-abc -> server-def)"]
    assert differences(fingerprint(), fingerprint(disks={"server": "2048:1"})) == [
        "machine server's image was built again since (its disk differs)"]
    assert differences(fingerprint(), fingerprint(machines={"server": "s2"})) == [
        "machine server's spec changed: its start script differs"]
    assert differences(fingerprint(), fingerprint(lines=("l1", "X", "l3"))) == ["line 2 of t.py changed"]
    assert differences(fingerprint(), fingerprint(lines=("l1", "l2"))) == [
        "t.py has 2 lines up to the block's end, the checkpoint was made with 3"]


def stored(tmp_path: Path, state: bytes) -> Stored:
    (tmp_path / "m.state").write_bytes(state)
    (tmp_path / "m.qcow2").write_bytes(b"QFI\xfb")
    (tmp_path / "meta.json").write_text(json.dumps({
        "name": "a", "fingerprint": fingerprint().as_json(), "created": 1.0,
        "files": {"m.state": len(state), "m.qcow2": 4}}))
    found = read_stored(tmp_path)
    assert found is not None and found.fingerprint == fingerprint()
    return found


def test_a_broken_checkpoint_says_what_is_wrong(tmp_path: Path) -> None:
    good = stored(tmp_path, QEMU_STATE_MAGIC + b"\0" * 60)
    assert good.broken() is None
    with (tmp_path / "m.state").open("r+b") as stream:
        stream.truncate(10)
    assert good.broken() == "m.state is 10 bytes, 64 were saved (truncated or changed)"
    assert stored(tmp_path, b"\0" * 64).broken() == (
        "m.state is not a QEMU migration stream (its header is not b'QEVM')")
    good = stored(tmp_path, QEMU_STATE_MAGIC + b"\0" * 60)
    (tmp_path / "m.qcow2").unlink()
    assert good.broken() == "m.qcow2 is missing"
    (tmp_path / "meta.json").write_text("{")
    assert read_stored(tmp_path) is None


def test_sizes_read_as_people_write_them() -> None:
    assert [human_bytes(n) for n in (512, 2048, 3 * 1024**2, 5 * 1024**3)] == ["512 B", "2.0 KiB", "3.0 MiB", "5.0 GiB"]


class _Machine:
    def __init__(self, store: object = None) -> None:
        self.logged: list[str] = []
        if store is not None:
            self.checkpoint_store = store

    def log(self, message: str) -> None:
        self.logged.append(message)


def test_without_a_store_the_block_runs() -> None:
    machine = _Machine()  # as under the NixOS driver: machines have no checkpoint_store
    with checkpoint("a", [machine]) as resumed:
        ran = True
    assert ran and resumed is False
    assert machine.logged == ["checkpoint 'a': no checkpoints for these machines (this driver keeps none, "
                              "or a container is among them); the block runs"]


class _Site:
    def __init__(self, resumes: bool) -> None:
        self.resumes, self.saved, self.ended = resumes, 0, False

    def resume(self) -> bool:
        return self.resumes

    def save(self) -> None:
        self.saved += 1

    def left(self) -> None:
        self.ended = True


class _Store:
    def __init__(self, resumes: bool) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.made = _Site(resumes)

    def site(self, name: str, machines: list[Any], filename: str, line: int) -> _Site:
        self.calls.append((name, Path(filename).name, line))
        return self.made


def test_a_store_resumes_or_saves_once_the_block_ends_cleanly() -> None:
    cold = _Store(resumes=False)
    with checkpoint("a", [_Machine(cold)]) as resumed:
        assert resumed is False and cold.made.saved == 0
    assert cold.made.saved == 1 and cold.made.ended
    assert cold.calls[0][1] == Path(__file__).name  # the caller's file and line: the testScript's
    warm = _Store(resumes=True)
    with checkpoint("a", [_Machine(warm)]) as resumed:
        assert resumed is True
    assert warm.made.saved == 0
    failing = _Store(resumes=False)
    with pytest.raises(RuntimeError), checkpoint("a", [_Machine(failing)]):
        raise RuntimeError("the block failed")
    assert failing.made.saved == 0, "a block that failed saves nothing"
    with pytest.raises(ValueError, match="different runs"), checkpoint("a", [_Machine(cold), _Machine(warm)]):
        pass


def test_vmtest_cache_lists_sizes_and_prunes_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from vmtest.portable import cli

    monkeypatch.setenv("VMTEST_CACHE", str(tmp_path))
    image = tmp_path / "images" / "minimal-amd64-0123"
    image.mkdir(parents=True)
    (image / "disk.raw").write_bytes(b"\0" * 2048)
    saved = tmp_path / "checkpoints" / "booted-machine-4567"
    saved.mkdir(parents=True)
    stored(saved, QEMU_STATE_MAGIC + b"\0" * 3068)
    assert cli.main(["cache"]) == 0
    listing = capsys.readouterr().out
    assert "minimal-amd64-0123" in listing and "2.0 KiB" in listing
    assert "booted-machine-4567" in listing and "incomplete" not in listing and saved.is_dir()
    assert cli.main(["cache", "--prune"]) == 0
    assert "(deleted)" in capsys.readouterr().out and not saved.exists() and image.is_dir()
