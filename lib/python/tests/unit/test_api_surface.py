"""vmtest's Machine API and testScript namespace cover upstream's, per nixpkgs revision, as pinned in
data/upstream_api.json.

The pinned list was written by reading the upstream files it names, per revision (nixos-25.11,
nixos-26.05, nixos-unstable); vmtest may add methods and defaulted parameters, never lack one,
except for what the list's ``not_provided`` says it lacks and ``portable_pending`` says the
portable runtime does not take yet.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

from vmtest.portable.runtime.driver import Driver
from vmtest.portable.runtime.driver_log import CompositeLogger
from vmtest.portable.runtime.machine import QemuMachine
from vmtest.portable.runtime.namespace import namespace_names

from .api_surface import class_problems, pinned, revision_changes, revisions, signature_problems, unexplained_changes

SURFACE = pinned()
PENDING = SURFACE["portable_pending"]
REVISIONS = revisions(SURFACE)


def _symbols(tmp_path: Path) -> dict[str, Any]:
    with Driver([], "", tmp_path / "out", CompositeLogger([]), tmp_dir=tmp_path / "tmp") as driver:
        return driver.test_symbols()


def _pending_message(kind: str, extra: list[str], gone: list[str]) -> str:
    return (f"{kind}: not in portable_pending: {extra}; pending but no longer a problem (remove them from "
            f"portable_pending in tests/unit/data/upstream_api.json): {gone}")


def test_the_revisions_are_the_release_channels_in_order() -> None:
    assert REVISIONS == ["nixos-25.11", "nixos-26.05", "nixos-unstable"]
    for revision, facts in SURFACE["revisions"].items():
        assert facts["release"] and facts["files"], revision
        for read in facts["files"]:
            assert len(read["commit"]) == 40 and read["path"].startswith("nixos/"), (revision, read)
    for section in ("methods", "namespace_functions"):
        for name, by_revision in SURFACE[section].items():
            assert list(by_revision) == [r for r in REVISIONS if r in by_revision], (section, name)
    for section in ("attributes", "test_symbols"):
        assert list(SURFACE[section]) == REVISIONS, section


def test_qemu_machine_has_every_upstream_method_and_parameter() -> None:
    problems = class_problems(QemuMachine, SURFACE)
    extra = [problem for problem in problems if problem not in PENDING["machine"]]
    gone = [problem for problem in PENDING["machine"] if problem not in problems]
    assert (extra, gone) == ([], []), _pending_message("QemuMachine", extra, gone)


def test_every_revision_but_the_pending_one_is_complete() -> None:
    """What is pending is nixos-unstable's alone: 25.11 and 26.05 are whole."""
    assert class_problems(QemuMachine, SURFACE, only=["nixos-25.11", "nixos-26.05"]) == []
    assert all("(nixos-unstable)" in problem for problem in PENDING["machine"] + PENDING["namespace_functions"])


def test_qemu_machine_has_every_upstream_attribute(tmp_path: Path) -> None:
    machine = QemuMachine(tmp_path / "out", tmp_path / "tmp", "run-box-vm", CompositeLogger([]))
    for revision, names in SURFACE["attributes"].items():
        missing = [name for name in names if not hasattr(machine, name) and name not in SURFACE["not_provided"]]
        assert missing == [], f"{revision} attributes missing: {missing}"


def test_the_namespace_has_every_upstream_name(tmp_path: Path) -> None:
    symbols = _symbols(tmp_path)
    for revision, names in SURFACE["test_symbols"].items():
        missing = [name for name in names if name not in symbols and name not in SURFACE["not_provided"]]
        assert missing == [], f"{revision} names missing: {missing}"
    problems = [
        problem
        for name, by_revision in SURFACE["namespace_functions"].items()
        for revision, params in by_revision.items()
        for problem in signature_problems(f"{name} ({revision})", symbols[name], params,
                                          SURFACE["spellings"], SURFACE["timeout_parameters"])
    ]
    extra = [problem for problem in problems if problem not in PENDING["namespace_functions"]]
    gone = [problem for problem in PENDING["namespace_functions"] if problem not in problems]
    assert (extra, gone) == ([], []), _pending_message("namespace functions", extra, gone)


def test_what_is_not_provided_is_upstream_api_and_really_absent(tmp_path: Path) -> None:
    machine = QemuMachine(tmp_path / "out", tmp_path / "tmp", "run-box-vm", CompositeLogger([]))
    attributes = {name for names in SURFACE["attributes"].values() for name in names}
    symbols = _symbols(tmp_path)
    for name in SURFACE["not_provided"]:
        if name in SURFACE["methods"] or name in attributes:
            assert not hasattr(machine, name), name
        else:  # a testScript name
            assert any(name in names for names in SURFACE["test_symbols"].values()), name
            assert name not in symbols, name


