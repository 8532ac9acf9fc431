"""docs/reference.md's fault table, made from the tests' ``@pytest.mark.fault(fault=…, handling=…)`` marks.

    python -m tests.repo.fault_table --write    (from lib/python: rewrites the table in docs/reference.md)

The table sits between two markers in docs/reference.md; tests/repo/test_fault_table.py fails when
it differs from what the marks say, so a fault's row and its test cannot drift apart.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

from . import readme_tables
from .repo_checks import REPO

TESTS = REPO / "lib" / "python" / "tests"
REFERENCE = REPO / "docs" / "reference.md"
START = "<!-- fault-table: made by tests/repo/fault_table.py from the fault marks; do not edit -->"
END = "<!-- end of fault-table -->"


@dataclass(frozen=True)
class Row:
    fault: str
    handling: str
    test: str


def _fault_mark(decorator: ast.expr) -> dict[str, str] | None:
    if not (isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == "pytest.mark.fault"):
        return None
    return {keyword.arg: ast.literal_eval(keyword.value) for keyword in decorator.keywords if keyword.arg}


def rows(tests: Path = TESTS) -> list[Row]:
    """Every marked test under ``tests``, in file and line order."""
    found = []
    for path in sorted(tests.rglob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                mark = _fault_mark(decorator)
                if mark is not None:
                    test = f"{path.relative_to(tests).as_posix()}::{node.name}"
                    found.append(Row(mark["fault"], mark["handling"], test))
    return found


def table(found: list[Row]) -> str:
    """The Markdown table, between its markers."""
    lines = [START, "| fault | what vmtest does | test |", "|---|---|---|"]
    lines += [f"| {row.fault} | {row.handling} | `{row.test}` |" for row in found]
    return "\n".join([*lines, END])


def readme_table(text: str) -> str:
    """The table as README has it now (markers included), or ``""``."""
    return readme_tables.between(text, START, END)


if __name__ == "__main__":
    sys.exit(readme_tables.main(sys.argv[1:], REFERENCE, START, END, table(rows()), "fault_table"))
