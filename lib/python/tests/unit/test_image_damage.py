"""A damaged image in the cache is found before it boots, named, discarded and built again; what a
killed build left is removed by the next build of the image. No mmdebstrap: the build's files
are made up (``_make_image_files``), everything around them is the builder's.

The same on a real image: tests/integration/test_faults.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from vmtest.portable.image import builder
from vmtest.portable.image.recipe import load_recipe

RECIPES = Path(__file__).parents[1] / "recipes"
DISK_BYTES = 8 * 1024 * 1024


def _fake_files(built: list[Path]) -> Any:
    def make(recipe: Any, work: Path, build_log: Any) -> dict[str, Any]:
        built.append(work)
        (work / "vmlinuz").write_bytes(b"kernel " * 1000)
        (work / "initrd").write_bytes(os.urandom(300_000))
        with (work / "disk.img").open("wb") as disk:  # sparse, as mke2fs leaves it
            disk.write(b"\x53\xef" * 512)
            disk.seek(DISK_BYTES - 4096)
            disk.write(os.urandom(4096))
        return {"kernel_version": "6.1.0-fake", "disk_mb": DISK_BYTES // (1024 * 1024), "initramfs_modules": []}
    return make


@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Builds that make small made-up files; returns the work directory of each build."""
    built: list[Path] = []
    monkeypatch.setattr(builder, "_make_image_files", _fake_files(built))
    monkeypatch.setattr(builder, "_check_build_tools", lambda recipe: None)
    monkeypatch.setattr(builder, "ensure_foreign_arch", lambda arch: None)
    return built


def _leftovers(images: Path) -> list[str]:
    return sorted(entry.name for entry in images.iterdir() if entry.name.startswith((".build-", ".damaged-")))


def test_a_truncated_cached_disk_is_named_discarded_and_rebuilt(tmp_path: Path, fake_build: list[Path]) -> None:
    recipe = load_recipe(RECIPES / "minimal.toml")
    said: list[str] = []
    image = builder.build_image(recipe, cache=tmp_path, log=said.append)
    assert len(fake_build) == 1
    recorded = json.loads((image.directory / "image.json").read_text())["files"]
    assert recorded["disk.img"]["size"] == DISK_BYTES and set(recorded) == {"vmlinuz", "initrd", "disk.img"}
    with image.disk.open("r+b") as disk:
        disk.truncate(DISK_BYTES // 2)
    said.clear()
    again = builder.build_image(recipe, cache=tmp_path, log=said.append)
    assert len(fake_build) == 2, "the damaged image was used as it was"
    damaged = [line for line in said if "damaged" in line]
    assert damaged == [f"vmtest: the cached image {image.directory} is damaged: {image.disk} is {DISK_BYTES // 2} "
                       f"bytes, {DISK_BYTES} bytes when it was built; discarding it and building it again"]
    assert again.directory == image.directory and again.disk.stat().st_size == DISK_BYTES
    assert _leftovers(image.directory.parent) == []
    said.clear()
    builder.build_image(recipe, cache=tmp_path, log=said.append)
    assert len(fake_build) == 2 and said == [], "a whole image is used as it is, silently"


def test_damage_names_the_file_and_what_changed(tmp_path: Path, fake_build: list[Path]) -> None:
    image = builder.build_image(load_recipe(RECIPES / "minimal.toml"), cache=tmp_path, log=lambda _: None)
    assert builder.damage(image.directory) is None
    with image.initrd.open("r+b") as initrd:  # same size, other bytes (a bad copy)
        initrd.write(b"\0" * 16)
    problem = str(builder.damage(image.directory))
    assert problem.startswith(f"{image.initrd} has changed since it was built (sampled SHA-256 ")
    image.kernel.unlink()
    assert builder.damage(image.directory) == f"{image.kernel} cannot be read (No such file or directory)"
    (image.directory / "image.json").write_text('{"kernel_ver')
    assert str(builder.damage(image.directory)).startswith(f"{image.directory / 'image.json'} cannot be read")


def test_an_image_built_before_the_record_is_checked_by_its_disk_size(tmp_path: Path) -> None:
    directory = tmp_path / "old"
    directory.mkdir()
    for name in ("vmlinuz", "initrd"):
        (directory / name).write_bytes(b"x")
    with (directory / "disk.img").open("wb") as disk:
        disk.truncate(3 * 1024 * 1024)
    (directory / "image.json").write_text(json.dumps({"kernel_version": "6.1", "disk_mb": 3}))
    assert builder.damage(directory) is None
    with (directory / "disk.img").open("r+b") as disk:
        disk.truncate(1024)
    assert builder.damage(directory) == f"{directory / 'disk.img'} is 1024 bytes, 3145728 bytes when it was built"


def test_the_record_hashes_a_bounded_sample_of_a_big_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "disk.img"
    with big.open("wb") as file:
        file.truncate(10 * 1024**3)  # 10 GiB, sparse: hashing all of it would take seconds
    hashed: list[int] = []
    real = hashlib.sha256

    class Counting:
        def __init__(self) -> None:
            self.digest = real()

        def update(self, data: bytes) -> None:
            hashed.append(len(data))
            self.digest.update(data)

        def hexdigest(self) -> str:
            return self.digest.hexdigest()

    monkeypatch.setattr(builder.hashlib, "sha256", Counting)
    assert builder.file_record(big)["size"] == 10 * 1024**3
    assert hashed == [builder.SAMPLE_BYTES] * builder.SAMPLES


def test_a_killed_builds_work_directory_is_removed_by_the_next_build(tmp_path: Path, fake_build: list[Path]) -> None:
    recipe = load_recipe(RECIPES / "minimal.toml")
    directory = builder.image_directory(recipe, tmp_path)
    stale = directory.parent / f".build-{directory.name}-999999"
    (stale / "rootfs" / "etc").mkdir(parents=True)
    said: list[str] = []
    builder.build_image(recipe, cache=tmp_path, log=said.append)
    assert not stale.exists() and _leftovers(directory.parent) == []
    assert f"vmtest: removed {stale}, left by a build that was killed" in said
