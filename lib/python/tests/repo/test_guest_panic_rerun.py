"""The repository's rule for VM tests (tests/conftest.py): one whose error names a guest kernel panic
runs once more; any other failure does not. Here, not in tests/unit: Nix's check phase has no
pytest-rerunfailures, and the rule is for `make test`, not for the package."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

TESTS = '''
import pytest
from pathlib import Path

pytestmark = pytest.mark.vm
COUNT = Path(__file__).with_suffix(".count")

def attempt(name):
    counts = COUNT.read_text().split() if COUNT.exists() else []
    COUNT.write_text(" ".join([*counts, name]))
    return counts.count(name) + 1

def test_panics_once():
    if attempt("panics_once") == 1:
        raise RuntimeError("server: the VM's shell closed. Last console lines:\\n  [ 21.1] Kernel panic - not syncing")

def test_panics_always():
    attempt("panics_always")
    raise RuntimeError("Kernel panic - not syncing: Fatal exception in interrupt")

def test_fails_otherwise():
    attempt("fails_otherwise")
    assert False, "a unit failed"
'''


@pytest.mark.fault(fault="a guest kernel panic during a VM test (TCG emulation sometimes crashes a booting guest)",
                   handling="the test runs once more (pytest-rerunfailures; the summary counts it as rerun); a "
                            "second panic fails it with the panic's line; no other failure is rerun")
def test_only_guest_panics_are_rerun(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    pytester.makeini("[pytest]\nmarkers =\n  vm: boots VMs\n")
    path = pytester.makepyfile(test_vm=TESTS)
    result = pytester.runpytest("-p", "rerunfailures")
    result.assert_outcomes(passed=1, failed=2)
    assert result.parseoutcomes().get("rerun") == 2, result.stdout.str()
    counts = path.with_suffix(".count").read_text().split()
    assert counts.count("panics_once") == 2, "rerun, then passed"
    assert counts.count("panics_always") == 2, "rerun once, not more"
    assert counts.count("fails_otherwise") == 1, "a failure that is no panic is not rerun"
