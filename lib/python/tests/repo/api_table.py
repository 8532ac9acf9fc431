"""docs/reference.md's table of upstream's Machine API: each name, how vmtest has it, and which VM tests call it.

    python -m tests.repo.api_table --write    (from lib/python: rewrites the table in docs/reference.md)

The rows are the pinned list's (tests/unit/data/upstream_api.json): every upstream method
and attribute (``machine.<name>``) and testScript name of every pinned nixpkgs revision
(nixos-25.11, nixos-26.05, nixos-unstable); a name not in all of them says in which. Its
``not_provided`` and ``differences`` entries say how and why a row differs; no other text
goes into the table.
The last column is read from tests/integration/*.py: pytest code calling a machine
(``machine.wait_for_unit(…)``) and testScripts, the Python strings those tests run in the
driver's namespace (``start_all()``). tests/repo/test_api_table.py fails when docs/reference.md's
copy is stale or the data names something upstream does not have.
"""

from __future__ import annotations

import ast
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmtest.portable.runtime.namespace import DRIVER_NAMES, undefined_names

from ..unit.api_surface import pinned, revisions
from . import readme_tables
from .repo_checks import REPO

INTEGRATION = REPO / "lib" / "python" / "tests" / "integration"
REFERENCE = REPO / "docs" / "reference.md"
START = "<!-- api-table: made by tests/repo/api_table.py from tests/unit/data/upstream_api.json; do not edit -->"
END = "<!-- end of api-table -->"
COMMAND = "python -m tests.repo.api_table --write"
AS_UPSTREAM, DIFFERS, NOT_PROVIDED = "supported as upstream", "supported, differs", "not provided"
# How pytest code names a machine: annotations, and the driver's machine lists.
MACHINE_TYPES = {"QemuMachine", "BaseMachine", "Machine"}
MACHINE_LISTS = {"machines", "machines_qemu"}
_CODE_SPAN = re.compile(r"`([^`]+)`")
_API_LIKE = re.compile(r"(machine\.)?([A-Za-z_]\w*)(.?)")


@dataclass(frozen=True)
class Row:
    name: str  # machine.<name> for methods and attributes, the bare name for testScript names
    generations: tuple[str, ...]  # the revisions that have the name, oldest first
    status: str
    how: str
    why: str
    called_by: tuple[str, ...]  # test files under tests/integration


