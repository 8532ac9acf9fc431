"""Progress: the plain renderer's lines and heartbeats, the live renderer over the same events, the source.

Times come from the tests (``handle(event, now)``, an injected clock), never from sleeping.
"""

from __future__ import annotations

import io
import itertools
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from rich.console import Console

from vmtest.portable import cli
from vmtest.portable.runtime.driver_log import CompositeLogger, ProgressLogger, TerminalLogger
from vmtest.progress.events import (
    SCRIPT_SCOPE,
    Began,
    Board,
    Ended,
    Event,
    GuestResult,
    Heartbeat,
    MachineStarted,
    MachineStopped,
    Stepped,
)
from vmtest.progress.live import LiveRenderer
from vmtest.progress.plain import PlainRenderer
from vmtest.progress.source import Progress, beat, resolve_mode, showing_progress

STAMP = re.compile(r"^\[ *([0-9.]+)s\] ")

# A build and a browser run as a timeline: (seconds, event). The build's steps come 20-30 s
# apart and the browser results 15-40 s apart: quiet stretches that only heartbeats fill.
TIMELINE: list[tuple[float, Event]] = [
    (0.0, Began("build", "client image", "building (trixie/amd64)", expected=70.0)),
    (0.5, Stepped("build", "downloading packages with apt", remaining=66.0)),
    (25.0, Stepped("build", "running --customize-hook", remaining=40.0)),
    (52.0, Stepped("build", "instrumentation", done="kernel took 3.1 s", remaining=15.0)),
    (71.0, Ended("build")),
    (72.0, MachineStarted("client")),
    (73.0, Began("wait", "client", "waiting for file /tmp/e2e/exit-status")),
    (90.0, GuestResult("client", "test_smoke.py::test_loads", "passed", 14.2)),
    (130.0, GuestResult("client", "test_smoke.py::test_voice", "failed", 40.0,
                        "TimeoutError: Locator.click: Timeout 45000ms exceeded.")),
    (150.0, Ended("wait")),
    (151.0, MachineStopped("client")),
]


def play(renderer: PlainRenderer | LiveRenderer, *, beats: bool = True, until: float = 160.0) -> None:
    """Feed TIMELINE, with a heartbeat every second in between when ``beats``."""
    events = sorted(TIMELINE + ([(float(second), Heartbeat()) for second in range(int(until))] if beats else []),
                    key=lambda timed: timed[0])
    for now, event in events:
        renderer.handle(event, now)


def stamps(lines: list[str]) -> list[float]:
    found = [STAMP.match(line) for line in lines]
    assert all(found), [line for line, match in zip(lines, found, strict=True) if not match]
    return [float(match.group(1)) for match in found if match]


def gaps_while_working(times: list[float], start: float = 0.0, end: float = 150.0) -> float:
    edges = [start, *[t for t in times if start <= t <= end], end]
    return max(later - earlier for earlier, later in itertools.pairwise(edges))


def test_plain_lines_are_time_stamped_and_come_at_least_every_10_s() -> None:
    lines: list[str] = []
    play(PlainRenderer(lines.append, origin=0.0))
    times = stamps(lines)
    assert times == sorted(times)
    assert gaps_while_working(times) <= 10.0, lines
    heartbeats = [line for line in lines if "still running:" in line]
    assert len(heartbeats) >= 10
    # What is waited for, and for how long; the build's expected time left.
    building = "client image: building (trixie/amd64) for 9.00 s, now downloading packages with apt; ~57.5 s left"
    assert any(building in line for line in heartbeats), heartbeats
    assert any("client (up" in line and "waiting for file /tmp/e2e/exit-status for" in line for line in heartbeats)
    assert any("1 passed, 1 failed" in line for line in heartbeats)
    # Nothing runs after the machine stopped: no heartbeat then.
    assert max(times) <= 151.0


def test_without_heartbeats_the_same_run_is_silent_for_longer_than_10_s() -> None:
    # Negative control: the timeline's own lines leave gaps that only the heartbeats fill.
    lines: list[str] = []
    play(PlainRenderer(lines.append, origin=0.0), beats=False)
    assert gaps_while_working(stamps(lines)) > 10.0
    assert not any("still running" in line for line in lines)


def test_plain_lines_say_each_step_and_result_once() -> None:
    lines: list[str] = []
    play(PlainRenderer(lines.append, origin=0.0))
    said = [STAMP.sub("", line) for line in lines if "still running" not in line]
    assert said == [
        "client image: downloading packages with apt (0.50 s in, ~66.0 s left)",
        "client image: running --customize-hook (25.0 s in, ~40.0 s left)",
        "client image: kernel took 3.1 s; now instrumentation (52.0 s in, ~15.0 s left)",
        "client: PASS test_smoke.py::test_loads (14.2 s)",
        "client: FAIL test_smoke.py::test_voice (40.0 s): TimeoutError: Locator.click: Timeout 45000ms exceeded.",
    ]


