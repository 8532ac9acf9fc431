"""The library's rooms hold: no helper imports the portable runtime, no module is over 500 lines, every
check failure is a CheckFailed."""

from __future__ import annotations

from pathlib import Path

from . import house


def test_no_helper_imports_the_portable_runtime() -> None:
    assert house.seam_problems() == []


def test_no_module_is_over_500_lines() -> None:
    assert house.size_problems() == []


def test_every_check_failure_has_the_one_base() -> None:
    assert house.failure_base_problems() == []


# -- negative controls ---------------------------------------------------------------------------

def test_a_helper_importing_the_runtime_is_found(tmp_path: Path) -> None:
    (tmp_path / "portable").mkdir()
    (tmp_path / "portable" / "cli.py").write_text("from vmtest.portable.runtime import driver\n")
    (tmp_path / "report.py").write_text("import json\nfrom vmtest.portable.outdir import PREVIOUS_SUFFIX\n")
    (tmp_path / "health.py").write_text("from vmtest import portable\n")
    assert house.seam_problems(tmp_path) == [
        "vmtest/health.py:1: a helper imports vmtest.portable",
        "vmtest/report.py:2: a helper imports vmtest.portable.outdir",
        "vmtest/report.py:2: a helper imports vmtest.portable.outdir.PREVIOUS_SUFFIX",
    ]


def test_a_long_module_is_found(tmp_path: Path) -> None:
    (tmp_path / "short.py").write_text("x = 1\n" * 3)
    (tmp_path / "long.py").write_text("x = 1\n" * 4)
    assert house.size_problems(tmp_path, limit=3) == ["vmtest/long.py: 4 lines (at most 3)"]
