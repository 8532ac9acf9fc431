"""The testScripts rely only on the guest interface both twins declare.

A testScript runs on NixOS nodes under Nix and on their Debian twins here. What it relies on
in the guest must be declared by both: a unit it names exists in a NixOS node module
(``systemd.services.<name>``, or the module behind ``services.<name>``) and in a Debian
recipe (a unit file it places, a unit it enables, or the package that ships it). A transient
unit (``systemd-run``) declares nothing: on NixOS its PATH is systemd's own ``bin`` only, so
its command is found on Debian and not there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vmtest.portable.image.recipe import Recipe, load_recipe

from .repo_checks import NIX_PATH_LITERAL


@dataclass(frozen=True)
class Twins:
    """A testScript and the two declarations of its machines."""

    script: str
    nixos_modules: tuple[str, ...]
    debian_recipes: tuple[str, ...]


TWINS = (
    Twins("e2e-test/test_script.py", ("e2e-test/nix/server.nix", "e2e-test/nix/client.nix"),
          ("e2e-test/machines/server.toml", "e2e-test/machines/client.toml")),
    Twins("tests/vm/boot.py", ("tests/vm/node.nix",), ("machines/debian-vm.toml",)),
    Twins("tests/vm/services.py", ("tests/vm/node.nix",), ("machines/debian-vm.toml",)),
    Twins("tests/vm/integration.py", ("tests/vm/node.nix", "tests/vm/integration-test.nix"),
          ("machines/debian-vm.toml", "machines/peer.toml")),
)
_UNIT = re.compile(r"[\"'\s]([A-Za-z0-9][\w@.-]*\.(?:service|socket|timer|mount|path))\b")
# Units every systemd has: neither twin declares them.
BUILTIN_UNITS = {"systemd-journald.service", "systemd-logind.service", "dbus.service"}


def units_named(script: str) -> set[str]:
    """The unit names a testScript spells out (targets aside: every systemd has those)."""
    return set(_UNIT.findall(" " + script)) - BUILTIN_UNITS


def _nixos_text(root: Path, modules: tuple[str, ...]) -> str:
    """The text of the modules and every .nix file they import by path, transitively."""
    seen: set[Path] = set()
    pending = [(root / module).resolve() for module in modules]
    texts = []
    while pending:
        path = pending.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        text = path.read_text()
        texts.append(text)
        pending += [(path.parent / literal).resolve() for literal in NIX_PATH_LITERAL.findall(text)
                    if literal.endswith(".nix")]
    return "\n".join(texts)


def declared_by_nixos(unit: str, text: str) -> bool:
    stem, kind = unit.rsplit(".", 1)
    plural = {"service": "services", "socket": "sockets", "timer": "timers", "mount": "mounts", "path": "paths"}
    own = re.search(rf"systemd\.{plural[kind]}\.(\"?){re.escape(stem)}\1\s*=", text)
    by_module = kind == "service" and re.search(rf"(?<![\w.])services\.{re.escape(stem)}(\s*=|\.enable\s*=)", text)
    return bool(own or by_module)


def declared_by_debian(unit: str, recipes: list[Recipe]) -> bool:
    stem = unit.rsplit(".", 1)[0]
    for recipe in recipes:
        if any(spec.path.rsplit("/", 1)[-1] == unit and "/systemd/" in spec.path for spec in recipe.files):
            return True
        if unit in recipe.enable or any(package == stem or package.startswith(stem + "-")
                                        for package in recipe.packages):
            return True
    return False


def problems(root: Path, twins: tuple[Twins, ...] = TWINS) -> list[str]:
    """What the testScripts rely on that a twin does not declare; empty when both declare all."""
    found = []
    for twin in twins:
        script = (root / twin.script).read_text()
        if re.search(r"\bsystemd-run\b", script):
            found.append(f"{twin.script}: starts a transient unit (systemd-run), whose PATH on NixOS is systemd's "
                         "bin only; declare the unit in both twins and start it")
        nixos = _nixos_text(root, twin.nixos_modules)
        recipes = [load_recipe(root / path) for path in twin.debian_recipes]
        for unit in sorted(units_named(script)):
            if not declared_by_nixos(unit, nixos):
                found.append(f"{twin.script}: {unit} is declared by no NixOS node ({', '.join(twin.nixos_modules)})")
            if not declared_by_debian(unit, recipes):
                found.append(f"{twin.script}: {unit} is declared by no Debian recipe "
                             f"({', '.join(twin.debian_recipes)})")
    return found
