"""Machine recipes: a Debian machine declared in TOML, the twin of a NixOS module.

A recipe names a suite, an architecture, packages, files, users and groups,
systemd units to enable or mask, and VM settings. Loading validates everything
that can be checked on the host, so a bad recipe fails before any build with a
message that names the recipe and the item.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vmtest.errors import RecipeError

SUITES = ("bookworm", "trixie")
ARCHITECTURES = {"amd64": "x86_64", "arm64": "aarch64"}
_NAME = re.compile(r"^[a-z_][a-z0-9_-]*$")
_UNIT = re.compile(r"^[A-Za-z0-9@_.:\\-]+\.(service|socket|timer|target|mount|automount|path|swap|slice)$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9]+)?$")
_KNOWN_KEYS = {
    "name", "suite", "arch", "packages", "files", "users", "groups",
    "enable", "mask", "setup", "vm", "include", "pip",
}


@dataclass(frozen=True)
class FileSpec:
    """A file placed in the image: inline ``text`` or a ``source`` path (a file, or a directory copied whole)."""

    path: str
    text: str | None = None
    source: str | None = None
    mode: str = "0644"
    owner: str = "root:root"


@dataclass(frozen=True)
class UserSpec:
    """A login user created in the image."""

    name: str
    groups: tuple[str, ...] = ()
    shell: str = "/bin/bash"
    uid: int | None = None
    authorized_keys: tuple[str, ...] = ()
    password_hash: str | None = None


@dataclass(frozen=True)
class VmSpec:
    """QEMU settings for a machine booted from this recipe."""

    memory_mb: int = 1024
    cores: int = 2
    disk_free_mb: int = 1024
    graphics: bool = False


@dataclass(frozen=True)
class Recipe:
    """A validated machine recipe."""

    name: str
    path: Path
    suite: str
    arch: str
    packages: tuple[str, ...] = ()
    files: tuple[FileSpec, ...] = ()
    users: tuple[UserSpec, ...] = ()
    groups: tuple[str, ...] = ()
    enable: tuple[str, ...] = ()
    mask: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    vm: VmSpec = field(default_factory=VmSpec)

    @property
    def machine_arch(self) -> str:
        """The kernel's name for the architecture (``uname -m``): x86_64 or aarch64."""
        return ARCHITECTURES[self.arch]

    def content_hash(self, builder_version: str, extra: bytes = b"") -> str:
        """A hash of everything that determines the image: recipe, file contents, builder."""
        digest = hashlib.sha256()
        body = asdict(self)
        body.pop("path")
        body.pop("vm")  # VM settings do not change the image
        # Sources count by content (below), not by where the checkout happens to be.
        body["files"] = [{**spec, "source": spec["source"] is not None} for spec in body["files"]]
        digest.update(json.dumps(body, sort_keys=True, default=str).encode())
        for spec in self.files:
            if spec.source is None:
                continue
            source = Path(spec.source)
            members = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
            for member in members:
                digest.update(str(member.relative_to(source) if source.is_dir() else "").encode())
                digest.update(member.read_bytes())
        digest.update(builder_version.encode())
        digest.update(extra)
        return digest.hexdigest()[:16]


def _fail(path: Path, item: str, problem: str) -> RecipeError:
    return RecipeError(f"recipe {path}: {item}: {problem}")


