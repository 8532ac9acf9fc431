"""Faults from outside a run, on fake machines (fake_run.py): SIGKILL, SIGHUP, a closed terminal, two
runs into one output directory; and the pieces behind them (process.spawn, the run directory's
sweep, the output directory's lock).

The same faults on real VMs: tests/integration/test_faults.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vmtest.artifacts import OUTPUT_LOCK as LOCK_NAME
from vmtest.portable.outdir import OutputDirError, lock_output_dir, prepare_output_dir
from vmtest.portable.runtime import signals as run_signals
from vmtest.portable.runtime.process import spawn, terminate_group
from vmtest.portable.runtime.rundir import RunDir, sweep_stale_run_dirs

from .fake_run import FakeRun, TerminalReader, alive, short_tmp, wait_until

run_tmp = pytest.fixture(short_tmp)

BUSY = ("import time\nstart_all()\nmachine.succeed('true')\nopen({ready!r}, 'w').close()\n"
        "while not os.path.exists({go!r}):\n    time.sleep(0.05)\n")


def busy(tmp_path: Path, name: str = "") -> tuple[str, Path, Path]:
    """A testScript that boots, says it is ready, then waits (on the host) until told to go on."""
    ready, go = tmp_path / f"ready{name}", tmp_path / f"go{name}"
    return BUSY.format(ready=str(ready), go=str(go)), ready, go


def junit_failures(path: Path) -> str:
    root = ET.parse(path).getroot()
    return "\n".join(f"{failure.get('message')}\n{failure.text or ''}" for failure in root.iter("failure"))


def outcome(out: Path) -> str:
    return str(json.loads((out / "vmtest-run.json").read_text())["outcome"])


# -- 1. SIGKILL: nothing outlives the run, and the next run removes what it left ----------------------

def test_a_child_spawned_from_a_short_lived_thread_outlives_the_thread() -> None:
    # PR_SET_PDEATHSIG fires when the forking *thread* ends: start_all starts QEMUs from threads
    # that end at once, so spawn forks from a thread that lives as long as the process.
    started: list[subprocess.Popen[bytes]] = []
    thread = threading.Thread(target=lambda: started.append(spawn(["sleep", "30"], start_new_session=True)))
    thread.start()
    thread.join()
    try:
        time.sleep(0.3)
        assert started[0].poll() is None, "the child died with the thread that asked for it"
    finally:
        terminate_group(started[0])


def test_a_killed_run_takes_its_machines_with_it_and_the_next_run_cleans_up(tmp_path: Path, run_tmp: Path) -> None:
    out = tmp_path / "out"
    script, ready, _ = busy(tmp_path)
    run = FakeRun(tmp_path, run_tmp, script, out)
    try:
        wait_until(lambda: ready.exists() or run.process.poll() is not None, 30, "the fake machine boots")
        assert run.process.poll() is None, run.finish()[1]
        children = run.children()
        assert len(children) == 2 and all(alive(pid) for pid in children), "a fake QEMU and a vde_switch run"
        assert len(run.run_dirs()) == 1
        run.process.kill()
        run.finish()
        wait_until(lambda: not any(alive(pid) for pid in children), 5, "QEMU and vde_switch die with vmtest")
    finally:
        run.end()
    assert (out / "serial" / "machine.log").read_text().startswith("fake serial line"), "the console log is kept"
    assert run.run_dirs() != [], "a killed run cannot remove its temporary directory"

    after = FakeRun(tmp_path, run_tmp, "start_all()\nmachine.succeed('true')\n", out)
    code, output = after.finish()
    assert code == 0, output
    assert f"vmtest: removed 1 temporary directory of vmtest runs that were killed: {run.tmp}/vmtest-" in output
    assert after.run_dirs() == []
    assert f"were moved to {tmp_path / 'out.previous'}" in output, "the killed run's lock went with it"
    assert (tmp_path / "out.previous" / "serial" / "machine.log").is_file()


def test_the_sweep_removes_only_directories_of_runs_that_are_gone(tmp_path: Path) -> None:
    dead = RunDir(parent=tmp_path)
    dead.close()  # as the kernel does when its run is killed
    kept = RunDir(keep=True, parent=tmp_path)
    kept.close()
    live = RunDir(parent=tmp_path)
    foreign = tmp_path / "vmtest-not-a-run"
    foreign.mkdir()
    starting = tmp_path / "vmtest-starting"
    starting.mkdir()
    (starting / ".vmtest-run").write_text("")  # its lock taken, its PID not written yet
    try:
        assert sweep_stale_run_dirs(tmp_path) == [dead.path]
        assert not dead.path.exists()
        assert kept.path.is_dir() and live.path.is_dir() and foreign.is_dir() and starting.is_dir()
    finally:
        live.close()
    assert sweep_stale_run_dirs(tmp_path) == [live.path]


# -- 2. SIGHUP and a terminal that closes ---------------------------------------------------------------

def test_sighup_ends_a_run_as_sigterm_does(tmp_path: Path, run_tmp: Path) -> None:
    out = tmp_path / "out"
    script, ready, _ = busy(tmp_path)
    run = FakeRun(tmp_path, run_tmp, script, out)
    try:
        wait_until(lambda: ready.exists() or run.process.poll() is not None, 30, "the fake machine boots")
        run.process.send_signal(signal.SIGHUP)
        code, output = run.finish()
    finally:
        run.end()
    assert code == 128 + signal.SIGHUP, output
    assert "Traceback" not in output
    assert "terminated (SIGHUP)" in junit_failures(out / "vmtest-junit.xml")
    assert outcome(out) == "terminated"
    assert not any(alive(pid) for pid in run.children()) and run.run_dirs() == []


def _paste(master: int, line: str, repl: str) -> None:
    # ptpython completes while one types; a bracketed paste arrives as text.
    os.write(master, (f"\x1b[200~{line}\x1b[201~\r" if repl == "ptpython" else f"{line}\n").encode())


@pytest.mark.parametrize("repl", ["code", "ptpython"])
@pytest.mark.parametrize("when", ["running", "at-the-prompt", "at-the-first-prompt"])
def test_closing_the_terminal_of_an_interactive_run(tmp_path: Path, run_tmp: Path, repl: str, when: str) -> None:
    """The terminal closes while a command runs, while the shell waits for the next one, or at once (no
    machine started; ptpython still waiting for the terminal's answer to its cursor position request)."""
    if repl == "ptpython":
        pytest.importorskip("ptpython.repl")
    try:
        master, terminal = os.openpty()
    except OSError as error:
        pytest.skip(f"no pseudo-terminal here: {error}")
    out, ready = tmp_path / "out", tmp_path / "ready"
    commands = tmp_path / "commands.py"
    commands.write_text(f"import time\nstart_all()\nmachine.succeed('true')\nopen({str(ready)!r}, 'w').close()\n"
                        + ("while True:\n    time.sleep(0.05)\n" if when == "running" else ""))
    run = FakeRun(tmp_path, run_tmp, "", out, "--interactive", terminal=terminal,
                  env={"FAKE_RUN_REPL": repl, "TERM": "dumb" if repl == "code" else "xterm"})
    os.close(terminal)
    screen = TerminalReader(master)
    try:
        screen.wait_for(">>>", 30)
        prompts = screen.text.count(">>>")
        if when == "at-the-first-prompt":
            time.sleep(0.5)
        else:
            _paste(master, f"exec(open({str(commands)!r}).read())", repl)
            wait_until(lambda: ready.exists() or run.process.poll() is not None, 30, "the fake machine boots")
        assert run.process.poll() is None, screen.text
        if when == "at-the-prompt":
            wait_until(lambda: screen.text.count(">>>") > prompts, 30, "the shell's next prompt")
            time.sleep(0.5)  # waiting for input
        children = run.children()
        screen.stop()
        os.close(master)  # the terminal closes: the kernel hangs it up and sends SIGHUP
        code, _ = run.finish()
    finally:
        run.end()
    assert code == 128 + signal.SIGHUP, screen.text[-3000:]
    assert "terminated (SIGHUP)" in junit_failures(out / "vmtest-junit.xml")
    assert outcome(out) == "terminated"
    assert len(children) == (1 if when == "at-the-first-prompt" else 2), "a vde_switch, and a QEMU once started"
    assert not any(alive(pid) for pid in children) and run.run_dirs() == []


def test_a_run_started_under_nohup_keeps_ignoring_sighup() -> None:
    saved = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with run_signals.RunSignals() as signals:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):
                pass
        assert signals.received == []
        with run_signals.shielded():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, saved)


