"""docs/reference.md's API table is the one the pinned list makes, the list's explanations name only upstream's API,
and the scan of the integration tests finds the calls (and only those) it should.
"""

from __future__ import annotations

import copy
from pathlib import Path

from ..unit.api_surface import pinned
from . import api_table, readme_tables

SURFACE = pinned()


def test_readme_has_the_table_the_pinned_list_makes() -> None:
    assert api_table.readme_problems() == []


def test_every_upstream_name_has_a_row_and_every_difference_its_why() -> None:
    found = api_table.rows(SURFACE)
    names = [row.name for row in found]
    assert len(names) == len(set(names))
    methods = {f"machine.{method}" for method in SURFACE["methods"]}
    symbols = set().union(*SURFACE["test_symbols"].values())
    assert methods | symbols <= set(names)
    assert {row.status for row in found} == {api_table.AS_UPSTREAM, api_table.DIFFERS, api_table.NOT_PROVIDED}
    assert all(row.how and row.why for row in found if row.status != api_table.AS_UPSTREAM)
    called = {row.name: row.called_by for row in found}
    assert "test_machine_api.py" in called["machine.wait_for_unit"]
    assert called["start_all"], "testScripts call start_all()"


def test_the_explanations_name_only_upstream_api() -> None:
    assert api_table.data_problems(SURFACE) == []


def test_a_name_not_in_every_revision_says_in_which() -> None:
    every = ("nixos-25.11", "nixos-26.05", "nixos-unstable")
    assert api_table.revisions_label(every, every) == ""
    assert api_table.revisions_label(("nixos-25.11",), every) == " (nixos-25.11 only)"
    assert api_table.revisions_label(("nixos-26.05", "nixos-unstable"), every) == " (since nixos-26.05)"
    assert api_table.revisions_label(("nixos-25.11", "nixos-26.05"), every) == " (until nixos-26.05)"
    assert api_table.revisions_label(("nixos-25.11", "nixos-unstable"), every) == " (nixos-25.11, nixos-unstable)"
    labels = {row.name: api_table.revisions_label(row.generations, every) for row in api_table.rows(SURFACE)}
    assert labels["machine.copy_from_machine"] == " (since nixos-26.05)"
    assert labels["machine.wait_for_job"] == " (nixos-25.11 only)"
    assert labels["machine.dump_efi_vars"] == " (nixos-unstable only)"
    assert labels["machine.execute"] == ""


# -- negative controls ---------------------------------------------------------------------------

def test_a_stale_readme_is_detected(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    current = readme_tables.between(api_table.REFERENCE.read_text(), api_table.START, api_table.END)
    grown = copy.deepcopy(SURFACE)
    grown["methods"]["wait_for_everything"] = {"nixos-unstable": []}
    readme.write_text(f"# vmtest\n\n{current}\n")  # the table README has now, against a list that grew
    assert api_table.readme_problems(readme, api_table.generated(grown)) == [
        f"{readme}: the API table is stale: run `python -m tests.repo.api_table --write` in lib/python"]
    assert api_table.readme_problems(readme) == []  # the control: the same copy against today's list
    readme.write_text("# vmtest\n")
    assert "no API table markers" in api_table.readme_problems(readme)[0]


def test_a_misnamed_or_unexplained_difference_is_detected() -> None:
    planted = copy.deepcopy(SURFACE)
    planted["differences"] += [
        {"names": ["machine.wait_for_untt"], "how": "typo in the name", "why": "a planted error"},
        {"names": ["machine.execute"], "how": "said twice", "why": "a planted error"},
        {"names": ["retry"], "how": "calls `machine.wait_for_evrything` and `wait_for_nothing()`",
         "why": "`timeout_secs` is | not a parameter"},
        {"names": ["join_all"], "how": "no why", "why": " "},
    ]
    planted["not_provided"]["release"] = ""
    assert api_table.data_problems(planted) == [
        "not_provided: machine.release says no why",
        "differences: join_all has no 'why'",
        "machine.wait_for_untt: not a name in the pinned upstream list",
        "machine.execute: explained more than once",
        "differences retry: names `wait_for_evrything`, which upstream does not have",
        "differences retry: names `wait_for_nothing`, which upstream does not have",
        "differences retry: '|' would split the table's cell",
        "differences retry: names `timeout_secs`, which upstream does not have",
    ]


def test_the_scan_finds_calls_on_machines_and_in_test_scripts(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text(
        "import time\n"
        "from http.server import HTTPServer\n"
        "from vmtest.portable.runtime.machine import QemuMachine\n\n"
        "BOOTED = 'start_all()\\nmachine.wait_for_unit(\"multi-user.target\")\\n'\n"
        "SCRIPT = BOOTED + f\"alpha.copy_from_host({1!r}, '/x')\\nserial_stdout_off()\\n\"\n\n"
        "def test_direct(machine: QemuMachine, driver) -> None:\n"
        "    machine.succeed('true')\n"
        "    assert driver.machines[0].pid\n"
        "    beta = driver.machines[1]\n"
        "    beta.block()\n"
        "    time.sleep(1)\n"
        "    server = HTTPServer(('127.0.0.1', 0), None)\n"
        "    server.shutdown()\n"
        "    driver.run_tests()\n"
        "    run('echo retry(1)', 'subtest')\n"
    )
    (tmp_path / "test_y.py").write_text("def test_y(vm) -> None:\n    vm.fail('true')\n")
    called = api_table.callers(tmp_path)
    assert {name for name, files in called.items() if files == {"test_x.py"}} >= {
        "start_all", "serial_stdout_off", "machine.wait_for_unit", "machine.copy_from_host", "machine.succeed",
        "machine.pid", "machine.block"}
    # the controls: module and non-machine calls, pytest code's driver calls, a shell string, an untyped name
    for name in ("machine.sleep", "machine.shutdown", "run_tests", "retry", "subtest", "machine.fail"):
        assert name not in called, name
