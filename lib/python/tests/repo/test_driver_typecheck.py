"""This repository's testScripts pass each pinned driver revision's own type check (tests/repo/driver_stubs.py).

Per revision (nixos-25.11, nixos-26.05, nixos-unstable): the header that revision's driver
prepends (its prelude, a line per node, one per VLAN) over every testScript, with typing
stand-ins of that revision's ``test_driver`` made from the pinned list, checked with mypy and
the driver's options; vmtest is seen through its ``py.typed``. A container node (2026) is
checked too: the helpers take an ``NspawnMachine``. ty, nixos-26.05's checker, runs as well
when it is installed; mypy runs always. The negative controls show the stand-ins differ by
revision as upstream does, and that the check fails where it should.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mypy import api

from ..unit.api_surface import pinned, revisions
from . import driver_stubs
from .repo_checks import REPO

SURFACE = pinned()
REVISIONS = revisions(SURFACE)
# testScript -> (its VM nodes, the line its Nix side puts first: lib/nix/*.nix, `prelude + script`)
SCRIPTS = {
    "e2e-test/test_script.py": (["server", "client"], 'VMTEST_E2E = "{}"\n'),
    "tests/vm/boot.py": (["vm"], 'VMTEST_EXPECTATIONS = "{}"\n'),
    "tests/vm/services.py": (["vm"], 'VMTEST_EXPECTATIONS = "{}"\n'),
    "tests/vm/integration.py": (["vm", "peer"], 'VMTEST_EXPECTATIONS = "{}"\n'),
}
# A testScript with a container node: what 2026 drivers allow; the helpers must take it.
CONTAINER_SCRIPT = """\
from datetime import timedelta

from vmtest import health, logs
from vmtest.machine_api import copy_from_machine, driver_timeout
from vmtest.reporting.report import Report

start_all()
box.wait_for_unit("multi-user.target", timeout=driver_timeout(box, timedelta(minutes=2), "wait_for_unit"))
chain = health.wait_for_unit_chain(box, ["postgresql.service", "app.service"], timeout=timedelta(minutes=5))
health.wait_for_http(box, "http://127.0.0.1:8080/health", timeout=60.0)
report = Report(driver.out_dir, name="containers")
report.observe_machine(box)
report.observe_machine(server)
logs.collect_logs(box, dest="logs/box")
copy_from_machine(box, "/var/log/app")
"""


def _typecheck(revision: str, files: dict[str, str], root: Path) -> dict[str, str]:
    """mypy over each file (its whole text, header included); returns file -> its errors ('' when clean)."""
    stubs = driver_stubs.write_stubs(SURFACE, revision, root / "stubs")
    config = driver_stubs.mypy_config(root, stubs)
    paths = []
    for name, text in files.items():
        path = root / f"{name}.py"
        path.write_text(text)
        paths.append(str(path))
    stdout, stderr, _ = api.run(["--config-file", str(config), "--no-color-output", "--show-error-codes", *paths])
    found = {name: "" for name in files}
    for line in (stdout + stderr).splitlines():
        match = re.match(rf"{re.escape(str(root))}/([^/:]+)\.py:\d+: error: ", line)
        if match:
            found[match.group(1)] += line.split(": error: ", 1)[1] + "\n"
        elif ": error:" in line:
            raise AssertionError(f"mypy: {line}")
    return found


def _script(path: str) -> str:
    _, nix_prelude = SCRIPTS[path]
    return nix_prelude + (REPO / path).read_text()


def _slug(path: str) -> str:
    return re.sub(r"\W", "_", path.removesuffix(".py"))


@pytest.fixture(scope="module", params=REVISIONS)
def checked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """Every testScript (and, from 2026, the container script) checked as ``revision``'s driver checks it."""
    revision: str = request.param
    files = {_slug(path): driver_stubs.header(revision, SCRIPTS[path][0]) + _script(path) for path in SCRIPTS}
    if revision != "nixos-25.11":
        files["containers"] = driver_stubs.header(revision, ["server"], ["box"]) + CONTAINER_SCRIPT
    return revision, _typecheck(revision, files, tmp_path_factory.mktemp(revision))


