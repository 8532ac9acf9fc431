"""The testScripts type-check against the portable runtime's classes, which have the upstream API.

The driver prepends declarations of its namespace (nixos/lib/test-script-prepend.py: start_all,
subtest, driver, … and one line per node) and type-checks the result; a type error fails the
build. Here the same kind of prelude declares the portable runtime's classes, so a script that
misuses vmtest's helpers fails here first. Each nixpkgs revision's own check, with its own
prelude and its driver's classes, is reproduced in tests/repo/test_driver_typecheck.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

from .repo_checks import REPO

PRELUDE = """\
from typing import Callable, ContextManager, List
from vmtest.portable.runtime.driver import Driver
from vmtest.portable.runtime.machine import QemuMachine as Machine
start_all: Callable[[], None]
subtest: Callable[[str], ContextManager[None]]
driver: Driver
machines: List[Machine]
"""
SCRIPTS = {
    "e2e-test/test_script.py": ["server", "client"],
    "tests/vm/boot.py": ["vm"],
    "tests/vm/services.py": ["vm"],
    "tests/vm/integration.py": ["vm", "peer"],
}


def typecheck(script: str, nodes: list[str], tmp_path: Path) -> tuple[int, str]:
    checked = tmp_path / "test_script_with_types.py"
    declarations = "".join(f"{node}: Machine\n" for node in nodes)
    checked.write_text(PRELUDE + declarations + script)
    stdout, stderr, status = api.run(["--no-implicit-optional", "--check-untyped-defs", "--no-incremental",
                                      "--cache-dir=/dev/null", str(checked)])
    return status, stdout + stderr


@pytest.mark.parametrize("path", sorted(SCRIPTS))
def test_the_testscripts_type_check(path: str, tmp_path: Path) -> None:
    status, output = typecheck((REPO / path).read_text(), SCRIPTS[path], tmp_path)
    assert status == 0, output


def test_a_misused_helper_is_a_type_error(tmp_path: Path) -> None:
    script = (REPO / "tests/vm/boot.py").read_text() + "vv.check_boot(vm, 'not a profile')\n"
    status, output = typecheck(script, ["vm"], tmp_path)
    assert status == 1 and 'Argument 2 to "check_boot" has incompatible type "str"' in output
