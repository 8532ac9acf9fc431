"""The testScripts rely only on the guest interface both twins declare.

A testScript runs on NixOS nodes under Nix and on their Debian twins here. What it relies on
in the guest must be declared by both: a unit it names exists in a NixOS node module
(``systemd.services.<name>``, or the module behind ``services.<name>``) and in a Debian
recipe (a unit file it places, a unit it enables, or the package that ships it). A transient
unit (``systemd-run``) declares nothing: on NixOS its PATH is systemd's own ``bin`` only, so
its command is found on Debian and not there.

The upstream driver's methods run commands of their own in the guest (``nc -z`` for the port
waits, ``xwininfo`` for the window helpers, ...): every Debian recipe of a machine a testScript
calls such a method on must install what provides them, as NixOS provides them to every node
(``nc``: netcat among its core packages). The calls are read from the script and from the vmtest
modules it imports (helpers call methods too); a call on a name that is no machine of the
twin's machines tables (a loop variable, a helper's parameter) counts for all of them.
"""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from vmtest.portable.image.builder import BASE_PACKAGES
from vmtest.portable.image.recipe import Recipe, load_recipe

from .repo_checks import NIX_PATH_LITERAL


@dataclass(frozen=True)
class Twins:
    """A testScript and the two declarations of its machines (``debian_machines``: the machines
    tables of ``vmtest run --machines``, naming each machine's recipe)."""

    script: str
    nixos_modules: tuple[str, ...]
    debian_recipes: tuple[str, ...]
    debian_machines: tuple[str, ...] = ()
    # What an instance gives the library's generic roles, as (name, value): each ``${name}`` in
    # the NixOS text reads as the value (lib/nix/modules/e2e-server.nix declares
    # ``systemd.services.${app}``; the Alicia instance, e2e-test/nix/default.nix, says app = "alicia").
    nixos_values: tuple[tuple[str, str], ...] = ()


VM_MACHINES = ("tests/vm/machines-x86_64.toml", "tests/vm/machines-aarch64.toml")
# The Alicia instance of the library's web-stack e2e builder, and the builder with its roles.
E2E_NIXOS = ("e2e-test/nix/default.nix", "lib/nix/web-stack-e2e.nix")
E2E = Twins("e2e-test/test_script.py", E2E_NIXOS,
            ("e2e-test/machines/server.toml", "e2e-test/machines/client.toml"), ("e2e-test/machines.toml",),
            (("app", "alicia"),))
TWINS = (
    E2E,
    Twins("tests/vm/boot.py", ("tests/vm/node.nix",), ("machines/debian-vm.toml",), VM_MACHINES),
    Twins("tests/vm/services.py", ("tests/vm/node.nix",), ("machines/debian-vm.toml",), VM_MACHINES),
    Twins("tests/vm/integration.py", ("tests/vm/node.nix", "lib/nix/vm-validation.nix"),
          ("machines/debian-vm.toml", "machines/peer.toml"), VM_MACHINES),
    # The e2e script with the client's @playwright/test suite (docs/browser-runner.md). Last: tests
    # pick the twins above by index.
    replace(E2E, debian_recipes=("e2e-test/machines/server.toml", "e2e-test/machines/client-ts.toml"),
            debian_machines=("e2e-test/machines-ts.toml",)),
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


# The guest commands each upstream Machine method runs besides bash, coreutils' timeout and base64
# (every execute's own), as nixpkgs' nixos/lib/test-driver/src/test_driver/machine/__init__.py has
# them (2025 and 2026 alike). With user=, the systemd helpers also run su (util-linux: essential).
_SYSTEMD = ("systemctl",)
_TTY = ("fold", "stty", "awk")
_COPY = ("mkdir", "cp")
UPSTREAM_GUEST_COMMANDS: dict[str, tuple[str, ...]] = {
    "wait_for_open_port": ("nc",),  # nc -z addr port
    "wait_for_closed_port": ("nc",),
    "wait_for_open_unix_socket": ("nc",),  # nc -z -U addr, -uU for datagrams
    "wait_for_x": ("journalctl", "grep"),
    "get_window_names": ("xwininfo", "sed"),
    "wait_for_window": ("xwininfo", "sed"),
    "get_tty_text": _TTY,
    "wait_until_tty_matches": _TTY,
    "dump_tty_contents": ("fold", "systemd-cat"),
    "systemctl": _SYSTEMD, "start_job": _SYSTEMD, "stop_job": _SYSTEMD, "wait_for_unit": _SYSTEMD,
    "wait_for_job": _SYSTEMD, "get_unit_info": _SYSTEMD, "get_unit_property": _SYSTEMD,
    "require_unit_state": _SYSTEMD,
    "sleep": ("sleep",),
    "copy_from_host": _COPY, "copy_from_machine": _COPY, "copy_from_vm": _COPY,
    "copy_from_host_via_shell": ("mkdir", "dirname"),
    "shutdown": ("poweroff",),
}
# The Debian packages that put each of those commands on PATH.
DEBIAN_PROVIDERS: dict[str, tuple[str, ...]] = {
    "nc": ("netcat-openbsd",),  # OpenBSD's nc, as NixOS' netcat (LibreSSL's): -z, -U, -u
    "xwininfo": ("x11-utils",),
    "awk": ("mawk", "gawk", "original-awk"),
    "journalctl": ("systemd",), "systemctl": ("systemd",), "systemd-cat": ("systemd",),
    "poweroff": ("systemd-sysv",),
    "grep": ("grep",), "sed": ("sed",),
    **{tool: ("coreutils",) for tool in ("fold", "stty", "sleep", "mkdir", "cp", "dirname")},
}
# What every image has without a recipe naming it: Debian's essential set (the builder runs
# mmdebstrap --variant=apt) and the builder's own packages.
ESSENTIAL = ("base-files", "base-passwd", "bash", "bsdutils", "coreutils", "dash", "debianutils", "diffutils",
             "dpkg", "findutils", "grep", "gzip", "hostname", "login", "ncurses-bin", "perl-base", "sed",
             "sysvinit-utils", "tar", "util-linux")
IMAGE_BASE = frozenset(ESSENTIAL) | frozenset(BASE_PACKAGES)
VMTEST_SOURCE = "lib/python/src"


@dataclass(frozen=True)
class MethodCall:
    """``receiver.method(...)`` of an upstream method, and where it was read."""

    receiver: str
    method: str
    where: str


def _calls(text: str, where: str) -> list[MethodCall]:
    """Every call of an upstream method with guest commands in ``text`` (receivers as written: a
    name, or ``?`` for an expression)."""
    tree = ast.parse(text)
    # self is an implementation, not a use; an imported module (time.sleep) is no machine.
    not_machines = {"self"} | {(alias.asname or alias.name).split(".")[0] for node in ast.walk(tree)
                               if isinstance(node, ast.Import) for alias in node.names}
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in UPSTREAM_GUEST_COMMANDS):
            receiver = node.func.value.id if isinstance(node.func.value, ast.Name) else "?"
            if receiver not in not_machines:
                found.append(MethodCall(receiver, node.func.attr, where))
    return found