def test_a_hung_up_terminal_is_swapped_for_dev_null() -> None:
    try:
        master, terminal = os.openpty()
    except OSError as error:
        pytest.skip(f"no pseudo-terminal here: {error}")
    saved = os.dup(2)
    try:
        os.dup2(terminal, 2)
        os.close(terminal)
        assert run_signals.detach_hung_up_terminal() == [], "a live terminal stays"
        os.close(master)
        with pytest.raises(OSError):
            os.write(2, b"x")
        assert run_signals.detach_hung_up_terminal() == [2]
        assert os.write(2, b"x") == 1
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def test_stdin_stays_on_the_hung_up_terminal_where_it_reads_end_of_input() -> None:
    # An interactive shell waiting on it must see end-of-input and return (ptpython's input thread
    # would wait for ever on a terminal closed under it).
    try:
        master, terminal = os.openpty()
    except OSError as error:
        pytest.skip(f"no pseudo-terminal here: {error}")
    saved = os.dup(0)
    try:
        os.dup2(terminal, 0)
        os.close(terminal)
        os.close(master)
        assert run_signals.detach_hung_up_terminal() == []
        assert os.read(0, 10) == b""
    finally:
        os.dup2(saved, 0)
        os.close(saved)


# -- 4. two runs into one output directory ------------------------------------------------------------

