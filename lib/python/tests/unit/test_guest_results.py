"""Following a detached guest command's results: each once, in order, as written, a line still being
written held back; through the Machine API only (the guest commands run in the host's bash here)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vmtest import guest_results
from vmtest.errors import RequestedAssertionFailed
from vmtest.guest_results import DetachedWorkStopped, follow_results, parse_look, parse_result
from vmtest.progress.events import Event, GuestResult
from vmtest.redaction import Redactor


def result_line(name: str, outcome: str = "passed", seconds: float = 1.5, message: str = "") -> str:
    return json.dumps({"name": name, "outcome": outcome, "seconds": seconds, "message": message}) + "\n"


class LocalMachine:
    """A Machine whose commands run in the host's bash; ``before_look`` runs before each command."""

    name = "client"

    def __init__(self, out_dir: Path, before_look: Callable[[int], None] = lambda call: None) -> None:
        self.out_dir = out_dir
        self.shared_dir = out_dir
        self.before_look = before_look
        self.calls = 0
        self.logged: list[str] = []
        self.sections: list[str] = []

    def is_up(self) -> bool:
        return True

    def get_console_log(self) -> str:
        return ""

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: Any = 900) -> tuple[int, str]:
        self.before_look(self.calls)
        self.calls += 1
        done = subprocess.run(["bash", "-c", f"set -euo pipefail; {command}"], capture_output=True, text=True,
                              timeout=120, check=False)
        return done.returncode, done.stdout

    def succeed(self, *commands: str, timeout: Any = None) -> str:
        return "".join(self.execute(command)[1] for command in commands)

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: Any = 900) -> None:
        raise NotImplementedError

    def wait_until_succeeds(self, command: str, timeout: Any = 900) -> str:
        raise NotImplementedError

    def log(self, msg: str) -> None:
        self.logged.append(msg)

    def nested(self, msg: str) -> contextlib.AbstractContextManager[None]:
        self.sections.append(msg)
        return contextlib.nullcontext()


class ProgressMachine(LocalMachine):
    """Like the portable runtime's machines: results go to ``show_progress``."""

    def __init__(self, out_dir: Path, before_look: Callable[[int], None] = lambda call: None) -> None:
        super().__init__(out_dir, before_look)
        self.shown: list[Event] = []

    def show_progress(self, event: Event) -> None:
        self.shown.append(event)


def writes(results: Path, done: Path, steps: list[str | None]) -> Callable[[int], None]:
    """Before look N, append steps[N] to ``results`` (None: write ``done``)."""
    def before(call: int) -> None:
        if call >= len(steps):
            return
        if steps[call] is None:
            done.write_text("0\n")
        else:
            with results.open("a") as out:
                out.write(steps[call] or "")
    return before


def test_results_logged_through_the_driver_are_redacted(tmp_path: Path) -> None:
    results, done = tmp_path / "results.jsonl", tmp_path / "exit-status"
    machine = LocalMachine(tmp_path, writes(results, done, [
        result_line("test_login", "failed", 2.0, "wrong password hunter2-Zq81"), None]))
    redactor = Redactor(["hunter2-Zq81"])
    follow_results(machine, str(results), str(done), timeout=60, slice_seconds=1, redact=redactor.redact)
    assert machine.logged == ["FAIL test_login (2.00 s): wrong password [REDACTED]"]


def test_each_result_once_in_order_a_partial_line_held_back(tmp_path: Path) -> None:
    results, done = tmp_path / "results.jsonl", tmp_path / "exit-status"
    second = result_line("test_b", "failed", 40.0, "TimeoutError: Locator.click: Timeout\n  second line")
    machine = LocalMachine(tmp_path, writes(results, done, [
        "",  # the file exists, nothing in it yet
        result_line("test_a") + second[:17],  # test_b's line half written
        second[17:] + result_line("test_c", "skipped", 0.0, "no voice here"),
        None,
    ]))
    followed = follow_results(machine, str(results), str(done), timeout=60, slice_seconds=1)
    assert [(result.name, result.outcome) for result in followed.results] == [
        ("test_a", "passed"), ("test_b", "failed"), ("test_c", "skipped")]
    assert followed.results[1] == GuestResult("client", "test_b", "failed", 40.0,
                                              "TimeoutError: Locator.click: Timeout")
    assert machine.logged == ["PASS test_a (1.50 s)", "FAIL test_b (40.0 s): TimeoutError: Locator.click: Timeout",
                              "SKIP test_c (0.00 s): no voice here"], "the driver's log, once each"
    assert followed.unreadable == []
    assert machine.sections == [f"waiting for file {done}, following {results}"]