def upstream_names(surface: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Every row's name with the upstream revisions that have it (oldest first), in the pinned list's order."""
    order = revisions(surface)
    found: dict[str, set[str]] = {}
    for method, by_revision in surface["methods"].items():
        found.setdefault(f"machine.{method}", set()).update(by_revision)
    for kind, prefix in (("attributes", "machine."), ("test_symbols", "")):
        for revision in order:
            for name in surface[kind][revision]:
                found.setdefault(f"{prefix}{name}", set()).add(revision)
    return {name: tuple(r for r in order if r in present) for name, present in found.items()}


def revisions_label(present: tuple[str, ...], every: tuple[str, ...]) -> str:
    """How a row says which revisions have its name: nothing for all, else ``(nixos-25.11 only)``,
    ``(since nixos-26.05)``, ``(until nixos-26.05)`` or the list."""
    if present == every:
        return ""
    if len(present) == 1:
        return f" ({present[0]} only)"
    if present == every[-len(present):]:
        return f" (since {present[0]})"
    if present == every[:len(present)]:
        return f" (until {present[-1]})"
    return f" ({', '.join(present)})"


def row_name(surface: dict[str, Any], name: str) -> str:
    """A ``not_provided`` key as its row names it: ``machine.<name>`` for a method or attribute, bare for
    a testScript name."""
    machine_names = set(surface["methods"]).union(*surface["attributes"].values())
    symbols = set().union(*surface["test_symbols"].values())
    return name if name in symbols and name not in machine_names else f"machine.{name}"


def explanations(surface: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """Status, how and why for every name the data says differs or is absent."""
    found = {row_name(surface, name): (NOT_PROVIDED, "absent", why) for name, why in surface["not_provided"].items()}
    for entry in surface["differences"]:
        found.update({name: (DIFFERS, entry["how"], entry["why"]) for name in entry["names"]})
    return found


def _names_in(text: str) -> list[tuple[str, str]]:
    """API names a text writes as code: ``name()``, ``machine.name`` or ``snake_name`` (with the form)."""
    found = []
    for span in _CODE_SPAN.findall(text):
        match = _API_LIKE.match(span)
        if match is None:
            continue
        machine, name, after = match.groups()
        if machine:
            found.append((name, "machine"))
        elif after == "(":
            found.append((name, "call"))
        elif after in ("", "=") and "_" in name:
            found.append((name, "snake"))
    return found


def data_problems(surface: dict[str, Any]) -> list[str]:
    """What in ``not_provided`` and ``differences`` is not upstream's, is said twice, or lacks its why."""
    upstream = upstream_names(surface)
    methods, attributes = set(surface["methods"]), set().union(*surface["attributes"].values())
    symbols = set().union(*surface["test_symbols"].values())
    callables = [*surface["methods"].values(), *surface["namespace_functions"].values()]
    parameters = {param for generations in callables for params in generations.values() for param, _ in params}
    known = {"machine": methods | attributes, "call": methods | symbols,
             "snake": methods | attributes | symbols | parameters}
    problems: list[str] = []
    texts: list[tuple[str, str]] = []
    said = [row_name(surface, name) for name in surface["not_provided"]]
    for name, why in surface["not_provided"].items():
        if not why.strip():
            problems.append(f"not_provided: {row_name(surface, name)} says no why")
        texts.append((f"not_provided {row_name(surface, name)}", why))
    for entry in surface["differences"]:
        names = ", ".join(entry["names"])
        said += entry["names"]
        for part in ("how", "why"):
            if not entry.get(part, "").strip():
                problems.append(f"differences: {names} has no {part!r}")
            texts.append((f"differences {names}", entry.get(part, "")))
    problems += [f"{name}: not a name in the pinned upstream list" for name in said if name not in upstream]
    problems += [f"{name}: explained more than once" for name in sorted(set(said)) if said.count(name) > 1]
    for where, text in texts:
        if "|" in text:
            problems.append(f"{where}: '|' would split the table's cell")
        problems += [f"{where}: names `{name}`, which upstream does not have"
                     for name, form in _names_in(text) if name not in known[form]]
    return problems


# -- which integration tests call what ------------------------------------------------------------

def _string(node: ast.AST, constants: dict[str, str]) -> str | None:
    """The text of a string expression: literals, ``+``, module constants; an f-string's fields read as 0."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(part.value) if isinstance(part, ast.Constant) else "0" for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _string(node.left, constants), _string(node.right, constants)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _scripts(tree: ast.Module) -> set[str]:
    """The strings in a test file that are Python calling something: the testScripts it runs."""
    constants: dict[str, str] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(
                statement.targets[0], ast.Name):
            text = _string(statement.value, constants)
            if text is not None:
                constants[statement.targets[0].id] = text
    found = set()
    for node in ast.walk(tree):
        text = _string(node, constants)
        if not text or text in found:
            continue
        try:
            script = ast.parse(text)
        except SyntaxError:
            continue  # a shell command, a message, a recipe path
        if any(isinstance(inner, ast.Call) for inner in ast.walk(script)):
            found.add(text)
    return found


def _is_machine_type(annotation: ast.expr | None) -> bool:
    return annotation is not None and ast.unparse(annotation).split(".")[-1] in MACHINE_TYPES


def _machine_names(tree: ast.Module) -> set[str]:
    """Names pytest code gives machines: annotated as one (parameters, fixtures) or taken from ``.machines``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if _is_machine_type(node.returns):
                names.add(node.name)  # a fixture: tests name the machine by it
            arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            names |= {argument.arg for argument in arguments if _is_machine_type(argument.annotation)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if _is_machine_type(node.annotation):
                names.add(node.target.id)
        elif isinstance(node, ast.Assign) and any(
                isinstance(inner, ast.Attribute) and inner.attr in MACHINE_LISTS for inner in ast.walk(node.value)):
            names |= {inner.id for target in node.targets for inner in ast.walk(target) if isinstance(inner, ast.Name)}
    return names


def _is_machine(node: ast.expr, machines: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in machines
    if isinstance(node, ast.Subscript):  # machines[0], driver.machines[0]
        listed = node.value
        return ((isinstance(listed, ast.Name) and listed.id in MACHINE_LISTS)
                or (isinstance(listed, ast.Attribute) and listed.attr in MACHINE_LISTS))
    return False


def _machine_uses(tree: ast.Module, machines: set[str]) -> set[str]:
    return {f"machine.{node.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and _is_machine(node.value, machines)}


def _script_uses(script: str) -> set[str]:
    """What a testScript takes from the namespace, and the ``machine.<name>`` it uses on its machines."""
    read = {name for name, _ in undefined_names(script, "<testScript>", set())}
    machines = {name for name in read if name not in DRIVER_NAMES and not re.fullmatch(r"vlan\d+", name)}
    return read | _machine_uses(ast.parse(script), machines)


def callers(directory: Path = INTEGRATION) -> dict[str, set[str]]:
    """For each name used (``machine.<name>`` or a testScript name), the test files in ``directory`` using it."""
    found: dict[str, set[str]] = {}
    for path in sorted(directory.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        uses = _machine_uses(tree, _machine_names(tree))
        with warnings.catch_warnings():
            # A testScript's own escapes (the shell's `\<2\>`) are not for this reading to warn about.
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            for script in _scripts(tree):
                uses |= _script_uses(script)
        for name in uses:
            found.setdefault(name, set()).add(path.name)
    return found


# -- the table ---------------------------------------------------------------------------------

def rows(surface: dict[str, Any], directory: Path = INTEGRATION) -> list[Row]:
    """One row per upstream name, in the pinned list's order; nothing calls what is not provided.

    Names that share an explanation: the first row has its text, the others point to it.
    """
    said, called = explanations(surface), callers(directory)
    found: list[Row] = []
    first: dict[tuple[str, str], str] = {}  # (how, why) -> the row that shows it
    for name, generations in upstream_names(surface).items():
        status, how, why = said.get(name, (AS_UPSTREAM, "", ""))
        if how:
            shown = first.setdefault((how, why), name)
            if shown != name:
                how = why = f"as `{shown}`"
        called_by = () if status == NOT_PROVIDED else tuple(sorted(called.get(name, ())))
        found.append(Row(name, generations, status, how, why, called_by))
    return found


def table(found: list[Row], every_generation: tuple[str, ...]) -> str:
    """The Markdown table, between its markers; a name not in every revision says which it is in."""
    lines = [START, "| upstream name | in vmtest | how it differs | why | called by (tests/integration) |",
             "|---|---|---|---|---|"]
    for row in found:
        only = revisions_label(row.generations, every_generation)
        called = ", ".join(f"`{name}`" for name in row.called_by) or "—"
        lines.append(f"| `{row.name}`{only} | {row.status} | {row.how} | {row.why} | {called} |")
    return "\n".join([*lines, END])


def generated(surface: dict[str, Any] | None = None, directory: Path = INTEGRATION) -> str:
    """The table the pinned list and the integration tests make now."""
    surface = pinned() if surface is None else surface
    return table(rows(surface, directory), tuple(revisions(surface)))


def readme_problems(readme: Path = REFERENCE, wanted: str | None = None) -> list[str]:
    """Why ``readme``'s table is not the one the data makes now (empty: it is)."""
    current = readme_tables.between(readme.read_text(), START, END)
    if not current:
        return [f"{readme}: no API table markers ({START!r} … {END!r})"]
    if current != (generated() if wanted is None else wanted):
        return [f"{readme}: the API table is stale: run `{COMMAND}` in lib/python"]
    return []


if __name__ == "__main__":
    sys.exit(readme_tables.main(sys.argv[1:], REFERENCE, START, END, generated(), "api_table"))