def test_a_second_run_into_a_busy_output_directory_exits_2(tmp_path: Path, run_tmp: Path) -> None:
    out = tmp_path / "out"
    script, ready, go = busy(tmp_path)
    first = FakeRun(tmp_path, run_tmp, script, out)
    try:
        wait_until(lambda: ready.exists() or first.process.poll() is not None, 30, "the fake machine boots")
        assert first.process.poll() is None, first.finish()[1]
        children = first.children()
        started = time.monotonic()
        code, output = FakeRun(tmp_path, run_tmp, "start_all()\n", out).finish()
        assert code == 2, output
        assert time.monotonic() - started < 20
        assert output.splitlines() == [
            f"vmtest: output directory {out} is in use by another vmtest run (PID {first.pid}, since "
            f"{output.split(', since ', 1)[1].split(';', 1)[0]}; lock {out / LOCK_NAME}): wait for it to end or "
            "give another --out"], output
        assert first.children() == children, "the second run started nothing"
        assert (out / "serial" / "machine.log").is_file() and not (tmp_path / "out.previous").exists()
        go.touch()
        code, output = first.finish()
    finally:
        first.end()
    assert code == 0, output
    assert junit_failures(out / "vmtest-junit.xml") == "" and outcome(out) == "passed"


def test_the_output_lock_is_held_until_released_and_never_moved(tmp_path: Path) -> None:
    out = tmp_path / "out"
    lock = lock_output_dir(out)
    (out / "vmtest-run.json").write_text("{}")
    with pytest.raises(OutputDirError, match=f"output directory {out} is in use by another vmtest run "
                                             f"\\(PID {os.getpid()}, since "):
        lock_output_dir(out)
    assert (out / "vmtest-run.json").is_file()
    lock.release()
    with lock_output_dir(out):
        assert prepare_output_dir(out) == tmp_path / "out.previous"
        assert sorted(entry.name for entry in out.iterdir()) == [LOCK_NAME]
        assert (tmp_path / "out.previous" / "vmtest-run.json").is_file()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    refused = lock_output_dir(foreign)
    with pytest.raises(OutputDirError, match=r"holds no earlier vmtest run \(notes.txt\)"):
        prepare_output_dir(foreign)
    refused.release(forget=True)
    assert sorted(entry.name for entry in foreign.iterdir()) == ["notes.txt"], "a refused directory is left as it was"
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputDirError, match="is not a directory"):
        lock_output_dir(tmp_path / "file")
    with pytest.raises(OutputDirError, match="output directory /proc/forbidden is not writable: No such file"):
        lock_output_dir(Path("/proc/forbidden"))
