"""The names a testScript sees, and the check that it uses no other, made before anything boots.

A testScript that names a machine the run does not have (``serverr.succeed(…)``)
would otherwise fail with a NameError after every image is built and booted.
"""

from __future__ import annotations

import ast
import builtins
import re
import symtable
from collections.abc import Iterable, Iterator

# The driver's own names (upstream's test_symbols), besides machines and VLANs.
DRIVER_NAMES = (
    "start_all", "test_script", "run_tests", "machines", "machines_qemu", "machines_nspawn", "vlans",
    "driver", "log", "os", "create_machine", "subtest", "join_all", "retry", "serial_stdout_off",
    "serial_stdout_on", "polling_condition", "BaseMachine", "QemuMachine", "Machine", "t", "debug",
)
# A script that reaches names dynamically cannot be checked by reading it.
_DYNAMIC = {"globals", "locals", "vars", "exec", "eval", "__import__"}


def identifier(name: str) -> str:
    """The Python name of machine ``name`` in the namespace (``my-vm`` is ``my_vm``)."""
    return re.sub(r"\W", "_", name)


def namespace_names(machine_names: Iterable[str], vlan_numbers: Iterable[int]) -> set[str]:
    """Every name the driver puts in a testScript's namespace for these machines and VLANs."""
    machines = [identifier(name) for name in machine_names]
    names = set(DRIVER_NAMES) | set(machines) | {f"vlan{number}" for number in vlan_numbers}
    if len(machines) == 1:
        names.add("machine")
    return names


def _tables(table: symtable.SymbolTable) -> Iterator[symtable.SymbolTable]:
    yield table
    for child in table.get_children():
        yield from _tables(child)


def undefined_names(source: str, filename: str, known: set[str]) -> list[tuple[str, int]]:
    """The global names ``source`` reads that it never defines and ``known`` lacks, with their first line.

    Returns nothing for a script that imports ``*`` or reaches names dynamically.
    """
    tree = ast.parse(source, filename)
    if any(isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names)
           for node in ast.walk(tree)):
        return []
    top = symtable.symtable(source, filename, "exec")
    defined = set(known) | set(dir(builtins)) | {"__file__", "__name__", "__builtins__"}
    read: set[str] = set()
    for table in _tables(top):
        for symbol in table.get_symbols():
            name = symbol.get_name()
            global_here = table is top or symbol.is_global()
            binds = symbol.is_assigned() or symbol.is_imported() or symbol.is_namespace()
            if binds and (global_here or symbol.is_declared_global()):
                defined.add(name)
            if global_here and symbol.is_referenced():
                read.add(name)
    if read & _DYNAMIC:
        return []
    missing = read - defined
    lines: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in missing and isinstance(node.ctx, ast.Load):
            lines[node.id] = min(lines.get(node.id, node.lineno), node.lineno)
    return sorted(lines.items(), key=lambda item: (item[1], item[0]))
