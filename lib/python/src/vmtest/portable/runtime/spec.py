"""The ``--machines`` specification: which recipe each named machine boots, on which VLANs.

Either ``name=recipe.toml[,name=recipe.toml…]`` (repeatable), a bare
``recipe.toml`` (the machine takes the recipe's name), or a TOML file with
``[machines.<name>]`` tables (``recipe``, ``vlans``, ``memory_mb``, ``cores``,
``boot_nice``: the nice value QEMU boots at until the testScript first needs the
machine, so that it boots in the CPU time the other machines leave idle; ``kind``:
``"vm"``, the default, or ``"container"``, the same image booted by systemd-nspawn).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from vmtest.errors import RecipeError
from vmtest.portable.accel import select_accelerator
from vmtest.portable.image.builder import build_image
from vmtest.portable.image.recipe import Recipe, check_vm_value, load_recipe
from vmtest.portable.runtime.container_net import check_kind, check_vlans
from vmtest.portable.runtime.qemu import MachineConfig
from vmtest.progress.events import Emit

_MACHINE_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class MachineSpec:
    """A named machine of a test, before its image is built."""

    name: str
    recipe: Recipe
    vlans: tuple[int, ...] = (1,)
    memory_mb: int | None = None
    cores: int | None = None
    boot_nice: int = 0
    kind: str = "vm"


def _check_name(name: str, origin: str) -> str:
    if not _MACHINE_NAME.match(name):
        raise RecipeError(f"{origin}: machine name {name!r} must be lowercase letters, digits and '-'")
    return name


def _from_table(path: Path) -> list[MachineSpec]:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"machine spec {path}: not valid TOML: {error}") from None
    machines = data.get("machines")
    if not isinstance(machines, dict) or not machines:
        raise RecipeError(f"machine spec {path}: needs at least one [machines.<name>] table with a 'recipe'")
    specs = []
    for name, table in machines.items():
        origin = f"machine spec {path}: machines.{name}"
        if not isinstance(table, dict) or "recipe" not in table:
            raise RecipeError(f"{origin}: needs a 'recipe' path")
        unknown = set(table) - {"recipe", "vlans", "memory_mb", "cores", "boot_nice", "kind"}
        if unknown:
            raise RecipeError(f"{origin}: unknown keys {sorted(unknown)}")
        vlans = table.get("vlans", [1])
        if not isinstance(vlans, list) or not all(isinstance(v, int) and 1 <= v <= 255 for v in vlans):
            raise RecipeError(f"{origin}: vlans must be a list of numbers 1-255, got {vlans!r}")
        for key in ("memory_mb", "cores"):
            if key in table:
                check_vm_value(origin, key, table[key])
        boot_nice = table.get("boot_nice", 0)
        if not isinstance(boot_nice, int) or isinstance(boot_nice, bool) or not 0 <= boot_nice <= 19:
            raise RecipeError(f"{origin}: boot_nice must be a nice value 0-19, got {boot_nice!r}")
        recipe = load_recipe(path.parent / table["recipe"])
        specs.append(MachineSpec(
            _check_name(name, origin), recipe, tuple(vlans),
            table.get("memory_mb"), table.get("cores"), boot_nice, check_kind(origin, table, recipe),
        ))
    return specs


def parse_machine_specs(values: list[str]) -> list[MachineSpec]:
    """Parse every ``--machines`` value; raises RecipeError for bad names, paths or recipes."""
    specs: list[MachineSpec] = []
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, separator, recipe_path = item.partition("=")
            if not separator and item.endswith(".toml") and "[machines" in _head(Path(item)):
                specs.extend(_from_table(Path(item)))
                continue
            if not separator:
                recipe = load_recipe(item)
                specs.append(MachineSpec(_check_name(recipe.name, f"--machines {item}"), recipe))
            else:
                specs.append(MachineSpec(_check_name(name, f"--machines {item}"), load_recipe(recipe_path)))
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise RecipeError(f"--machines: machine names used twice: {', '.join(duplicates)}")
    if not specs:
        raise RecipeError("--machines: no machine given")
    if len(specs) > 254:
        raise RecipeError("--machines: at most 254 machines")
    check_vlans(specs)
    return specs


def _head(path: Path) -> str:
    try:
        return path.read_text()[:4096]
    except OSError:
        raise RecipeError(f"--machines: {path}: file not found") from None


def prepare_machines(values: list[str]) -> list[MachineConfig]:
    """Build (or fetch from the cache) every machine's image and pick its accelerator."""
    return configure_machines(parse_machine_specs(values))


def configure_machines(specs: list[MachineSpec], progress: Emit | None = None) -> list[MachineConfig]:
    """Build (or fetch from the cache) the image of every parsed machine and pick its accelerator;
    builds report their steps to ``progress``."""
    configs = []
    for number, spec in enumerate(sorted(specs, key=lambda s: s.name), 1):
        image = build_image(spec.recipe, progress=progress)
        accelerator = select_accelerator(spec.recipe.machine_arch)
        configs.append(MachineConfig(
            name=spec.name, image=image, accelerator=accelerator, number=number,
            vlans=spec.vlans, memory_mb=spec.memory_mb, cores=spec.cores, boot_nice=spec.boot_nice,
            kind=spec.kind,
        ))
    return configs
