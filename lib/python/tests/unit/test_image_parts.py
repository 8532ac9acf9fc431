from __future__ import annotations

import lzma
import shutil
import subprocess
from pathlib import Path

import pytest

from vmtest.errors import ImageBuildError
from vmtest.portable.accel import select_accelerator
from vmtest.portable.image import foreign
from vmtest.portable.image.initramfs import module_load_order, write_cpio
from vmtest.portable.image.recipe import load_recipe
from vmtest.portable.runtime.monitor import clean_monitor_answer as _clean_monitor_answer
from vmtest.portable.runtime.monitor import ppm_to_png as _ppm_to_png


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


def _foreign_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")  # merged /usr, as in trixie
    system = root / "usr/lib/systemd/system"
    system.mkdir(parents=True)
    (system / "ssh.service").write_text(
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n")
    (system / "static.service").write_text("[Service]\nExecStart=/bin/true\n")
    user = root / "usr/lib/systemd/user"
    user.mkdir(parents=True)
    (user / "agent.socket").write_text("[Socket]\nListenStream=%t/a\n[Install]\nWantedBy=sockets.target\n")
    (system / "off.service").write_text("[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n")
    presets = root / "usr/lib/systemd/system-preset"
    presets.mkdir(parents=True)
    (presets / "90-test.preset").write_text("disable off.service\n")
    return root


# The portable runtime's image builder replays presets with the host's systemctl; the Nix
# check phase declares no systemd, so there this test of the builder is skipped.
@pytest.mark.skipif(shutil.which("systemctl") is None, reason="needs systemctl (package systemd)")
def test_recorded_helper_calls_are_replayed_natively(tmp_path: Path) -> None:
    root = _foreign_root(tmp_path)
    recipe_path = tmp_path / "r.toml"
    recipe_path.write_text('suite = "trixie"\narch = "arm64"\n')
    recipe = load_recipe(recipe_path)
    calls = root / foreign.HELPER_CALLS
    calls.parent.mkdir(parents=True)
    calls.write_text(
        "deb-systemd-helper unmask ssh.service\n"
        "deb-systemd-helper --quiet was-enabled ssh.service\n"
        "deb-systemd-helper enable ssh.service\n"
        "deb-systemd-helper enable static.service\n"
        "deb-systemd-helper enable off.service\n"
        "deb-systemd-helper --user enable agent.socket\n"
        "deb-systemd-invoke start ssh.service\n"
        "invoke-rc.d ssh start\n"
    )
    assert foreign.recorded_unit_enables(calls.read_text()) == (
        ["ssh.service", "static.service", "off.service"], ["agent.socket"])
    foreign.replay_recorded_helpers(root, recipe)
    etc = root / "etc/systemd"
    assert (etc / "system/multi-user.target.wants/ssh.service").is_symlink()
    assert (etc / "system/sshd.service").is_symlink()
    assert (etc / "user/sockets.target.wants/agent.socket").is_symlink()
    assert not list(etc.rglob("static.service"))  # nothing to enable: no [Install], not an error
    assert not list(etc.rglob("off.service"))  # presets are honoured, as deb-systemd-helper does
    assert not calls.exists()
    assert not (root / "usr/lib/udev/hwdb.bin").exists()  # nobody asked for hwdb


@pytest.mark.skipif(shutil.which("systemd-hwdb") is None, reason="needs systemd-hwdb (package udev)")
def test_hwdb_is_compiled_natively_and_answers(tmp_path: Path) -> None:
    root = _foreign_root(tmp_path)
    recipe_path = tmp_path / "r.toml"
    recipe_path.write_text('suite = "trixie"\narch = "arm64"\n')
    hwdb = root / "usr/lib/udev/hwdb.d"
    hwdb.mkdir(parents=True)
    # A vendor no real hwdb has: the answer can only come from the image's database.
    (hwdb / "20-test.hwdb").write_text("usb:vF00D*\n ID_VENDOR_FROM_DATABASE=vmtest test vendor\n")
    foreign.compile_hwdb(root, load_recipe(recipe_path))
    query = subprocess.run(["systemd-hwdb", f"--root={root}", "query", "usb:vF00Dp0001"],
                           capture_output=True, text=True, check=True)
    assert "ID_VENDOR_FROM_DATABASE=vmtest test vendor" in query.stdout


def test_helper_shadows_record_and_answer_as_on_a_first_install(tmp_path: Path) -> None:
    root = tmp_path / "root"
    foreign.install_helper_shadows(root)
    shadow = root / "usr/local/bin/deb-systemd-helper"
    calls = tmp_path / "calls"
    # The shadow writes to the image's /var/lib; run it here against a file of the test's own.
    script = tmp_path / "dsh"
    script.write_text(shadow.read_text().replace(f"/{foreign.HELPER_CALLS}", str(calls)))

    def status(*args: str) -> int:
        return subprocess.run(["sh", str(script), *args], check=False).returncode

    assert status("--quiet", "was-enabled", "ssh.service") == 0  # no state file: "was enabled"
    assert status("debian-installed", "ssh.socket") == 1
    assert status("enable", "ssh.service") == 0
    assert calls.read_text().splitlines()[-1] == "deb-systemd-helper enable ssh.service"
    foreign.remove_helper_shadows(root)
    assert not shadow.exists() and not (root / "usr/local/sbin/invoke-rc.d").exists()
