"""Checks of the Python library's rooms: the seam to the portable runtime, module sizes, the one failure base.

Each function returns a list of problems (empty: the check passed), so the tests can run them on
the real tree and on copies with planted errors.
"""

from __future__ import annotations

import ast
from pathlib import Path

from .repo_checks import REPO

PACKAGE = REPO / "lib" / "python" / "src" / "vmtest"
MAX_LINES = 500


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports (``from vmtest import x`` counts as ``vmtest.x``), with its line."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def seam_problems(package: Path = PACKAGE) -> list[str]:
    """A helper (any module outside ``vmtest/portable/``) that imports the portable runtime."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] == "portable":
            continue
        for module, line in imported_modules(path):
            if module == "vmtest.portable" or module.startswith("vmtest.portable."):
                problems.append(f"vmtest/{relative}:{line}: a helper imports {module}")
    return problems


def size_problems(package: Path = PACKAGE, limit: int = MAX_LINES) -> list[str]:
    """Modules over ``limit`` lines."""
    return [f"vmtest/{path.relative_to(package)}: {count} lines (at most {limit})"
            for path in sorted(package.rglob("*.py"))
            if (count := len(path.read_text().splitlines())) > limit]


def failure_base_problems(package: Path = PACKAGE) -> list[str]:
    """Check failures (AssertionError subclasses) defined in vmtest that are not ``CheckFailed``s."""
    import importlib
    import inspect

    from vmtest.errors import CheckFailed

    problems = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if cls.__module__ == name and issubclass(cls, AssertionError) and not issubclass(cls, CheckFailed):
                problems.append(f"{name}.{cls.__name__} is an AssertionError but not a CheckFailed")
    return problems
