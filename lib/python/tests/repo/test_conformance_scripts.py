"""The conformance scripts compile and read only names the driver's namespace has, before any VM boots."""

from __future__ import annotations

import pytest

from tests.integration import test_conformance
from vmtest.portable.runtime.namespace import namespace_names, undefined_names

SCRIPTS = {name: value for name, value in vars(test_conformance).items()
           if name.isupper() and isinstance(value, str) and "machine" in value and name != "PRELUDE"}
MACHINES = {"NETWORKING": ["alpha", "beta"]}


def problems(name: str, script: str) -> list[str]:
    known = namespace_names(MACHINES.get(name, ["machine"]), [1])
    try:
        compile(script, name, "exec")
    except SyntaxError as error:
        return [f"{name}: line {error.lineno}: {error.msg}"]
    return [f"{name}: line {line}: {unknown!r} is not in the namespace"
            for unknown, line in undefined_names(script, name, known)]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_compiles_in_the_namespace(name: str) -> None:
    assert problems(name, SCRIPTS[name]) == []


def test_the_check_catches_a_typo_and_a_broken_string() -> None:
    assert len(SCRIPTS) >= 8
    assert problems("UNITS", SCRIPTS["UNITS"].replace("machine.wait_for_job", "machin.wait_for_job")) == [
        "UNITS: line 28: 'machin' is not in the namespace"]
    assert problems("WAITS", 'machine.succeed("a\n")')[0].startswith("WAITS: line 1: unterminated string")
