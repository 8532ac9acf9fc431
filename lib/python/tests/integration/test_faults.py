"""The fault suite: `vmtest run` and `vmtest build` under faults a skeptical user injects.

Each test checks the exit status, the message, the artifacts that exist, and that no
QEMU, vde_switch, mount or temporary directory is left. README's fault table is made
from the ``fault`` marks here and elsewhere (tests/repo/fault_table.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ..conftest import RECIPES, secret_hits, vm_processes
from ..unit.fake_run import TerminalReader

pytestmark = pytest.mark.vm
MINIMAL = RECIPES / "minimal.toml"
BOOTED = "start_all()\nmachine.wait_for_unit('multi-user.target')\n"


def vmtest(*args: str, env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "vmtest.portable.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}, **popen)


def finish(process: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree = subprocess.run(["ps", "-eo", "pid,ppid,stat,args", "--forest"], capture_output=True, text=True)
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"vmtest did not end within {timeout} s; "
                    f"its output:\n{output[-3000:]}\nprocesses:\n{tree.stdout[-4000:]}")
    return process.returncode, output


def script(tmp_path: Path, text: str, name: str = "script.py") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run_dirs() -> set[str]:
    return {entry.name for entry in Path(os.environ.get("TMPDIR", "/tmp")).glob("vmtest-*")}


def mounts_under(path: Path) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(path) in line]


@contextmanager
def nothing_left(*watched: Path) -> Iterator[None]:
    """Assert that the block leaves no VM process, no run directory and no mount under ``watched``."""
    processes, dirs = vm_processes(), run_dirs()
    yield
    assert vm_processes() == processes, "a QEMU or vde_switch outlived the run"
    assert run_dirs() <= dirs, f"temporary directories left: {run_dirs() - dirs}"
    for path in watched:
        assert mounts_under(path) == [], f"mounts left under {path}"


def junit_failures(path: Path) -> str:
    root = ET.parse(path).getroot()
    return "\n".join(f"{failure.get('message')}\n{failure.text or ''}" for failure in root.iter("failure"))


def run_record(out: Path) -> dict[str, object]:
    record: dict[str, object] = json.loads((out / "vmtest-run.json").read_text())
    return record


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)


# -- signals ------------------------------------------------------------------------------------

PAIRS = [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGTERM),
         (signal.SIGINT, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)]
DELAYS = [0.0, 0.01, 0.05, 0.2, 1.0]
VERBS = {signal.SIGINT: ("interrupted", 130), signal.SIGTERM: ("terminated", 143)}


def interrupt_twice(tmp_path: Path, pair: tuple[int, int], delay: float, booted: bool) -> None:
    """Send ``pair`` ``delay`` apart to a two-machine run, then check what it left and wrote."""
    first, second = pair
    out, ready = tmp_path / "out", tmp_path / "ready"
    busy = ("start_all()\nalpha.wait_for_unit('multi-user.target')\n"
            f"open({str(ready)!r}, 'w').close()\nalpha.succeed('sleep 600')\n")
    with nothing_left(tmp_path):
        before = len(vm_processes())
        process = vmtest("run", script(tmp_path, busy),
                         "--machines", f"alpha={MINIMAL},beta={MINIMAL}", "--out", str(out))
        if booted:
            wait_for(ready.exists, 300, "alpha boots")
            time.sleep(0.5)
        else:
            wait_for(lambda: len(vm_processes()) >= before + 3, 120, "two QEMUs and a vde_switch start")
        process.send_signal(first)
        time.sleep(delay)
        second_landed = process.poll() is None
        if second_landed:
            process.send_signal(second)
        code, output = finish(process, timeout=120)
    assert "Traceback" not in output, output
    # Two signals sent back to back may be handled in either order (both pending at once).
    handled_first = first if delay else next(s for s in pair if VERBS[s][1] == code)
    verb, status = VERBS[handled_first]
    assert code == status, output
    name = signal.Signals(handled_first).name
    assert f"{verb} ({name})" in junit_failures(out / "vmtest-junit.xml")
    assert run_record(out)["outcome"] == verb
    if second_landed and 0 < delay <= 0.05 and booted:
        # Sooner, two equal signals merge into one; later, the run may have ended already.
        assert f"{signal.Signals(second).name} ignored" in output, output


@pytest.mark.fault(fault="a second Ctrl-C or SIGTERM during teardown (two machines; 20 runs, 0 s to 1 s apart)",
                   handling="noted and ignored; every QEMU and vde_switch reaped; JUnit and run record written; "
                            "exit 130 (SIGINT first) or 143 (SIGTERM first)")
@pytest.mark.parametrize("delay", DELAYS)
@pytest.mark.parametrize("pair", PAIRS, ids=lambda pair: "-".join(signal.Signals(s).name for s in pair))
def test_double_interrupt_leaves_nothing(tmp_path: Path, pair: tuple[int, int], delay: float) -> None:
    interrupt_twice(tmp_path, pair, delay, booted=False)


@pytest.mark.fault(fault="a second Ctrl-C or SIGTERM while a booted machine runs a command",
                   handling="as above: the first unwinds the script, the second is ignored ('SIGINT ignored')")
@pytest.mark.parametrize(("pair", "delay"), [((signal.SIGINT, signal.SIGINT), 0.01),
                                             ((signal.SIGTERM, signal.SIGINT), 0.05)],
                         ids=["SIGINT-SIGINT", "SIGTERM-SIGINT"])
def test_double_interrupt_of_a_busy_run_leaves_nothing(tmp_path: Path, pair: tuple[int, int], delay: float) -> None:
    interrupt_twice(tmp_path, pair, delay, booted=True)


@pytest.mark.fault(fault="a guest whose backdoor never starts (`systemd.mask=backdoor.service`)",
                   handling="the boot deadline (`--boot-timeout`, 120 s or 600 s under TCG) names the machine, "
                            "the console's last lines and the serial log; exit 1")
def test_backdoor_that_never_comes_hits_the_boot_deadline(tmp_path: Path) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    with nothing_left(tmp_path):
        code, output = finish(vmtest("run", script(tmp_path, BOOTED), "--machines", f"machine={MINIMAL}",
                                     "--out", str(out), "--boot-timeout", "25",
                                     env={"QEMU_KERNEL_PARAMS": "systemd.mask=backdoor.service"}))
    assert code == 1, output
    assert time.monotonic() - started < 200
    message = "machine: the backdoor shell did not connect within the boot deadline of 25.0 s"
    assert message in output and f"Console log: {out / 'serial' / 'machine.log'}" in output
    assert message in junit_failures(out / "vmtest-junit.xml")
    assert (out / "serial" / "machine.log").stat().st_size > 0
    assert run_record(out)["outcome"] == "failed"


def _build_mounts(cache: Path) -> bool:
    return any("/images/.build-" in line for line in mounts_under(cache))


@pytest.mark.fault(fault="Ctrl-C during an image build (`vmtest build`)",
                   handling="mmdebstrap stopped, its mounts and work directory removed, the cache as it was; "
                            "one line, exit 130")
def test_interrupted_build_leaves_the_cache_as_it_was(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with nothing_left(cache):
        process = vmtest("build", str(MINIMAL), env={"VMTEST_CACHE": str(cache)})
        wait_for(lambda: _build_mounts(cache), 400, "mmdebstrap mounts proc inside the root it builds")
        process.send_signal(signal.SIGINT)
        code, output = finish(process, timeout=120)
    assert code == 130, output
    assert "Traceback" not in output
    assert "SIGINT while building" in output and "the cache is as it was" in output
    images = cache / "images"
    assert [entry.name for entry in images.iterdir() if not entry.name.endswith(".lock")] == []
    assert subprocess.run(["pgrep", "-f", f"mmdebstrap.*{cache}"], capture_output=True).returncode == 1


@pytest.mark.fault(fault="SIGTERM while `vmtest run` builds an image",
                   handling="the build stopped and removed as above; JUnit and run record say "
                            "'terminated (SIGTERM) while building the images'; exit 143")
def test_sigterm_during_the_build_of_a_run_writes_its_artifacts(tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    with nothing_left(cache):
        process = vmtest("run", script(tmp_path, BOOTED), "--machines", f"machine={MINIMAL}", "--out", str(out),
                         env={"VMTEST_CACHE": str(cache)})
        wait_for(lambda: _build_mounts(cache), 400, "mmdebstrap mounts proc inside the root it builds")
        process.send_signal(signal.SIGTERM)
        code, output = finish(process, timeout=120)
    assert code == 143, output
    assert "Traceback" not in output
    assert "terminated (SIGTERM) while building the images" in junit_failures(out / "vmtest-junit.xml")
    assert run_record(out)["outcome"] == "terminated"
    assert [entry.name for entry in (cache / "images").iterdir() if not entry.name.endswith(".lock")] == []


# -- the output directory ---------------------------------------------------------------------------


@pytest.mark.fault(fault="an output directory that cannot be used (`/proc/forbidden`, read-only, a file, "
                         "someone else's files)",
                   handling="one line naming the directory and why, exit 2, before any build or boot")
def test_bad_output_directories_exit_2_before_any_work(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)], check=True)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    (tmp_path / "a-file").write_text("")
    cases = {
        "/proc/forbidden": "output directory /proc/forbidden is not writable: No such file or directory",
        str(readonly): f"output directory {readonly} is not writable: Read-only file system",
        str(tmp_path / "a-file"): "is not a directory",
        str(foreign): "is not empty and holds no earlier vmtest run (notes.txt)",
    }
    try:
        for out, message in cases.items():
            code, output = finish(vmtest("run", script(tmp_path, BOOTED), "--machines", f"machine={MINIMAL}",
                                         "--out", out, env={"VMTEST_CACHE": str(cache)}), timeout=60)
            assert code == 2, output
            assert len(output.strip().splitlines()) == 1, output
            assert message in output, output
    finally:
        subprocess.run(["umount", str(readonly)], check=True)
    assert not (cache / "images").exists(), "nothing was built"
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.fault(fault="the output directory fills up during the run",
                   handling="the serial reader keeps draining QEMU; each artifact write is attempted on its own "
                            "and reported ('No space left on device'); nothing leaks; exit 1")
def test_full_output_directory_is_reported_and_leaks_nothing(tmp_path: Path) -> None:
    out = tmp_path / "small"
    out.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(out)], check=True)
    fill = (BOOTED + "with open(os.path.join(driver.out_dir, 'filler'), 'wb') as filler:\n"
            "    try:\n        while True:\n            filler.write(b'x' * 65536)\n            filler.flush()\n"
            "    except OSError:\n        pass\n"
            "machine.succeed('for i in $(seq 300); do echo \\<2\\>console-line-$i > /dev/kmsg; done')\n"
            "machine.succeed('true')\n")
    try:
        with nothing_left():
            code, output = finish(vmtest("run", script(tmp_path, fill), "--machines", f"machine={MINIMAL}",
                                         "--out", str(out)))
        assert code == 1, output
        assert "Traceback" not in output
        assert "cannot write the console log" in output and "No space left on device" in output
        assert "could not write" in output and "artifact(s) could not be written" in output.splitlines()[-1]
    finally:
        subprocess.run(["umount", str(out)], check=True)


@pytest.mark.fault(fault="an output directory reused from a failed run",
                   handling="the earlier run is moved to `<out>.previous` (and said so); the new serial log "
                            "holds only the new run")
def test_reused_output_directory_starts_fresh(tmp_path: Path) -> None:
    out = tmp_path / "out"
    failing = BOOTED + "machine.succeed('echo \\<2\\>first-run-marker > /dev/kmsg; exit 4')\n"
    code, output = finish(vmtest("run", script(tmp_path, failing), "--machines", f"machine={MINIMAL}",
                                 "--out", str(out)))
    assert code == 1 and "first-run-marker" in (out / "serial" / "machine.log").read_text(), output
    with nothing_left(tmp_path):
        code, output = finish(vmtest("run", script(tmp_path, BOOTED, "second.py"), "--machines",
                                     f"machine={MINIMAL}", "--out", str(out)))
    assert code == 0, output
    assert f"were moved to {tmp_path / 'out.previous'}" in output
    assert "first-run-marker" not in (out / "serial" / "machine.log").read_text()
    assert "first-run-marker" in (tmp_path / "out.previous" / "serial" / "machine.log").read_text()
    assert junit_failures(out / "vmtest-junit.xml") == ""


# -- secrets ---------------------------------------------------------------------------------------

PLANTED = "pl4nted/Secret+4e9f1c="  # with / + =: its URL-encoded and JSON-escaped forms differ
CONTROL = "undeclared-c0ntrol-7a2b9"


@pytest.mark.fault(fault="a failing unit echoes a declared secret (journal in the error, console, JUnit, stderr)",
                   handling="0 hits in the output directory and on stderr, in plain, URL-encoded, base64 and "
                            "JSON-escaped form; an undeclared control value does arrive")
def test_secret_echoed_by_a_failing_unit_reaches_no_artifact(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # %% is systemd's escape for a literal %
    unit = (f"[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo token-line {PLANTED} {CONTROL}; "
            f"printf %%s {PLANTED} | base64; echo \"<2>{PLANTED}\" > /dev/kmsg; exit 3'\n")
    leaky = BOOTED + (
        "from vmtest import logs\n"
        "logs.Redactor.for_driver(driver).add(open(os.environ['PLANTED_FILE']).read().strip())\n"
        f"machine.copy_from_host({str(tmp_path / 'leaky.service')!r}, '/etc/systemd/system/leaky.service')\n"
        "machine.succeed('systemctl daemon-reload')\n"
        "machine.execute('systemctl start leaky.service')\n"
        "machine.wait_for_unit('leaky.service')\n"
    )
    (tmp_path / "leaky.service").write_text(unit)
    (tmp_path / "planted").write_text(PLANTED)
    with nothing_left(tmp_path):
        code, output = finish(vmtest("run", script(tmp_path, leaky), "--machines", f"machine={MINIMAL}",
                                     "--out", str(out), env={"PLANTED_FILE": str(tmp_path / "planted")}))
    assert code == 1, output
    failure = junit_failures(out / "vmtest-junit.xml")
    assert "leaky.service" in failure and "token-line [REDACTED]" in failure, "the journal is in the error"
    assert secret_hits(out, [PLANTED], extra={"stderr": output}) == []
    assert secret_hits(out, [CONTROL], extra={"stderr": output}) != [], "the control value must arrive"


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.fault(fault="bad `[vm]` values (`memory_mb = \"lots\"`, `cores = 0`, the unknown key `memory`)",
                   handling="rejected when the recipe loads: the recipe, the key and the allowed range; exit 2, "
                            "nothing built")
def test_bad_vm_values_exit_2_at_load_time(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cases = {'memory_mb = "lots"': "vm.memory_mb: 'lots' is not a whole number (allowed: 128 to 262144)",
             "cores = 0": "vm.cores: 0 is out of range (allowed: 1 to 64)",
             "memory = 512": "vm.memory: unknown key (known: memory_mb, cores, disk_free_mb, graphics)"}
    for line, message in cases.items():
        recipe = tmp_path / "bad.toml"
        recipe.write_text(f'include = ["{MINIMAL}"]\n[vm]\n{line}\n')
        code, output = finish(vmtest("run", script(tmp_path, BOOTED), "--machines", f"machine={recipe}",
                                     "--out", str(tmp_path / "out"), env={"VMTEST_CACHE": str(cache)}), timeout=60)
        assert code == 2, output
        assert output.strip() == f"vmtest: recipe {recipe}: {message}"
    assert not (cache / "images").exists()


@pytest.mark.fault(fault="a testScript names a machine the run does not have",
                   handling="one line naming the name, its line and the machines; exit 2 before anything builds")
def test_unknown_machine_name_exits_2_before_any_work(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    typo = script(tmp_path, "start_all()\nserverr.succeed('true')\n")
    code, output = finish(vmtest("run", typo, "--machines", f"server={MINIMAL}", "--out", str(tmp_path / "out"),
                                 env={"VMTEST_CACHE": str(cache)}), timeout=60)
    assert code == 2, output
    assert output.strip() == (f"vmtest: testScript {typo} uses `serverr` (line 2), which is not defined: "
                              "no machine or driver name has it (machines: server)")
    assert not (cache / "images").exists() and not (tmp_path / "out").exists()


# -- what the errors say ------------------------------------------------------------------------------


@pytest.mark.fault(fault="a kernel panic (`echo c > /proc/sysrq-trigger`)",
                   handling="the error's console tail keeps the `Kernel panic` line, however many lines follow it")
def test_kernel_panic_line_is_in_the_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with nothing_left(tmp_path):
        panics = script(tmp_path, BOOTED + "machine.succeed('echo c > /proc/sysrq-trigger')\n")
        code, output = finish(vmtest("run", panics, "--machines", f"machine={MINIMAL}", "--out", str(out)))
    assert code == 1, output
    failure = junit_failures(out / "vmtest-junit.xml")
    assert "the VM's shell closed while running `echo c > /proc/sysrq-trigger`" in failure
    assert "Kernel panic - not syncing" in failure and "Kernel panic - not syncing" in output
    assert f"Console log: {out / 'serial' / 'machine.log'}" in failure


@pytest.mark.fault(fault="the global timeout (`--global-timeout`)",
                   handling="every machine killed; the message says what was running and for how long; exit 1")
def test_global_timeout_says_what_was_running(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stuck = BOOTED + "machine.wait_until_succeeds('false', timeout=600)\n"
    with nothing_left(tmp_path):
        code, output = finish(vmtest("run", script(tmp_path, stuck), "--machines", f"machine={MINIMAL}",
                                     "--out", str(out), "--global-timeout", "60"))
    assert code == 1, output
    assert "global timeout of 60.0 s reached while " in output
    assert "machine: waiting for success: false (for " in output
    assert "waiting for success: false" in junit_failures(out / "vmtest-junit.xml")
    assert run_record(out)["outcome"] == "timed out"


# -- faults from outside the run: SIGKILL, SIGHUP, a damaged cache, two runs at once, a big output --


@pytest.fixture
def run_tmp() -> Iterator[Path]:
    """A private, short $TMPDIR for the runs of one test (QEMU's socket paths must fit in 108 bytes):
    their processes and directories are told apart from any other job's by it."""
    path = Path(tempfile.mkdtemp(prefix="vt-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ours(run_tmp: Path) -> list[str]:
    """The live QEMU and vde_switch processes of runs under ``run_tmp`` (their sockets are there)."""
    return [line for line in vm_processes() if str(run_tmp) in line]


def vm_descendants(pid: int) -> list[int]:
    """The live qemu-system and vde_switch processes below ``pid`` (by parent, whatever their arguments)."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    children: dict[int, list[tuple[int, str, str]]] = {}
    for line in table.splitlines():
        fields = line.split(None, 3)
        if len(fields) == 4:
            children.setdefault(int(fields[1]), []).append((int(fields[0]), fields[2], fields[3]))
    found, pending = [], [pid]
    while pending:
        for child, stat, args in children.get(pending.pop(), []):
            pending.append(child)
            if not stat.startswith("Z") and ("qemu-system" in args or "vde_switch" in args):
                found.append(child)
    return found


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()
            and not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")]


def run_dirs_in(run_tmp: Path) -> list[str]:
    return sorted(entry.name for entry in run_tmp.glob("vmtest-*"))


@pytest.mark.fault(fault="SIGKILL of `vmtest run` while its machine runs a command (what a CI runner does at its "
                         "time limit)",
                   handling="QEMU and vde_switch die with it (PR_SET_PDEATHSIG, set from a thread that lives as "
                            "long as vmtest); the console log is kept; the next run removes the killed run's "
                            "temporary directory and says so, and moves its output aside")
def test_sigkill_takes_qemu_with_it_and_the_next_run_cleans_up(tmp_path: Path, run_tmp: Path) -> None:
    out, ready = tmp_path / "out", tmp_path / "ready"
    busy = BOOTED + f"open({str(ready)!r}, 'w').close()\nmachine.succeed('sleep 600')\n"
    env = {"TMPDIR": str(run_tmp)}
    process = vmtest("run", script(tmp_path, busy), "--machines", f"machine={MINIMAL}", "--out", str(out), env=env)
    wait_for(lambda: ready.exists() or process.poll() is not None, 300, "the machine boots")
    assert process.poll() is None, finish(process)[1]
    machines = vm_descendants(process.pid)
    assert len(machines) == 2, f"a QEMU and a vde_switch below vmtest: {machines}"
    killed = run_dirs_in(run_tmp)
    process.kill()
    code, _ = finish(process, timeout=30)
    assert code == -signal.SIGKILL
    wait_for(lambda: alive(machines) == [] and ours(run_tmp) == [], 10, "QEMU and vde_switch die with vmtest")
    assert (out / "serial" / "machine.log").stat().st_size > 0, "the console log is kept"
    assert not (out / "vmtest-junit.xml").exists(), "nothing can write a report after a SIGKILL"
    assert len(killed) == 1 and run_dirs_in(run_tmp) == killed, "left until the next run"

    with nothing_left(tmp_path):
        code, output = finish(vmtest("run", script(tmp_path, BOOTED, "second.py"), "--machines", f"machine={MINIMAL}",
                                     "--out", str(out), env=env))
    assert code == 0, output
    assert (f"vmtest: removed 1 temporary directory of vmtest runs that were killed: {run_tmp / killed[0]}"
            in output.splitlines())
    assert f"were moved to {tmp_path / 'out.previous'}" in output, "the killed run's lock went with it"
    assert run_dirs_in(run_tmp) == [] and ours(run_tmp) == []
    assert junit_failures(out / "vmtest-junit.xml") == ""


def _not_under_nohup() -> None:
    # vmtest keeps ignoring a SIGHUP it was started ignoring (nohup): a suite run under nohup must not
    # hand that on to the runs these tests hang up.
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _in_a_terminal(tmp_path: Path, run_tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """``vmtest`` with a pty as its controlling terminal (a terminal window); returns it and the pty's master."""
    master, terminal = os.openpty()

    def prepare() -> None:
        _not_under_nohup()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [sys.executable, "-m", "vmtest.portable.cli", *args], stdin=terminal, stdout=terminal, stderr=terminal,
        cwd=tmp_path, start_new_session=True, env={**os.environ, "TMPDIR": str(run_tmp), "TERM": "xterm"},
        preexec_fn=prepare,
    )
    os.close(terminal)
    return process, master


@pytest.mark.fault(fault="SIGHUP while a machine runs a command: `vmtest run` gets one, or the terminal of "
                         "`vmtest run --interactive` is closed",
                   handling="ended as on SIGTERM (stdout and stderr go to /dev/null first if they were on the "
                            "terminal, so the teardown cannot fail on them; the shell reads end-of-input): QEMU and "
                            "vde_switch reaped, JUnit and run record say 'terminated (SIGHUP)'; exit 129")
@pytest.mark.parametrize("how", ["signal", "closed-terminal"])
def test_sighup_ends_the_run_as_sigterm_does(tmp_path: Path, run_tmp: Path, how: str) -> None:
    out, ready = tmp_path / "out", tmp_path / "ready"
    commands = (f"start_all()\nmachine.wait_for_unit('multi-user.target')\nopen({str(ready)!r}, 'w').close()\n"
                "machine.succeed('sleep 600')\n")
    if how == "signal":
        process: subprocess.Popen[Any] = vmtest("run", script(tmp_path, commands), "--machines", f"machine={MINIMAL}",
                                                "--out", str(out), env={"TMPDIR": str(run_tmp)},
                                                preexec_fn=_not_under_nohup)
        wait_for(lambda: ready.exists() or process.poll() is not None, 300, "the machine boots")
        assert process.poll() is None, finish(process)[1]
        process.send_signal(signal.SIGHUP)
        code, output = finish(process, timeout=120)
        assert "Traceback" not in output and "vmtest: terminated in " in output, output
    else:
        process, master = _in_a_terminal(tmp_path, run_tmp, "run", script(tmp_path, BOOTED), "--interactive",
                                         "--machines", f"machine={MINIMAL}", "--out", str(out))
        screen = TerminalReader(master)
        try:
            screen.wait_for(">>>", 120)
            # a bracketed paste: ptpython takes it as text, completing nothing
            line = f"exec(open({script(tmp_path, commands, 'commands.py')!r}).read())"
            os.write(master, f"\x1b[200~{line}\x1b[201~\r".encode())
            wait_for(lambda: ready.exists() or process.poll() is not None, 300, "the machine boots")
            assert process.poll() is None, screen.text[-3000:]
        finally:
            screen.stop()
            os.close(master)  # the window closes: the kernel hangs the terminal up and sends SIGHUP
        try:
            code = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"vmtest did not end within 120 s of its terminal closing; it showed:\n{screen.text[-3000:]}")
    assert code == 128 + signal.SIGHUP
    assert "terminated (SIGHUP)" in junit_failures(out / "vmtest-junit.xml")
    assert run_record(out)["outcome"] == "terminated"
    assert (out / "serial" / "machine.log").stat().st_size > 0
    wait_for(lambda: ours(run_tmp) == [], 10, "no QEMU or vde_switch is left (none re-parented to PID 1)")
    assert run_dirs_in(run_tmp) == []


@pytest.mark.fault(fault="a damaged image in the cache (`disk.img` truncated: a full disk, a copy cut short)",
                   handling="found before it boots (size and a SHA-256 of 64 regions, recorded at build): one line "
                            "names the file, its size then and now; it is discarded and built again, the run passes; "
                            "no work directory or mount is left")
def test_a_damaged_cached_image_is_named_and_built_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"VMTEST_CACHE": str(cache)}
    code, output = finish(vmtest("build", str(MINIMAL), env=env))
    assert code == 0, output
    image = Path(json.loads(output.strip().splitlines()[-1])["image"])
    size = (image / "disk.img").stat().st_size
    assert json.loads((image / "image.json").read_text())["files"]["disk.img"]["size"] == size
    os.truncate(image / "disk.img", 1024 * 1024)
    with nothing_left(cache):
        code, output = finish(vmtest("run", script(tmp_path, BOOTED), "--machines", f"machine={MINIMAL}",
                                     "--out", str(tmp_path / "out"), env=env))
    assert code == 0, output
    assert [line for line in output.splitlines() if " is damaged: " in line] == [
        f"vmtest: the cached image {image} is damaged: {image / 'disk.img'} is 1048576 bytes, {size} bytes when it "
        "was built; discarding it and building it again"]
    assert "shell closed" not in output
    assert (image / "disk.img").stat().st_size == size
    assert [entry.name for entry in (cache / "images").iterdir() if entry.name.startswith(".")] == [
        f".{image.name}.lock"], "no work directory and no discarded image left"
    code, output = finish(vmtest("build", str(MINIMAL), env=env))
    assert code == 0 and json.loads(output.strip().splitlines()[-1])["seconds"] < 5, "found whole in the cache"