def test_a_machine_with_a_progress_display_gets_the_results_there(tmp_path: Path) -> None:
    results, done = tmp_path / "results.jsonl", tmp_path / "exit-status"
    machine = ProgressMachine(tmp_path, writes(results, done, [result_line("test_a"), None]))
    follow_results(machine, str(results), str(done), timeout=60, slice_seconds=1)
    assert machine.shown == [GuestResult("client", "test_a", "passed", 1.5)]
    assert machine.logged == []


def test_results_reach_the_host_while_the_work_runs(tmp_path: Path) -> None:
    results, done = tmp_path / "results.jsonl", tmp_path / "exit-status"
    written: list[float] = []

    def work() -> None:  # the detached guest command: a result every 0.6 s, each line in two writes
        for number in range(4):
            line = result_line(f"test_{number}")
            with results.open("a") as out:
                out.write(line[:10])
                out.flush()
                time.sleep(0.2)
                out.write(line[10:])
            written.append(time.monotonic())
            time.sleep(0.4)
        done.write_text("0\n")

    machine = ProgressMachine(tmp_path)
    arrived: list[float] = []
    machine.show_progress = lambda event: (arrived.append(time.monotonic()), machine.shown.append(event))  # type: ignore[method-assign]
    writer = threading.Thread(target=work)
    writer.start()
    followed = follow_results(machine, str(results), str(done), timeout=60, slice_seconds=5)
    writer.join()
    assert [result.name for result in followed.results] == ["test_0", "test_1", "test_2", "test_3"]
    assert arrived[0] < written[-1], "the first result was on the host before the work ended"
    assert all(seen >= wrote for seen, wrote in zip(arrived, written, strict=True))


def test_a_wrong_results_file_yields_nothing(tmp_path: Path) -> None:
    # Negative control: the results above come from the file, not from anywhere else.
    results, done = tmp_path / "results.jsonl", tmp_path / "exit-status"
    machine = LocalMachine(tmp_path, writes(results, done, [result_line("test_a"), None]))
    followed = follow_results(machine, str(tmp_path / "other.jsonl"), str(done), timeout=60, slice_seconds=1)
    assert followed.results == [] and machine.logged == []


def test_a_line_that_is_no_result_is_reported_not_announced(tmp_path: Path) -> None:
    results, done = tmp_path / "results.jsonl", tmp_path / "exit-status"
    machine = LocalMachine(tmp_path, writes(results, done, ["Traceback (most recent call last):\n", None]))
    followed = follow_results(machine, str(results), str(done), timeout=60, slice_seconds=1)
    assert followed.results == [] and followed.unreadable == ["Traceback (most recent call last):"]
    assert machine.logged == [f"{results}: not a result line: 'Traceback (most recent call last):'"]


def test_work_that_stops_without_its_done_file_is_an_error(tmp_path: Path) -> None:
    results, done = tmp_path / "results.jsonl", tmp_path / "exit-status"
    machine = LocalMachine(tmp_path, writes(results, done, [result_line("test_a")]))
    with pytest.raises(DetachedWorkStopped, match=r"stopped without writing .*exit-status.*1 result\(s\) so far"):
        follow_results(machine, str(results), str(done), timeout=60, alive="false", slice_seconds=1)


def test_a_live_check_that_holds_keeps_waiting_until_the_timeout(tmp_path: Path) -> None:
    results, done = tmp_path / "results.jsonl", tmp_path / "exit-status"
    machine = LocalMachine(tmp_path)
    started = time.monotonic()
    with pytest.raises(RequestedAssertionFailed, match=r"client: timed out waiting for file .*exit-status after"):
        follow_results(machine, str(results), str(done), timeout=2, alive="true", slice_seconds=1)
    assert time.monotonic() - started >= 2


def test_what_a_look_prints() -> None:
    end = guest_results._END
    assert parse_look(f"running\n{end}") == guest_results.Look("running", [], "")
    look = parse_look(f'running\n{{"a": 1}}\n{{"b":{end}')
    assert look == guest_results.Look("running", ['{"a": 1}'], '{"b":')
    assert look.unchanged == f'running\n{{"b":{end}'
    assert parse_look("running\n{\"a\": 1}\n") is None, "cut short: no end marker"


def test_a_result_line() -> None:
    assert parse_result("box", result_line("t", "error", 2.0, "boom\nmore")) == GuestResult("box", "t", "error", 2.0,
                                                                                           "boom")
    assert parse_result("box", '{"name": "t"}') is None
    assert parse_result("box", "not json") is None