def test_what_a_container_lacks_is_upstream_api_of_that_revision() -> None:
    assert set(SURFACE["container_lacks"]) == {"nixos-26.05", "nixos-unstable"}, "25.11 has no containers"
    for revision, names in SURFACE["container_lacks"].items():
        unknown = [name for name in names if revision not in SURFACE["methods"].get(name, {})]
        assert unknown == [], (revision, unknown)
    # 26.05's container has no console, keyboard or screen; unstable's gained keyboard and screen over X11.
    lacks = {revision: set(names) for revision, names in SURFACE["container_lacks"].items()}
    assert {"get_console_log", "send_key", "screenshot"} <= lacks["nixos-26.05"]
    assert "get_console_log" in lacks["nixos-unstable"] and not {"send_key", "screenshot"} & lacks["nixos-unstable"]


def test_every_change_between_revisions_is_said() -> None:
    assert unexplained_changes(SURFACE) == []
    changed = revision_changes(SURFACE, "nixos-25.11", "nixos-26.05")
    assert changed["copy_from_machine"] == "added" and changed["wait_for_job"] == "removed"
    assert changed["Machine"] == "removed" and changed["BaseMachine"] == "added"
    changed = revision_changes(SURFACE, "nixos-26.05", "nixos-unstable")
    assert changed["execute"] == changed["sleep"] == changed["retry"] == "changed"
    assert changed["dump_efi_vars"] == "added" and changed["NspawnMachine"] == "added"


# -- negative controls: the checks fail when the surface shrinks or a change goes unsaid -------------

class WithoutSwitchRoot(QemuMachine):
    switch_root = None  # type: ignore[assignment]  # the method removed


class NarrowerWaits(QemuMachine):
    def wait_until_succeeds(self, command: str) -> str:  # type: ignore[override]  # timeout dropped
        return command

    def wait_for_file(self, filename: str, timeout: int = 900) -> None:  # type: ignore[override]
        """int only: no timedelta."""

    def send_key(self, key: str, delay: float | None = 0.5, log: bool = True) -> None:
        """A different default."""


def _not_pending(problems: list[str], cls: type) -> list[str]:
    return [p for p in problems if p.replace(cls.__name__, "QemuMachine", 1) not in PENDING["machine"]]


def test_a_removed_method_fails_the_check() -> None:
    problems = _not_pending(class_problems(WithoutSwitchRoot, SURFACE), WithoutSwitchRoot)
    assert problems and all("switch_root" in problem for problem in problems)
    assert "WithoutSwitchRoot.switch_root (nixos-unstable): missing" in problems[-1]


def test_a_narrower_signature_fails_the_check() -> None:
    problems = "\n".join(class_problems(NarrowerWaits, SURFACE))
    assert "wait_until_succeeds (nixos-26.05): no parameter 'timeout'" in problems
    assert "wait_for_file (nixos-unstable): 'timeout' does not take timedelta timeouts" in problems
    assert "send_key (nixos-25.11): 'delay' defaults to 0.5, upstream 0.01" in problems
    assert "send_key (nixos-unstable): 'delay' defaults to 0.5, upstream datetime.timedelta(microseconds=10000)" \
        in problems


def test_a_method_upstream_adds_fails_the_check() -> None:
    grown = copy.deepcopy(SURFACE)
    grown["methods"]["wait_for_everything"] = {"nixos-unstable": [["timeout", {"default": 900}]]}
    grown["test_symbols"]["nixos-unstable"].append("containers")
    assert [p for p in class_problems(QemuMachine, grown) if p not in PENDING["machine"]] == [
        "QemuMachine.wait_for_everything (nixos-unstable): missing (not callable: None)"
    ]
    assert unexplained_changes(grown) == [
        "nixos-26.05 -> nixos-unstable: containers added, and 'changes' does not say so",
        "nixos-26.05 -> nixos-unstable: wait_for_everything added, and 'changes' does not say so",
    ]


def test_a_default_the_driver_reads_as_seconds_is_checked_as_such() -> None:
    """retry's None in nixos-unstable means 15 minutes: 900 and None pass, 600 does not."""
    def retry_900(fn: object, timeout: int | timedelta = 900, timeout_seconds: int | timedelta | None = None) -> None:
        """nixos-unstable's defaults, as the seconds they stand for."""

    def retry_600(fn: object, timeout: int | timedelta = 600, timeout_seconds: int | timedelta | None = None) -> None:
        """A different default."""

    unstable = SURFACE["namespace_functions"]["retry"]["nixos-unstable"]
    args = (SURFACE["spellings"], SURFACE["timeout_parameters"])
    assert signature_problems("retry", retry_900, unstable, *args) == []
    assert signature_problems("retry", retry_600, unstable, *args) == [
        "retry: 'timeout_seconds' defaults to 600, upstream None"]


def test_the_name_check_knows_every_namespace_name(tmp_path: Path) -> None:
    """The pre-boot name check (runtime/namespace.py) and test_symbols list the same driver names."""
    assert set(_symbols(tmp_path)) == namespace_names([], [])