@pytest.mark.fault(fault="a second `vmtest run` into the output directory of one that is running",
                   handling="the second exits 2 before any work with one line naming the directory and the "
                            "first's PID (a lock held for the run's life); the first's files are untouched and it "
                            "passes")
def test_a_second_run_into_a_busy_output_directory_exits_2(tmp_path: Path, run_tmp: Path) -> None:
    out, ready, go = tmp_path / "out", tmp_path / "ready", tmp_path / "go"
    waits = (BOOTED + f"open({str(ready)!r}, 'w').close()\nimport time\n"
             f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.1)\nmachine.succeed('true')\n")
    env = {"TMPDIR": str(run_tmp)}
    first = vmtest("run", script(tmp_path, waits), "--machines", f"machine={MINIMAL}", "--out", str(out), env=env)
    try:
        wait_for(lambda: ready.exists() or first.poll() is not None, 300, "the first run's machine boots")
        assert first.poll() is None, finish(first)[1]
        running = ours(run_tmp)
        serial = (out / "serial" / "machine.log").read_text()
        started = time.monotonic()
        code, output = finish(vmtest("run", script(tmp_path, BOOTED, "second.py"), "--machines",
                                     f"machine={MINIMAL}", "--out", str(out), env=env), timeout=60)
        assert code == 2, output
        assert time.monotonic() - started < 30
        assert len(output.strip().splitlines()) == 1, output
        assert output.startswith(f"vmtest: output directory {out} is in use by another vmtest run "
                                 f"(PID {first.pid}, since "), output
        assert "wait for it to end or give another --out" in output
        assert ours(run_tmp) == running, "the second run started nothing"
        assert (out / "serial" / "machine.log").read_text().startswith(serial)
        assert not (tmp_path / "out.previous").exists()
    finally:
        go.touch()
        code, output = finish(first)
    assert code == 0, output
    assert junit_failures(out / "vmtest-junit.xml") == "" and run_record(out)["outcome"] == "passed"
    assert ours(run_tmp) == [] and run_dirs_in(run_tmp) == []


