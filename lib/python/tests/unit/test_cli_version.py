"""``vmtest --version`` names the installed package's version."""

from __future__ import annotations

import importlib.metadata

import pytest

from vmtest.portable import cli


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"vmtest {importlib.metadata.version('vmtest')}"