def test_every_testscript_passes_each_revisions_type_check(checked: tuple[str, dict[str, str]]) -> None:
    revision, errors = checked
    assert {name: text for name, text in errors.items() if text} == {}, revision


def test_the_nodes_are_the_ones_the_nix_side_declares() -> None:
    """SCRIPTS' nodes and first lines are what lib/nix hands the driver."""
    e2e = (REPO / "lib/nix/web-stack-e2e.nix").read_text()
    validation = (REPO / "lib/nix/vm-validation.nix").read_text()
    assert re.search(r"nodes = \{ inherit server client; \}", e2e) and "VMTEST_E2E" in e2e
    for suite, nodes in (("boot", "vm"), ("services", "vm"), ("integration", "vm peer")):
        assert re.search(rf"\{{ inherit {nodes}; \}} \(builtins\.readFile \.\./\.\./tests/vm/{suite}\.py\)",
                         validation), suite
    assert "VMTEST_EXPECTATIONS" in validation


# -- the header, as each revision writes it --------------------------------------------------------

def test_the_header_is_each_revisions() -> None:
    old = driver_stubs.header("nixos-25.11", ["server", "client"])
    assert old.endswith("server: Machine; client: Machine;\nvlan1: VLan;\n")
    assert "from test_driver.machine import Machine" in old and "def __call__(self, fn: Callable[..., Any], " \
        "timeout: int = 900)" in old
    assert driver_stubs.header("nixos-25.11", ["vm"]).endswith("vm: Machine; machine: Machine;\nvlan1: VLan;\n")
    new = driver_stubs.header("nixos-26.05", ["server"], ["box"])
    # driver.nix counts VMs alone for the `machine` alias (the runtime driver counts containers too).
    assert new.endswith("server = create_fake_qemu_machine()\nmachine = create_fake_qemu_machine()\n"
                        "box = create_fake_nspawn_machine()\nvlan1 = create_fake_vlan()\n")
    assert "from test_driver.machine import BaseMachine, NspawnMachine, QemuMachine" in new
    with pytest.raises(ValueError, match="no containers"):
        driver_stubs.header("nixos-25.11", ["server"], ["box"])


def test_the_stand_ins_follow_the_pinned_list() -> None:
    old = driver_stubs.machine_module(SURFACE, "nixos-25.11")
    assert "class Machine:" in old and "copy_from_machine" not in old
    assert "def execute(self, command: Any, check_return: Any = ..., check_output: Any = ..., " \
        "timeout: int | None = ...)" in old
    mid = driver_stubs.machine_module(SURFACE, "nixos-26.05")
    nspawn = mid.split("class NspawnMachine(BaseMachine):")[1]
    assert "get_console_log" not in mid.split("class QemuMachine(BaseMachine):")[0] and "get_console_log" not in nspawn
    assert "def wait_for_unit(self, unit: Any, user: Any = ..., timeout: int = ...)" in mid
    new = driver_stubs.machine_module(SURFACE, "nixos-unstable")
    assert "timeout: Duration | None = ...) -> tuple[int, str]" in new
    assert "def sleep(self, secs: Duration | None = ..., duration: Duration | None = ...)" in new
    assert "def send_key(" in new.split("class QemuMachine(BaseMachine):")[0], "unstable's containers have keys"


# -- negative controls: each revision's stand-ins refuse what that driver lacks --------------------

