"""docs/api.md: what a testScript may import, made from ``vmtest.__all__`` and the docstrings.

    python -m tests.repo.public_api --write    (from lib/python: rewrites the reference in docs/api.md)

Each public module (a module in ``vmtest.__all__`` or ``vmtest.suites.__all__``) is listed with its
docstring's first paragraph and every name of its own ``__all__``; each other name of
``vmtest.__all__`` with its signature and the first paragraph of its docstring.
tests/repo/test_public_api.py fails when docs/api.md's copy is stale, when a testScript of this
repository imports anything else, or when a module outside the surface does not say it is internal.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import types
from pathlib import Path

from . import readme_tables
from .house import PACKAGE
from .repo_checks import REPO

REFERENCE = REPO / "docs" / "api.md"
START = "<!-- public-api: made by tests/repo/public_api.py from vmtest.__all__ and the docstrings; do not edit -->"
END = "<!-- end of public-api -->"
COMMAND = "python -m tests.repo.public_api --write"
# The packages whose ``__all__`` is the surface a testScript imports from.
ROOTS = ("vmtest", "vmtest.suites")
# This repository's testScripts and the libraries they are written like.
TEST_SCRIPTS = ("e2e-test/test_script.py", "tests/vm/boot.py", "tests/vm/services.py", "tests/vm/integration.py")


def _summary(thing: object) -> str:
    """The first paragraph of ``thing``'s docstring, on one line."""
    doc = inspect.getdoc(thing) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _signature(thing: object) -> str:
    try:
        return str(inspect.signature(thing))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def public_modules() -> dict[str, types.ModuleType]:
    """Every public module by its dotted name."""
    found = {}
    for root in ROOTS:
        package = importlib.import_module(root)
        for name in package.__all__:
            value = getattr(package, name)
            if isinstance(value, types.ModuleType):
                found[value.__name__] = value
    return found


def surface() -> dict[str, set[str]]:
    """What ``from M import N`` a testScript may write: each importable module and its names."""
    allowed = {root: set(importlib.import_module(root).__all__) for root in ROOTS}
    for name, module in public_modules().items():
        allowed[name] = set(getattr(module, "__all__", ()))
    return allowed


def _entry(name: str, value: object) -> str:
    """One line: a function with its signature, a class, or a constant with its value."""
    if inspect.isclass(value):
        return f"- class `{name}`: {_summary(value) or '(no docstring)'}"
    if callable(value):
        return f"- `{name}{_signature(value)}`: {_summary(value) or '(no docstring)'}"
    return f"- `{name} = {value!r}`" if isinstance(value, str | int | float) else f"- `{name}`: `{value}`"


def generated() -> str:
    """The reference as ``vmtest.__all__`` and the docstrings make it now."""
    lines = [START, "", "## `vmtest`", "", _summary(importlib.import_module("vmtest")), ""]
    top = importlib.import_module("vmtest")
    lines += [_entry(f"vmtest.{name}", getattr(top, name)) for name in top.__all__
              if not isinstance(getattr(top, name), types.ModuleType)]
    for dotted, module in sorted(public_modules().items()):
        lines += ["", f"## `{dotted}`", "", _summary(module), ""]
        lines += [_entry(name, getattr(module, name)) for name in getattr(module, "__all__", ())]
    return "\n".join([*lines, "", END])


def import_problems(paths: list[Path] | None = None, allowed: dict[str, set[str]] | None = None) -> list[str]:
    """``from vmtest… import`` statements of the testScripts that name something outside the surface."""
    allowed = surface() if allowed is None else allowed
    problems = []
    for path in paths if paths is not None else [REPO / name for name in TEST_SCRIPTS]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "vmtest" and alias.name not in allowed:
                        problems.append(f"{path.name}:{node.lineno}: import {alias.name} is not public")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vmtest":
                module = node.module or ""
                for alias in node.names:
                    if alias.name not in allowed.get(module, set()):
                        problems.append(f"{path.name}:{node.lineno}: {module}.{alias.name} is not public")
    return problems


def internal_problems(package: Path = PACKAGE, public: set[str] | None = None) -> list[str]:
    """Helper modules (outside ``vmtest/portable/``) neither public nor saying ``Internal:`` first."""
    public = set(public_modules()) | set(ROOTS) if public is None else public
    problems = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        dotted = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if "portable" in parts or dotted in public:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if not doc.startswith("Internal:"):
            problems.append(f"{dotted}: neither public nor marked internal (its docstring starts 'Internal:')")
    return problems


def reference_problems(reference: Path = REFERENCE, wanted: str | None = None) -> list[str]:
    """Why ``reference``'s copy is not the one the docstrings make now (empty: it is)."""
    current = readme_tables.between(reference.read_text(), START, END)
    if not current:
        return [f"{reference}: no public-api markers ({START!r} … {END!r})"]
    if current != (generated() if wanted is None else wanted):
        return [f"{reference}: the public API reference is stale: run `{COMMAND}` in lib/python"]
    return []


if __name__ == "__main__":
    sys.exit(readme_tables.main(sys.argv[1:], REFERENCE, START, END, generated(), "public_api"))