def test_a_heartbeat_waits_for_quiet() -> None:
    lines: list[str] = []
    renderer = PlainRenderer(lines.append, origin=100.0, quiet=8.0)
    renderer.handle(Began("w", "box", "waiting for unit x"), 100.0)
    for now in (101.0, 107.9):
        renderer.handle(Heartbeat(), now)
    assert lines == []
    renderer.handle(Heartbeat(), 108.0)
    assert lines == ["[    8.0s] still running: box: waiting for unit x for 8.00 s"]


def test_the_board_shows_the_innermost_work_of_each_scope() -> None:
    board = Board()
    board.apply(MachineStarted("server"), 0.0)
    board.apply(Began("a", SCRIPT_SCOPE, "subtest: stack"), 1.0)
    board.apply(Began("b", "server", "waiting for unit chain a -> b"), 2.0)
    board.apply(Began("c", "server", "waiting for unit b"), 3.0)
    rows = {row.scope: row.text() for row in board.rows(10.0)}
    assert rows == {"server": "server (up 10.0 s): waiting for unit b for 7.00 s",
                    SCRIPT_SCOPE: f"{SCRIPT_SCOPE}: subtest: stack for 9.00 s"}
    board.apply(Ended("c"), 11.0)
    board.apply(Ended("b"), 11.0)
    assert [row.text() for row in board.rows(12.0)] == [
        "server (up 12.0 s)", f"{SCRIPT_SCOPE}: subtest: stack for 11.0 s"]


def test_an_overrun_says_by_how_much() -> None:
    board = Board()
    board.apply(Began("build", "box image", "building", expected=10.0), 0.0)
    [row] = board.rows(12.5)
    assert row.left_text() == "2.50 s over the last time"


def recording_console(terminal: bool = False) -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(file=stream, record=True, width=150, force_terminal=terminal, color_system=None), stream


def test_the_live_renderer_shows_the_same_events() -> None:
    console, _ = recording_console()
    live = LiveRenderer(console, origin=0.0, clock=lambda: 0.0)
    events = [(now, event) for now, event in TIMELINE if now < 140]
    for now, event in events:
        live.handle(event, now)
    printed = console.export_text(clear=True).splitlines()
    plain: list[str] = []
    plain_renderer = PlainRenderer(plain.append, origin=0.0)
    for now, event in events:
        plain_renderer.handle(event, now)
    assert printed == plain, "the same events, the same lines"
    console.print(live.table(135.0))
    table = console.export_text()
    assert re.search(r"client \(up 63.0 s\)\s+waiting for file /tmp/e2e/exit-status\s+62.0 s\s+"
                     r"1 passed, 1 failed", table), table


def test_the_live_table_has_the_build_step_and_time_left() -> None:
    console, _ = recording_console()
    live = LiveRenderer(console, origin=0.0, clock=lambda: 0.0)
    for now, event in TIMELINE[:4]:
        live.handle(event, now)
    console.export_text(clear=True)
    console.print(live.table(60.0))
    assert re.search(r"client image\s+building \(trixie/amd64\), now instrumentation\s+60.0 s\s+~7.00 s left",
                     console.export_text()), console.export_text()
    console.print(live.table(200.0))  # negative control: past the expectation, no time left is claimed
    assert "over the last time" in console.export_text()


@contextmanager
def own_stderr() -> Iterator[io.StringIO]:
    """A stderr of our own for the block (rich replaces sys.stderr while a live display runs); set in
    the test itself, since pytest's capture sets sys.stderr again between a fixture and the test."""
    stream, before = io.StringIO(), sys.stderr
    sys.stderr = stream
    try:
        yield stream
    finally:
        sys.stderr = before


def test_the_run_log_goes_above_the_live_display() -> None:
    console, stream = recording_console(terminal=True)
    live = LiveRenderer(console, origin=0.0, clock=lambda: 5.0)
    with own_stderr() as real_stderr:
        logger = CompositeLogger([TerminalLogger(), ProgressLogger(lambda event: live.handle(event, 1.0))])
        live.start()
        try:
            with logger.nested("waiting for unit multi-user.target", {"machine": "client"}):
                logger.log("a log line while the display runs", {"machine": "client"})
                live.live.refresh()
                shown = stream.getvalue()
        finally:
            live.stop()
        given_back = sys.stderr is real_stderr
    assert "client: a log line while the display runs" in shown  # through the display's console
    assert "waiting for unit multi-user.target" in shown  # the display's row
    assert real_stderr.getvalue() == "", "nothing bypassed the display"
    assert given_back, "stderr is given back"


