"""The helpers under each pinned driver revision, on each kind of node it has (tests/unit/fake_drivers.py).

Timeouts: every helper takes int, float or timedelta, and hands the driver the form that
revision takes without a warning (int seconds for nixos-25.11 and 26.05, a timedelta for
nixos-unstable), through ``machine_api.driver_timeout``; what the helpers return is unchanged.
Containers: what an ``NspawnMachine`` lacks fails in the helpers with the machine's name and
kind, never an AttributeError. Negative controls show the fakes keep their revision's rules.
"""

from __future__ import annotations

import ast
import contextlib
import socket
import subprocess
import sys
import time
import types
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from vmtest import health, logs
from vmtest.machine_api import (
    UnsupportedOnMachine,
    accepts_timedelta,
    copy_from_machine,
    describe,
    driver_timeout,
    machine_kind,
    require_method,
    run,
)
from vmtest.reporting.report import Report
from vmtest.waiting import CLOCK_SHELL, Timeout, retry, until_changed

from .api_surface import pinned
from .fake_drivers import BASH, REVISIONS, Nixos2511, Nixos2605, NixosUnstable

SURFACE = pinned()
SRC = Path(__file__).resolve().parents[2] / "src" / "vmtest"
KINDS = [(revision, kind) for revision, kinds in REVISIONS.items() for kind in kinds]
TIMEOUTS: dict[str, Timeout] = {"int": 5, "float": 4.5, "timedelta": timedelta(seconds=5)}


def make(revision: str, kind: str, root: Path) -> Any:
    return REVISIONS[revision][kind]("box" if kind == "container" else "server", root)


def expected_form(revision: str) -> type:
    return timedelta if revision == "nixos-unstable" else int


@contextlib.contextmanager
def no_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    assert [str(w.message) for w in caught] == []


@contextlib.contextmanager
def listening() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


# -- the timeout rule ----------------------------------------------------------------------------

def test_the_pinned_revisions_are_the_ones_faked() -> None:
    assert list(REVISIONS) == list(SURFACE["revisions"])
    for revision, kinds in REVISIONS.items():
        assert {cls.__name__ for cls in kinds.values()} <= set(SURFACE["revisions"][revision]["classes"].values())


@pytest.mark.parametrize(("revision", "kind"), KINDS)
def test_driver_timeout_gives_each_revision_its_form(revision: str, kind: str, tmp_path: Path) -> None:
    machine = make(revision, kind, tmp_path)
    assert accepts_timedelta(machine) is (revision == "nixos-unstable")
    for given, seconds in ((5, 5), (4.5, 5), (0.2, 1), (timedelta(minutes=2), 120), (timedelta(milliseconds=1500), 2)):
        wanted = timedelta(seconds=seconds) if revision == "nixos-unstable" else seconds
        assert driver_timeout(machine, given) == wanted
        assert type(driver_timeout(machine, given)) is expected_form(revision)
    assert type(driver_timeout(machine, 5, method="wait_for_unit")) is expected_form(revision)


@pytest.mark.parametrize(("revision", "kind"), KINDS)
@pytest.mark.parametrize("form", list(TIMEOUTS))
def test_a_port_wait_takes_every_form_and_warns_nowhere(revision: str, kind: str, form: str, tmp_path: Path) -> None:
    machine = make(revision, kind, tmp_path)
    short = timedelta(milliseconds=200) if form == "timedelta" else 0.2
    with listening() as port, no_warnings():
        waited = health.wait_for_tcp_port(machine, port, timeout=TIMEOUTS[form])
        assert isinstance(waited, float) and waited < 4
        with pytest.raises(health.HealthCheckFailed, match=r"timed out .*\(timeout 0\.20 s"):
            health.wait_for_tcp_port(machine, port, closed=True, timeout=short)
    assert {type(value) for _, value in machine.timeouts} == {expected_form(revision)}


