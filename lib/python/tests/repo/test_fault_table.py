"""docs/reference.md's fault table matches the tests' fault marks, and a missing or changed mark is noticed."""

from __future__ import annotations

from pathlib import Path

from . import fault_table


def test_readme_has_the_table_the_marks_make() -> None:
    found = fault_table.rows()
    assert len(found) >= 15, "the fault suite and the faults that already worked"
    assert len({row.test for row in found}) == len(found)
    assert fault_table.readme_table(fault_table.REFERENCE.read_text()) == fault_table.table(found), (
        "docs/reference.md's fault table is stale: run `python -m tests.repo.fault_table --write` in lib/python")


def test_a_changed_or_removed_mark_changes_the_table(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.fault(fault='a fault', handling='handled')\n"
        "def test_one() -> None:\n    pass\n\n"
        "@pytest.mark.vm\ndef test_unmarked() -> None:\n    pass\n"
    )
    found = fault_table.rows(tmp_path)
    assert found == [fault_table.Row("a fault", "handled", "test_x.py::test_one")]
    assert "| a fault | handled | `test_x.py::test_one` |" in fault_table.table(found)
    assert fault_table.table([]) != fault_table.table(found)
