"""The public API is what docs/api.md lists, no more: the reference is current, every listed name imports,
this repository's testScripts import nothing else, and every other helper module says it is internal."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import vmtest
import vmtest.suites

from . import public_api, readme_tables


def _listed() -> dict[str, set[str]]:
    """The names docs/api.md lists, per module heading (``vmtest``, ``vmtest.health``, …)."""
    text = readme_tables.between(public_api.REFERENCE.read_text(), public_api.START, public_api.END)
    listed: dict[str, set[str]] = {}
    module = ""
    for line in text.splitlines():
        heading = re.match(r"## `([\w.]+)`", line)
        if heading:
            module = heading.group(1)
            listed[module] = set()
        elif line.startswith("- ") and module:
            name = re.search(r"`(?:[\w.]+\.)?(\w+)[( =`]", line)
            assert name, line
            listed[module].add(name.group(1))
    return listed


def test_the_reference_is_the_one_the_docstrings_make() -> None:
    assert public_api.reference_problems() == []


def test_every_name_the_docs_list_imports_and_nothing_more_is_public() -> None:
    listed = _listed()
    modules = {name for name in vmtest.__all__ if f"vmtest.{name}" in listed}
    modules |= {name for name in vmtest.suites.__all__ if f"vmtest.suites.{name}" in listed}
    assert listed["vmtest"] | modules == set(vmtest.__all__) | set(vmtest.suites.__all__)
    for module, names in listed.items():
        imported = importlib.import_module(module)
        if module != "vmtest":
            assert names == set(imported.__all__), module
        for name in names:
            exec(f"from {module} import {name}", {})  # what a testScript writes


def test_the_test_scripts_import_only_the_public_api() -> None:
    assert public_api.import_problems() == []


def test_every_other_helper_module_says_it_is_internal() -> None:
    assert public_api.internal_problems() == []


# -- negative controls ---------------------------------------------------------------------------

def test_an_internal_import_is_found(tmp_path: Path) -> None:
    script = tmp_path / "test_script.py"
    script.write_text("from vmtest import health, logs\nfrom vmtest.units import failed_units\n"
                      "import vmtest.portable.cli\nfrom vmtest.suites.web_stack import WebStack\n")
    assert public_api.import_problems([script]) == [
        "test_script.py:2: vmtest.units.failed_units is not public",
        "test_script.py:3: import vmtest.portable.cli is not public",
    ]


def test_an_unmarked_module_and_a_stale_reference_are_found(tmp_path: Path) -> None:
    package = tmp_path / "vmtest"
    package.mkdir()
    (package / "health.py").write_text('"""Health waits."""\n')
    (package / "units.py").write_text('"""Internal: units."""\n')
    (package / "probes.py").write_text('"""Probes."""\n')
    assert public_api.internal_problems(package, {"vmtest.health"}) == [
        "vmtest.probes: neither public nor marked internal (its docstring starts 'Internal:')"]
    reference = tmp_path / "api.md"
    reference.write_text(f"# API\n\n{public_api.START}\n- `vmtest.gone()`: removed\n{public_api.END}\n")
    assert public_api.reference_problems(reference) == [
        f"{reference}: the public API reference is stale: run `{public_api.COMMAND}` in lib/python"]