def _module_file(source: Path, module: str) -> Path | None:
    base = source / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _vmtest_imports(tree: ast.Module, source: Path, package: str) -> set[Path]:
    """The files of the vmtest modules ``tree`` imports (``package``: its own, for relative imports);
    the portable runtime aside (it implements the methods)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            module = (".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                      if node.level else node.module or "")
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    files = set()
    for name in names:
        if name.split(".")[0] == "vmtest" and not name.startswith("vmtest.portable"):
            found = _module_file(source, name)
            if found is not None:
                files.add(found)
    return files


def method_calls(root: Path, script: str) -> list[MethodCall]:
    """The upstream method calls of testScript ``script`` and of the vmtest modules it imports, transitively."""
    source = root / VMTEST_SOURCE
    text = (root / script).read_text()
    calls = _calls(text, script)
    pending = _vmtest_imports(ast.parse(text), source, "")
    seen: set[Path] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        module_text = path.read_text()
        relative = path.relative_to(source)
        package = ".".join(relative.parent.parts)
        calls += _calls(module_text, str(path.relative_to(root)))
        pending |= _vmtest_imports(ast.parse(module_text), source, package)
    return calls


def machine_recipes(root: Path, tables: tuple[str, ...]) -> dict[str, list[Path]]:
    """Each machine name of the machines ``tables`` with the recipes it boots (one per table naming it)."""
    found: dict[str, list[Path]] = {}
    for table in tables:
        path = root / table
        for name, spec in tomllib.loads(path.read_text()).get("machines", {}).items():
            found.setdefault(name, []).append((path.parent / spec["recipe"]).resolve())
    return found


def guest_command_problems(root: Path, twin: Twins) -> list[str]:
    """Every upstream method call whose guest commands a Debian recipe of its machine does not install."""
    recipes = machine_recipes(root, twin.debian_machines)
    loaded: dict[Path, Recipe] = {}
    found: list[str] = []
    for call in method_calls(root, twin.script):
        for machine in [call.receiver] if call.receiver in recipes else sorted(recipes):
            for recipe_path in recipes[machine]:
                recipe = loaded.setdefault(recipe_path, load_recipe(recipe_path))
                installed = IMAGE_BASE | set(recipe.packages)
                for command in UPSTREAM_GUEST_COMMANDS[call.method]:
                    providers = DEBIAN_PROVIDERS[command]
                    if installed.isdisjoint(providers):
                        recipe_name = recipe_path.relative_to(root.resolve())
                        problem = (f"{twin.script}: {call.receiver}.{call.method} ({call.where}) runs `{command}` "
                                   f"in the guest, as upstream's driver does; {recipe_name} "
                                   f"(machine {machine}) installs no {' or '.join(providers)}")
                        if problem not in found:
                            found.append(problem)
    return found


def problems(root: Path, twins: tuple[Twins, ...] = TWINS) -> list[str]:
    """What the testScripts rely on that a twin does not declare; empty when both declare all."""
    found = []
    for twin in twins:
        found += guest_command_problems(root, twin)
        script = (root / twin.script).read_text()
        if re.search(r"\bsystemd-run\b", script):
            found.append(f"{twin.script}: starts a transient unit (systemd-run), whose PATH on NixOS is systemd's "
                         "bin only; declare the unit in both twins and start it")
        nixos = _nixos_text(root, twin.nixos_modules)
        for name, value in twin.nixos_values:
            nixos = nixos.replace("${" + name + "}", value)
        recipes = [load_recipe(root / path) for path in twin.debian_recipes]
        for unit in sorted(units_named(script)):
            if not declared_by_nixos(unit, nixos):
                found.append(f"{twin.script}: {unit} is declared by no NixOS node ({', '.join(twin.nixos_modules)})")
            if not declared_by_debian(unit, recipes):
                found.append(f"{twin.script}: {unit} is declared by no Debian recipe "
                             f"({', '.join(twin.debian_recipes)})")
    return found