@pytest.mark.parametrize(("revision", "kind"), KINDS)
@pytest.mark.parametrize("form", list(TIMEOUTS))
def test_log_collection_takes_every_form(revision: str, kind: str, form: str, tmp_path: Path) -> None:
    machine = make(revision, kind, tmp_path / "m")
    machine.console = "[    0.000000] Linux version 6.12\n"
    with no_warnings():
        collected = logs.collect_logs(machine, [logs.command("hello.txt", "echo hello from $0")],
                                      out_dir=tmp_path, dest="logs", timeout=TIMEOUTS[form])
    assert (tmp_path / "logs" / "hello.txt").read_text().startswith("hello from")
    assert {type(value) for _, value in machine.timeouts} == {expected_form(revision)}
    serial = {c.source.name: c for c in collected}["serial.log"]
    if kind == "vm":
        assert serial.error is None and (tmp_path / "logs" / "serial.log").read_text().startswith("[    0.0")
    else:
        assert serial.path is None and serial.error is not None
        assert "container box (NspawnMachine)" in serial.error and "get_console_log()" in serial.error


@pytest.mark.parametrize(("revision", "kind"), KINDS)
def test_an_expired_timeout_is_status_124_on_every_kind(revision: str, kind: str, tmp_path: Path) -> None:
    machine = make(revision, kind, tmp_path)
    started = time.monotonic()
    status, _ = run(machine, "sleep 5", 1)
    assert status == 124 and time.monotonic() - started < 4


def test_retry_takes_every_revisions_call() -> None:
    calls: list[bool] = []

    def check(last_try: bool) -> bool:
        calls.append(last_try)
        return True

    retry(check, 5)  # nixos-25.11, -26.05, -unstable: positional
    retry(check, timeout=timedelta(seconds=5))  # nixos-25.11 and -unstable
    retry(check, timeout_seconds=4.5)  # nixos-26.05 (deprecated in -unstable)
    retry(check, None, timedelta(seconds=5))  # -unstable's order: timeout_seconds=None, timeout=…
    assert calls == [False] * 4


# -- negative controls: the fakes keep their revision's rules ------------------------------------

def test_a_timedelta_breaks_an_int_driver_and_a_number_warns_on_unstable(tmp_path: Path) -> None:
    old = Nixos2511.Machine("old", tmp_path / "a")
    status, _ = old.execute("true", timeout=timedelta(seconds=5))  # type: ignore[arg-type]
    assert status == 125, "timeout(1) refuses '0:00:05': why the 2025 and 26.05 drivers get ints"
    assert old.execute("true", timeout=driver_timeout(old, timedelta(seconds=5)))[0] == 0  # type: ignore[arg-type]
    new = NixosUnstable.QemuMachine("new", tmp_path / "b")
    with pytest.warns(UserWarning, match=r"execute\(\): passing a bare int/float as a duration is deprecated"):
        new.execute("true", timeout=5)
    with no_warnings():
        assert new.execute("true", timeout=driver_timeout(new, 5))[0] == 0


def test_a_container_raises_where_a_vm_says_124(tmp_path: Path) -> None:
    box = Nixos2605.NspawnMachine("box", tmp_path)
    with pytest.raises(subprocess.TimeoutExpired):
        box.execute("sleep 5", timeout=1)
    assert run(box, "sleep 5", 1)[0] == 124  # type: ignore[arg-type]


def test_the_driver_version_decides_when_nothing_is_annotated(monkeypatch: pytest.MonkeyPatch) -> None:
    def execute(self: object, command: str, check_return: bool = True, check_output: bool = True,
                timeout: object = None) -> tuple[int, str]:
        return 0, ""

    del execute.__annotations__["timeout"]
    bare = type("QemuMachine", (), {"execute": execute, "__module__": "test_driver.machine"})()
    assert driver_timeout(bare, 5) == 5, "no annotation, no test_driver.duration: ints, as before #542374"
    durations = types.ModuleType("test_driver.duration")
    durations.Duration = timedelta | int | float  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "test_driver.duration", durations)
    assert driver_timeout(bare, 5) == timedelta(seconds=5), "a driver with test_driver.duration takes timedeltas"


