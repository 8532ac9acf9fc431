"""The three validation suites on the arm64 twin (qemu-system-aarch64, TCG here): what
`make test-vm-aarch64` runs, through the same testScripts. The negative controls of each
check are in test_vm_validation.py (x86_64, same checks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..repo.repo_checks import REPO
from .test_vm_validation import assert_suites_reported, run_suites

pytestmark = [pytest.mark.vm, pytest.mark.aarch64]


def test_the_three_suites_pass_on_aarch64(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with run_suites(REPO / "tests/vm/machines-aarch64.toml", tmp_path, "aarch64", monkeypatch):
        pass
    performance = assert_suites_reported(tmp_path, "aarch64")
    print(json.dumps(performance, indent=2))