def _str_list(path: Path, data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, key, f"expected a list of strings, got {value!r}")
    return list(value)


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise RecipeError(f"recipe {path}: file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"recipe {path}: not valid TOML: {error}") from None


def _merged(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Load ``path`` with its ``include``s merged underneath, in order, then ``path`` itself.

    Lists concatenate and tables merge (a later key wins), between includes as between an
    include and the file that includes it.
    """
    if path in seen:
        raise _fail(path, "include", "includes itself through " + " -> ".join(map(str, seen)))
    data = _load_toml(path)
    merged: dict[str, Any] = {}
    for included in _str_list(path, data, "include"):
        _merge_into(merged, _merged((path.parent / included).resolve(), (*seen, path)))
    own = {key: value for key, value in data.items() if key != "include"}
    if isinstance(own.get("files"), dict):
        # a file's source is relative to the recipe that names it
        own["files"] = {
            name: {**spec, "_base": str(path.parent)} if isinstance(spec, dict) else spec
            for name, spec in own["files"].items()
        }
    _merge_into(merged, own)
    return merged


def _merge_into(merged: dict[str, Any], data: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = [*merged[key], *value]
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value


def _file_specs(path: Path, raw: object) -> tuple[FileSpec, ...]:
    if not isinstance(raw, dict):
        raise _fail(path, "files", "expected a table of paths")
    specs = []
    for target, spec in sorted(raw.items()):
        item = f"files.{target!r}"
        if not target.startswith("/"):
            raise _fail(path, item, "the target path must be absolute")
        if not isinstance(spec, dict):
            raise _fail(path, item, "expected a table with 'text' or 'source'")
        base = Path(spec.get("_base", path.parent))
        unknown = set(spec) - {"text", "source", "mode", "owner", "_base"}
        if unknown:
            raise _fail(path, item, f"unknown keys {sorted(unknown)}")
        text, source = spec.get("text"), spec.get("source")
        if (text is None) == (source is None):
            raise _fail(path, item, "give exactly one of 'text' and 'source'")
        if source is not None:
            resolved = (base / source).resolve()
            if not resolved.exists():
                raise _fail(path, item, f"source file {resolved} does not exist")
            source = str(resolved)
        mode = str(spec.get("mode", "0644"))
        if not re.fullmatch(r"0?[0-7]{3,4}", mode):
            raise _fail(path, item, f"mode {mode!r} is not an octal permission")
        specs.append(FileSpec(target, text, source, mode, str(spec.get("owner", "root:root"))))
    return tuple(specs)


def _user_specs(path: Path, raw: object) -> tuple[UserSpec, ...]:
    if not isinstance(raw, list):
        raise _fail(path, "users", "expected an array of tables ([[users]])")
    users = []
    for entry in raw:
        if not isinstance(entry, dict) or not _NAME.match(str(entry.get("name", ""))):
            raise _fail(path, "users", f"a user needs a valid 'name': {entry!r}")
        item = f"users.{entry['name']}"
        keys = []
        for key in entry.get("authorized_keys", []):
            if not re.match(r"^(ssh-|ecdsa-|sk-)", key):
                raise _fail(path, item, f"authorized key {key[:30]!r}… is not an OpenSSH public key")
            keys.append(key)
        users.append(
            UserSpec(
                name=entry["name"],
                groups=tuple(entry.get("groups", [])),
                shell=entry.get("shell", "/bin/bash"),
                uid=entry.get("uid"),
                authorized_keys=tuple(keys),
                password_hash=entry.get("password_hash"),
            )
        )
    return tuple(users)


# [vm] settings: (type, lowest, highest); the same bounds hold for a machine spec's overrides.
VM_LIMITS: dict[str, tuple[type, int, int]] = {
    "memory_mb": (int, 128, 262144),
    "cores": (int, 1, 64),
    "disk_free_mb": (int, 0, 1048576),
    "graphics": (bool, 0, 1),
}


def check_vm_value(origin: str, key: str, value: object) -> None:
    """Raise RecipeError (``origin: vm.key: …`` with the allowed range) unless ``value`` fits ``key``."""
    if key not in VM_LIMITS:
        raise RecipeError(f"{origin}: vm.{key}: unknown key (known: {', '.join(VM_LIMITS)})")
    kind, lowest, highest = VM_LIMITS[key]
    if kind is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{origin}: vm.{key}: {value!r} is not true or false")
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecipeError(f"{origin}: vm.{key}: {value!r} is not a whole number (allowed: {lowest} to {highest})")
    if not lowest <= value <= highest:
        raise RecipeError(f"{origin}: vm.{key}: {value} is out of range (allowed: {lowest} to {highest})")


def _vm_spec(path: Path, raw: object) -> VmSpec:
    if not isinstance(raw, dict):
        raise _fail(path, "vm", "expected a table")
    for key, value in raw.items():
        check_vm_value(f"recipe {path}", key, value)
    return VmSpec(**raw)


def load_recipe(path: str | Path) -> Recipe:
    """Load and validate a recipe file; raises RecipeError naming the recipe and the item."""
    path = Path(path).resolve()
    data = _merged(path)
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise _fail(path, "top level", f"unknown keys {sorted(unknown)} (known: {sorted(_KNOWN_KEYS)})")
    suite = data.get("suite", "trixie")
    if suite not in SUITES:
        raise _fail(path, "suite", f"{suite!r} is not one of {SUITES}")
    arch = data.get("arch", "amd64")
    if arch not in ARCHITECTURES:
        raise _fail(path, "arch", f"{arch!r} is not one of {sorted(ARCHITECTURES)}")
    packages = _str_list(path, data, "packages")
    for package in packages:
        if not _PACKAGE.match(package):
            raise _fail(path, f"packages: {package!r}", "not a valid Debian package name")
    groups = _str_list(path, data, "groups")
    for group in groups:
        if not _NAME.match(group):
            raise _fail(path, f"groups: {group!r}", "not a valid group name")
    units = {key: _str_list(path, data, key) for key in ("enable", "mask")}
    for key, names in units.items():
        for unit in names:
            if not _UNIT.match(unit):
                raise _fail(path, f"{key}: {unit!r}", "not a systemd unit name (e.g. nginx.service)")
    vm = _vm_spec(path, data.get("vm", {}))
    users = _user_specs(path, data.get("users", []))
    for user in users:
        for group in user.groups:
            if not _NAME.match(group):
                raise _fail(path, f"users.{user.name}.groups", f"{group!r} is not a group name")
    return Recipe(
        name=str(data.get("name", path.stem)),
        path=path,
        suite=suite,
        arch=arch,
        packages=tuple(dict.fromkeys(packages)),
        files=_file_specs(path, data.get("files", {})),
        users=users,
        groups=tuple(groups),
        enable=tuple(units["enable"]),
        mask=tuple(units["mask"]),
        setup=tuple(_str_list(path, data, "setup")),
        pip=tuple(_str_list(path, data, "pip")),
        vm=vm,
    )