@pytest.mark.fault(fault="40 MB of output from one `succeed` (it took 1.0 GB of RSS, 25 times the output)",
                   handling="decoded as it arrives (no joined, stripped or base64 copy): vmtest's peak RSS grows by "
                            "under 5 times the output, and the output arrives whole")
def test_a_40_mb_output_costs_under_5_times_its_size(tmp_path: Path, run_tmp: Path) -> None:
    out = tmp_path / "out"
    size = 40_000_000
    measure = BOOTED + (
        "import hashlib, json\n"
        "machine.succeed('head -c 30000000 /dev/urandom | base64 -w 0 > /root/big')\n"
        "expected = machine.succeed('sha256sum < /root/big').split()[0]\n"
        "def status(field):\n"
        "    line = next(l for l in open('/proc/self/status') if l.startswith(field + ':'))\n"
        "    return int(line.split()[1]) * 1024\n"
        "with open('/proc/self/clear_refs', 'w') as clear:\n"
        "    clear.write('5')  # the peak RSS (VmHWM) starts again from now\n"
        "before = status('VmRSS')\n"
        "output = machine.succeed('cat /root/big')\n"
        "peak = status('VmHWM')\n"
        "json.dump({'before': before, 'peak': peak, 'length': len(output),\n"
        "           'whole': hashlib.sha256(output.encode()).hexdigest() == expected},\n"
        "          open(os.path.join(driver.out_dir, 'memory.json'), 'w'))\n"
    )
    with nothing_left(tmp_path):
        code, output = finish(vmtest("run", script(tmp_path, measure), "--machines", f"machine={MINIMAL}",
                                     "--out", str(out), env={"TMPDIR": str(run_tmp)}))
    assert code == 0, output
    figures = json.loads((out / "memory.json").read_text())
    assert figures["length"] == size and figures["whole"], figures
    growth = figures["peak"] - figures["before"]
    assert growth < 5 * size, f"peak RSS grew by {growth / 1e6:.0f} MB for {size / 1e6:.0f} MB of output: {figures}"