NEGATIVE = {
    # name: (script, nodes, containers, {revision: expected error or '' for clean})
    "copy_from_machine": ("server.copy_from_machine('/x')\n", ["server"], [], {
        "nixos-25.11": '"Machine" has no attribute "copy_from_machine"', "nixos-26.05": "", "nixos-unstable": ""}),
    "sleep_duration": ("from datetime import timedelta\nserver.sleep(duration=timedelta(seconds=1))\n",
                       ["server"], [], {
        "nixos-25.11": 'Unexpected keyword argument "duration"',
        "nixos-26.05": 'Unexpected keyword argument "duration"', "nixos-unstable": ""}),
    "timedelta_timeout": ("from datetime import timedelta\nserver.wait_for_unit('x', timeout=timedelta(minutes=1))\n",
                          ["server"], [], {
        "nixos-25.11": 'Argument "timeout" to "wait_for_unit" of "Machine" has incompatible type "timedelta"',
        "nixos-26.05": 'Argument "timeout" to "wait_for_unit" of "BaseMachine" has incompatible type "timedelta"',
        "nixos-unstable": ""}),
    "container_console": ("box.get_console_log()\n", ["server"], ["box"], {
        "nixos-26.05": '"NspawnMachine" has no attribute "get_console_log"',
        "nixos-unstable": '"NspawnMachine" has no attribute "get_console_log"'}),
    # What the helpers' Protocol demanded before issue 26: a console log. A container fails it.
    "console_protocol": ("from typing import Protocol\n\n\nclass WithConsole(Protocol):\n"
                         "    def get_console_log(self) -> str: ...\n\n\n"
                         "def collect(machine: WithConsole) -> None: ...\n\n\ncollect(server)\ncollect(box)\n",
                         ["server"], ["box"], {
        "nixos-26.05": 'Argument 1 to "collect" has incompatible type "NspawnMachine"',
        "nixos-unstable": 'Argument 1 to "collect" has incompatible type "NspawnMachine"'}),
    "misused_helper": ("from vmtest.suites import vm_validation as vv\nvv.check_boot(server, 'not a profile')\n",
                       ["server"], [], {revision: 'Argument 2 to "check_boot" has incompatible type "str"'
                                        for revision in ("nixos-25.11", "nixos-26.05", "nixos-unstable")}),
}


@pytest.mark.parametrize("revision", REVISIONS)
def test_each_revisions_check_refuses_what_that_driver_lacks(revision: str, tmp_path: Path) -> None:
    files = {name: driver_stubs.header(revision, nodes, containers) + script
             for name, (script, nodes, containers, expected) in NEGATIVE.items() if revision in expected}
    errors = _typecheck(revision, files, tmp_path)
    for name, (_, _, _, expected) in NEGATIVE.items():
        if revision not in expected:
            continue
        if expected[revision]:
            assert expected[revision] in errors[name], (name, errors[name])
        else:
            assert errors[name] == "", (name, errors[name])


# -- ty, nixos-26.05's checker, when it is installed ------------------------------------------------

def _ty() -> str | None:
    beside = Path(sys.executable).with_name("ty")
    return str(beside) if beside.exists() else shutil.which("ty")


@pytest.mark.parametrize("revision", ["nixos-26.05", "nixos-unstable"])
def test_ty_accepts_every_testscript_when_installed(revision: str, tmp_path: Path) -> None:
    ty = _ty()
    if ty is None:
        pytest.skip("ty is not installed (the dev extra has it: 26.05's checker); mypy checked the same files")
    stubs = driver_stubs.write_stubs(SURFACE, revision, tmp_path / "stubs")
    paths = []
    for path in SCRIPTS:
        target = tmp_path / f"{_slug(path)}.py"
        target.write_text(driver_stubs.header(revision, SCRIPTS[path][0]) + _script(path))
        paths.append(str(target))
    container = tmp_path / "containers.py"
    container.write_text(driver_stubs.header(revision, ["server"], ["box"]) + CONTAINER_SCRIPT)
    done = subprocess.run([ty, "check", "--python", sys.executable, "--extra-search-path", str(stubs),
                           "--python-version", "3.13", *paths, str(container)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.py"
    broken.write_text(driver_stubs.header(revision, ["server"], ["box"]) + "box.get_console_log()\n")
    refused = subprocess.run([ty, "check", "--python", sys.executable, "--extra-search-path", str(stubs),
                              "--python-version", "3.13", str(broken)], capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "get_console_log" in refused.stdout, refused.stdout
