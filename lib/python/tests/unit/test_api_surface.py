"""vmtest's Machine API and testScript namespace cover upstream's, as pinned in data/upstream_api.json.

The pinned list was written by reading the upstream files it names (2025 and 2026
generations); vmtest may add methods and defaulted parameters, never lack one.
"""

from __future__ import annotations

import copy
from pathlib import Path

from vmtest.portable.runtime.driver import Driver
from vmtest.portable.runtime.logger import CompositeLogger
from vmtest.portable.runtime.machine import QemuMachine
from vmtest.portable.runtime.namespace import namespace_names

from .api_surface import class_problems, pinned, signature_problems

SURFACE = pinned()


def test_qemu_machine_has_every_upstream_method_and_parameter() -> None:
    assert class_problems(QemuMachine, SURFACE) == []


def test_qemu_machine_has_every_upstream_attribute(tmp_path: Path) -> None:
    machine = QemuMachine(tmp_path / "out", tmp_path / "tmp", "run-box-vm", CompositeLogger([]))
    for generation, names in SURFACE["attributes"].items():
        missing = [name for name in names if not hasattr(machine, name)]
        assert missing == [], f"{generation} attributes missing: {missing}"


def test_the_namespace_has_every_upstream_name(tmp_path: Path) -> None:
    with Driver([], "", tmp_path / "out", CompositeLogger([]), tmp_dir=tmp_path / "tmp") as driver:
        symbols = driver.test_symbols()
    for generation, names in SURFACE["test_symbols"].items():
        assert [name for name in names if name not in symbols] == [], generation
    problems = [
        problem
        for name, generations in SURFACE["namespace_functions"].items()
        for generation, params in generations.items()
        for problem in signature_problems(f"{name} ({generation})", symbols[name], params,
                                          SURFACE["spellings"], SURFACE["timeout_parameters"])
    ]
    assert problems == []


def test_what_is_not_provided_is_upstream_api_and_really_absent() -> None:
    for name in SURFACE["not_provided"]:
        assert name in SURFACE["methods"] and not hasattr(QemuMachine, name), name


# -- negative controls: the check fails when the surface shrinks ------------------------------

class WithoutSwitchRoot(QemuMachine):
    switch_root = None  # type: ignore[assignment]  # the method removed


class NarrowerWaits(QemuMachine):
    def wait_until_succeeds(self, command: str) -> str:  # type: ignore[override]  # timeout dropped
        return command

    def wait_for_file(self, filename: str, timeout: int = 900) -> None:  # type: ignore[override]
        """int only: no timedelta."""

    def send_key(self, key: str, delay: float | None = 0.5, log: bool = True) -> None:
        """A different default."""


def test_a_removed_method_fails_the_check() -> None:
    problems = class_problems(WithoutSwitchRoot, SURFACE)
    assert problems and all("switch_root" in problem for problem in problems)
    assert "WithoutSwitchRoot.switch_root (2026): missing" in problems[-1]


def test_a_narrower_signature_fails_the_check() -> None:
    problems = "\n".join(class_problems(NarrowerWaits, SURFACE))
    assert "wait_until_succeeds (2026): no parameter 'timeout'" in problems
    assert "wait_for_file (2026): 'timeout' does not take timedelta timeouts" in problems
    assert "send_key (2025): 'delay' defaults to 0.5, upstream 0.01" in problems


def test_a_method_upstream_adds_fails_the_check() -> None:
    grown = copy.deepcopy(SURFACE)
    grown["methods"]["wait_for_everything"] = {"2026": [["timeout", {"default": 900}]]}
    grown["test_symbols"]["2026"].append("containers")
    assert class_problems(QemuMachine, grown) == [
        "QemuMachine.wait_for_everything (2026): missing (not callable: None)"
    ]


def test_the_name_check_knows_every_namespace_name(tmp_path: Path) -> None:
    """The pre-boot name check (runtime/namespace.py) and test_symbols list the same driver names."""
    with Driver([], "", tmp_path / "out", CompositeLogger([]), tmp_dir=tmp_path / "tmp") as driver:
        symbols = set(driver.test_symbols())
    assert symbols == namespace_names([], [])