def test_an_annotation_that_cannot_be_resolved_is_read_as_text() -> None:
    def execute(self: object, command: str, check_return: bool = True, check_output: bool = True,
                timeout: object = None) -> tuple[int, str]:
        return 0, ""

    execute.__annotations__["timeout"] = "Duration | None"  # a name this module does not have
    unresolved = type("QemuMachine", (), {"execute": execute, "__module__": "elsewhere"})()
    assert accepts_timedelta(unresolved)
    execute.__annotations__["timeout"] = "int | None"
    assert not accepts_timedelta(unresolved)


# -- containers: what they lack fails with the machine's name and kind ----------------------------

@pytest.mark.parametrize("cls", [Nixos2605.NspawnMachine, NixosUnstable.NspawnMachine])
def test_a_container_without_a_console_fails_with_its_name_and_kind(cls: type, tmp_path: Path) -> None:
    box = cls("box", tmp_path)
    assert machine_kind(box) == "container" and describe(box) == "container box (NspawnMachine)"
    with pytest.raises(AttributeError):
        box.get_console_log  # noqa: B018 - the control: the fake really lacks it, as upstream's does
    with pytest.raises(UnsupportedOnMachine) as raised:
        logs.copy_console_log(box, tmp_path, logs.Redactor())
    assert not isinstance(raised.value, AttributeError)
    assert str(raised.value) == ("copying the serial console log needs get_console_log(), which the container box "
                                 "(NspawnMachine) does not have")


def test_unstables_container_has_a_keyboard_and_a_screen_but_26_05s_has_not(tmp_path: Path) -> None:
    old, new = Nixos2605.NspawnMachine("box", tmp_path / "a"), NixosUnstable.NspawnMachine("box", tmp_path / "b")
    require_method(new, "send_key", "typing")("ret")
    with pytest.raises(UnsupportedOnMachine, match=r"typing needs send_key\(\), which the container box"):
        require_method(old, "send_key", "typing")
    for revision, lacks in SURFACE["container_lacks"].items():
        box = REVISIONS[revision]["container"]("box", tmp_path / revision)
        assert [name for name in lacks if hasattr(box, name)] == [], revision


@pytest.mark.parametrize(("revision", "kind"), KINDS)
def test_a_vm_is_a_vm(revision: str, kind: str, tmp_path: Path) -> None:
    machine = make(revision, kind, tmp_path)
    assert machine_kind(machine) == kind
    if kind == "vm":
        assert describe(machine) == f"VM server ({type(machine).__name__})"
        assert require_method(machine, "get_console_log", "x")() == ""


def test_the_deprecated_machine_alias_is_seen_through_without_warnings(tmp_path: Path) -> None:
    box = NixosUnstable.NspawnMachine("box", tmp_path)
    alias = NixosUnstable.MachineDeprecationWrapper("use the name", box)
    with no_warnings():
        assert machine_kind(alias) == "container" and describe(alias) == "container box (NspawnMachine)"
        assert driver_timeout(alias, 5) == timedelta(seconds=5)
    with pytest.warns(UserWarning, match="invoking 'NspawnMachine.name' is deprecated"):
        assert alias.name == "box"  # the control: the wrapper warns on what it forwards


@pytest.mark.parametrize(("revision", "kind"), KINDS)
def test_copying_out_uses_each_revisions_name(revision: str, kind: str, tmp_path: Path) -> None:
    machine = make(revision, kind, tmp_path / "m")
    source = tmp_path / "result.xml"
    source.write_text("<testsuites/>")
    with no_warnings():  # never the deprecated copy_from_vm where copy_from_machine exists
        copy_from_machine(machine, str(source), "junit")
    assert (machine.out_dir / "junit" / "result.xml").read_text() == "<testsuites/>"


