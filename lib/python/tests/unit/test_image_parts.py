from __future__ import annotations

import lzma
import subprocess
from pathlib import Path

import pytest

from vmtest.accel import select_accelerator
from vmtest.errors import ImageBuildError
from vmtest.image.initramfs import module_load_order, write_cpio
from vmtest.runtime.machine import _clean_monitor_answer, _ppm_to_png


def test_modules_load_dependencies_first_and_skip_builtins(tmp_path: Path) -> None:
    (tmp_path / "modules.dep").write_text(
        "kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/lib/crc16.ko.xz\n"
        "kernel/fs/jbd2/jbd2.ko.xz:\n"
        "kernel/lib/crc16.ko.xz:\n"
        "kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz\n"
        "kernel/net/9p/9pnet.ko.xz:\n"
    )
    (tmp_path / "modules.builtin").write_text("kernel/drivers/block/virtio_blk.ko\n")
    order = module_load_order(tmp_path, ("virtio_blk", "ext4", "9pnet_virtio"))
    assert order == [
        "kernel/lib/crc16.ko.xz", "kernel/fs/jbd2/jbd2.ko.xz", "kernel/fs/ext4/ext4.ko.xz",
        "kernel/net/9p/9pnet.ko.xz", "kernel/net/9p/9pnet_virtio.ko.xz",
    ]
    with pytest.raises(ImageBuildError, match="kernel module nope is neither built in nor in"):
        module_load_order(tmp_path, ("nope",))


def test_cpio_archive_is_readable_by_cpio(tmp_path: Path) -> None:
    archive = tmp_path / "initrd"
    write_cpio([("bin", 0o40755, b""), ("bin/hello", 0o100755, b"#!/bin/sh\necho hi\n"),
                ("data.ko", 0o100644, lzma.decompress(lzma.compress(b"x" * 1001)))], archive)
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=archive.read_bytes(), capture_output=True, check=True)
    assert listing.stdout.decode().split() == ["bin", "bin/hello", "data.ko"]
    extract = tmp_path / "x"
    extract.mkdir()
    subprocess.run(["cpio", "-i", "-d", "--quiet"], input=archive.read_bytes(), cwd=extract, check=True)
    assert (extract / "bin/hello").read_text() == "#!/bin/sh\necho hi\n"
    assert (extract / "data.ko").stat().st_size == 1001


def test_ppm_to_png() -> None:
    ppm = b"P6\n# comment\n2 1\n255\n" + bytes([255, 0, 0, 0, 0, 255])
    png = _ppm_to_png(ppm)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"IHDR" in png and png.endswith(b"IEND\xaeB`\x82")
    with pytest.raises(ValueError, match="truncated"):
        _ppm_to_png(b"P6\n2 2\n255\n" + b"\0" * 3)


def test_monitor_answer_is_cleaned() -> None:
    raw = "i\x1b[K\x1b[Dinfo status\x1b[K\r\nVM status: running\r\n(qemu) "
    assert _clean_monitor_answer(raw) == "VM status: running\n"


def test_accelerator_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMTEST_ACCEL", "tcg")
    choice = select_accelerator("x86_64")
    assert (choice.name, choice.timeout_factor) == ("tcg", 4.0) and "forced" in choice.reason
    monkeypatch.setenv("VMTEST_ACCEL", "hvf")
    with pytest.raises(ValueError, match="must be 'kvm' or 'tcg'"):
        select_accelerator("x86_64")
    monkeypatch.delenv("VMTEST_ACCEL")
    assert select_accelerator("aarch64").name == "tcg" or select_accelerator("aarch64").guest_arch == "aarch64"