def test_a_logger_bound_to_a_stream_bypasses_the_display() -> None:
    # Negative control for the test above: a logger bound to the stream it was given keeps writing there.
    console, stream = recording_console(terminal=True)
    with own_stderr() as real_stderr:
        bound = TerminalLogger(sys.stderr)
        live = LiveRenderer(console, origin=0.0, clock=lambda: 0.0)
        live.start()
        try:
            bound.log("bypasses the display")
        finally:
            live.stop()
    assert "bypasses the display" in real_stderr.getvalue()
    assert "bypasses the display" not in stream.getvalue()


def test_sections_become_work_of_their_machine() -> None:
    events: list[Event] = []
    logger = CompositeLogger([ProgressLogger(events.append)])
    logger.redact = lambda text: text.replace("hunter2", "<redacted>")
    with logger.subtest("login"), logger.nested("must succeed: echo hunter2", {"machine": "box"}):
        pass
    began = [event for event in events if isinstance(event, Began)]
    assert [(event.scope, event.what) for event in began] == [
        (SCRIPT_SCOPE, "subtest: login"), ("box", "must succeed: echo <redacted>")]
    ended = [event.key for event in events if isinstance(event, Ended)]
    assert ended == [began[1].key, began[0].key]


def test_the_source_stamps_with_its_clock_in_order_and_stops_at_close() -> None:
    seen: list[tuple[float, Event]] = []

    class Recorder:
        def handle(self, event: Event, now: float) -> None:
            seen.append((now, event))

    times = iter([5.0, 6.5, 9.0])
    progress = Progress([Recorder(), Recorder()], clock=lambda: next(times))
    progress.emit(MachineStarted("a"))
    progress.emit(Heartbeat())
    progress.close()
    progress.emit(MachineStopped("a"))
    assert seen == [(5.0, MachineStarted("a")), (5.0, MachineStarted("a")), (6.5, Heartbeat()), (6.5, Heartbeat())]


def test_the_ticker_beats_until_stopped() -> None:
    beats = threading.Semaphore(0)

    class Counter:
        def handle(self, event: Event, now: float) -> None:
            if isinstance(event, Heartbeat):
                beats.release()

    stopped = threading.Event()
    thread = beat(Progress([Counter()]), stopped, interval=0.01)
    assert all(beats.acquire(timeout=5) for _ in range(3)), "three beats"
    stopped.set()
    thread.join(timeout=5)
    assert not thread.is_alive()


@pytest.mark.parametrize(("mode", "terminal", "chosen"), [
    ("auto", True, "live"), ("auto", False, "plain"), ("plain", True, "plain"), ("live", False, "live"),
    ("off", True, "off"),
])
def test_auto_is_live_only_on_a_terminal(mode: str, terminal: bool, chosen: str) -> None:
    assert resolve_mode(mode, terminal) == chosen


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="expected one of auto, live, plain, off"):
        resolve_mode("fancy", True)


def test_a_step_that_ended_with_nothing_known_after_it_is_shown_as_done() -> None:
    board = Board()
    board.apply(Began("build", "box image", "building"), 0.0)
    board.apply(Stepped("build", "running --customize-hook"), 1.0)
    assert board.rows(2.0)[0].text() == "box image: building for 2.00 s, now running --customize-hook"
    board.apply(Stepped("build", "", done="kernel took 3.1 s"), 4.1)
    assert board.rows(5.0)[0].text() == "box image: building for 5.00 s, kernel took 3.1 s"


def test_showing_progress_plain_writes_stamped_lines_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with showing_progress("plain") as progress:
        progress.emit(GuestResult("client", "test_a", "passed", 1.0))
    assert re.fullmatch(r"\[ *[0-9.]+s\] client: PASS test_a \(1.00 s\)\n", capsys.readouterr().err)
    with showing_progress("off") as progress:  # negative control
        progress.emit(GuestResult("client", "test_a", "passed", 1.0))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("argv", "environment", "mode"), [
    (["build", "x.toml"], None, "auto"), (["build", "x.toml"], "plain", "plain"),
    (["run", "s.py", "--machines", "m.toml", "--progress", "off"], "plain", "off"),
])
def test_the_progress_option(monkeypatch: pytest.MonkeyPatch, argv: list[str], environment: str | None,
                             mode: str) -> None:
    if environment is None:
        monkeypatch.delenv("VMTEST_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("VMTEST_PROGRESS", environment)
    assert cli.parser().parse_args(argv).progress == mode


def test_a_bad_progress_mode_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMTEST_PROGRESS", "fancy")
    with pytest.raises(SystemExit) as exited:
        cli.parser().parse_args(["build", "x.toml"])
    assert exited.value.code == 2