def test_copying_out_of_a_machine_that_cannot_fails_clearly() -> None:
    neither = types.SimpleNamespace(name="odd")
    with pytest.raises(UnsupportedOnMachine, match=r"copy_from_machine\(\) or copy_from_vm\(\), which the VM odd"):
        copy_from_machine(neither, "/x")  # type: ignore[arg-type]


def test_no_helper_calls_what_a_container_lacks_except_through_require_method() -> None:
    """Every helper reaching a VM-only method asks ``require_method``, which names the machine and kind."""
    vm_only = {name for names in SURFACE["container_lacks"].values() for name in names}
    direct, required = [], set()
    for path in sorted(SRC.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in vm_only:
                direct.append(f"{path.name}:{node.lineno}: .{node.attr}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "require_method"
                    and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)):
                required.add(node.args[1].value)
    assert direct == []
    assert required == {"get_console_log"}


def test_the_guard_finds_a_direct_call(tmp_path: Path) -> None:
    tree = ast.parse("def grab(machine):\n    machine.screenshot('x')\n")
    found = [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
             and node.attr in SURFACE["container_lacks"]["nixos-26.05"]]
    assert found == ["screenshot"]


# -- reports: a container boots with its systemd, on the host's kernel ----------------------------

class _Canned:
    name = "box"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def is_up(self) -> bool:
        return True

    def nested(self, msg: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def log(self, msg: str) -> None:
        pass

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: Any = 900) -> tuple[int, str]:
        return 0, next((text for prefix, text in self.answers.items() if command.startswith(prefix)), "")

    def succeed(self, *commands: str, timeout: Any = None) -> str:
        return self.execute(commands[0])[1]


class NspawnMachine(_Canned):
    """Named as upstream's container class."""


class QemuMachine(_Canned):
    """The control: the same answers from a VM."""


def test_a_containers_report_has_its_kind_and_a_boot_from_its_systemd(tmp_path: Path) -> None:
    answers = {"uname -m": "x86_64\n", "systemd-detect-virt": "systemd-nspawn\n",
               "read -r vmtest_up": "1000.00\n",  # the host's uptime: the container shares its kernel
               "systemctl show --value -p UserspaceTimestampMonotonic": "990000000\n",
               "systemctl show --value -p FinishTimestampMonotonic": "994000000\n"}
    record = Report(tmp_path).observe_machine(NspawnMachine(answers))  # type: ignore[arg-type]
    assert record["kind"] == "container" and record["accelerator"] == "none"
    assert "container (systemd-nspawn)" in record["accelerator_reason"]
    assert record["boot"]["seconds"] == 4.0 and record["boot"]["started_at_s"] == pytest.approx(-10.0, abs=0.5)
    vm = Report(tmp_path / "vm").observe_machine(QemuMachine({**answers, "systemd-detect-virt": "qemu\n"}))  # type: ignore[arg-type]
    assert vm["kind"] == "vm" and vm["accelerator"] == "tcg"
    assert vm["boot"]["seconds"] == 994.0, "a VM's boot counts from its kernel's start"


# -- a container's shell: NixOS's /bin/sh is bash in POSIX mode ---------------------------------------

def test_the_guest_loops_run_in_a_containers_posix_shell() -> None:
    script = until_changed("echo changed", "", 5, "sleep 30", 0.2)
    started = time.monotonic()
    done = subprocess.run(["sh", "-c", f"set -eo pipefail; set -u; {script}"], executable=BASH,
                          capture_output=True, text=True, timeout=20, check=False)
    assert (done.returncode, done.stdout) == (0, "changed") and time.monotonic() - started < 3
    clock = subprocess.run(["sh", "-c", CLOCK_SHELL + 'vmtest_clock; echo "$vmtest_now"'], executable=BASH,
                           capture_output=True, text=True, check=True)
    assert abs(int(clock.stdout) / 1000 - time.time()) < 5
