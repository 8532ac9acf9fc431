"""``vmtest run`` as a process of its own, with fake machines: the faults that come from outside it.

``python fake_run.py run SCRIPT --machines machine=RECIPE --out OUT …`` is vmtest's own CLI
(``cli.main``) with three things replaced: no host preflight, no image build (each machine
gets a made-up image), and start scripts that exec ``fake_qemu_process.py`` instead of QEMU.
Everything else is the real runtime: the output directory's lock, the run directory, the
signal handling, ``process.spawn``, the machines' sockets and backdoor protocol, VLans
(``vde_switch`` is a stub on PATH), the teardown and the artifacts. A test can so SIGKILL or
SIGHUP a run, close its terminal, or start a second one beside it, without a VM.

``FAKE_RUN_REPL=code`` makes ``--interactive`` use the stdlib's ``code.interact`` (what it uses
where ptpython is missing, as in the Nix sandbox).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

FAKE_QEMU = Path(__file__).with_name("fake_qemu_process.py")
RECIPE = Path(__file__).parents[1] / "recipes" / "minimal.toml"
# The bash on PATH, by its path: a Nix build sandbox has /bin/sh and nothing else in /bin.
BASH = shutil.which("bash") or "bash-is-not-on-PATH"
VDE_SWITCH_STUB = f"""#!{BASH}
# vde_switch --sock DIR --dirmode MODE --hub: makes DIR/ctl and runs until killed.
while [ $# -gt 0 ]; do case "$1" in --sock) sock="$2"; shift ;; esac; shift; done
mkdir -p "$sock" && : > "$sock/ctl"
[ -n "${{FAKE_QEMU_PIDS:-}}" ] && mkdir -p "$FAKE_QEMU_PIDS" && echo $$ > "$FAKE_QEMU_PIDS/vde-$$"
exec sleep 100000
"""


def _configure(specs: list[Any], progress: Any = None) -> list[Any]:
    from vmtest.portable.accel import Accelerator
    from vmtest.portable.image.builder import Image
    from vmtest.portable.runtime.qemu import MachineConfig

    images = Path(os.environ["VMTEST_CACHE"]) / "images"
    return [MachineConfig(name=spec.name, image=Image(images / f"fake-{spec.name}", spec.recipe, "6.1.0-fake"),
                          accelerator=Accelerator("kvm", "a fake machine", spec.recipe.machine_arch),
                          number=number, vlans=spec.vlans)
            for number, spec in enumerate(sorted(specs, key=lambda spec: spec.name), 1)]


def _start_script(config: Any, hosts: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"run-{config.name}-vm"
    path.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_QEMU))} "$@"\n')
    path.chmod(0o755)
    return path


def main(argv: list[str]) -> int:
    from vmtest.portable import cli, run_command
    from vmtest.portable.runtime import driver

    # Not under nohup: a test process may ignore SIGHUP (a child inherits that), vmtest's runs do not.
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    run_command.configure_machines = _configure  # type: ignore[assignment]
    run_command._preflight = lambda recipes, booting: True
    driver.write_start_script = _start_script  # type: ignore[assignment]
    if os.environ.get("FAKE_RUN_REPL") == "code":
        sys.modules["ptpython"] = None  # type: ignore[assignment]
        sys.modules["ptpython.repl"] = None  # type: ignore[assignment]
    return cli.main(argv)


# -- for the tests ------------------------------------------------------------------------------


class FakeRun:
    """One ``vmtest run`` of ``script`` on one fake machine (``machine``, on VLAN 1) into ``out``.

    Its temporary directories go to ``run_tmp`` ($TMPDIR: short, as the machines' socket paths must
    fit in 108 bytes), its cache to ``tmp_path/cache``, the PIDs of its fake QEMUs and switches to
    ``tmp_path/pids``. Output is captured, unless ``terminal`` (a pty's slave) is given: then it is
    the run's controlling terminal.
    """

    def __init__(self, tmp_path: Path, run_tmp: Path, script: str, out: Path, *options: str,
                 terminal: int | None = None, env: dict[str, str] | None = None) -> None:
        import vmtest

        self.tmp = run_tmp
        self.pids = tmp_path / "pids"
        stubs = tmp_path / "stubs"
        stubs.mkdir(exist_ok=True)
        (stubs / "vde_switch").write_text(VDE_SWITCH_STUB)
        (stubs / "vde_switch").chmod(0o755)
        script_path = tmp_path / f"script-{len(list(tmp_path.glob('script-*')))}.py"
        script_path.write_text(script)
        source = str(Path(vmtest.__file__).parents[1])
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])),
            "TMPDIR": str(self.tmp), "VMTEST_CACHE": str(tmp_path / "cache"), "VMTEST_PROGRESS": "off",
            "FAKE_QEMU_PIDS": str(self.pids), "PATH": f"{stubs}{os.pathsep}{os.environ.get('PATH', '')}",
            **(env or {}),
        }
        argv = [sys.executable, str(Path(__file__)), "run", str(script_path), "--machines", f"machine={RECIPE}",
                "--out", str(out), "--no-checkpoints", *options]
        if terminal is None:
            self.process = subprocess.Popen(argv, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
        else:
            # From tmp_path: the interactive shell writes its history (.vmtest-history) where it runs.
            self.process = subprocess.Popen(argv, env=environment, stdin=terminal, stdout=terminal,
                                            stderr=terminal, start_new_session=True, cwd=tmp_path,
                                            preexec_fn=_take_controlling_terminal)
        self.pid = self.process.pid

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for the run to end; returns its exit status and output (``""`` on a terminal)."""
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
            raise AssertionError(f"the run did not end within {timeout} s; its output:\n{output}") from None
        return self.process.returncode, output or ""

    def end(self) -> None:
        """After a test that failed: kill the run (if it still runs) and whatever it started."""
        kill_all([self.pid, *self.children()])
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def children(self) -> list[int]:
        """The PIDs of every fake QEMU and vde_switch stub this run's directory has seen start."""
        return sorted(int(path.read_text()) for path in self.pids.glob("*-*")) if self.pids.is_dir() else []

    def run_dirs(self) -> list[str]:
        return sorted(path.name for path in self.tmp.glob("vmtest-*"))


def short_tmp() -> Iterator[Path]:
    """A fresh, short $TMPDIR for fake runs (see FakeRun), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="vt-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _take_controlling_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: not gone, and not a zombie waiting for a parent that may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.02)


def kill_all(pids: list[int]) -> None:
    """Clean up after a test that failed: whatever of ``pids`` still runs."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


class TerminalReader:
    """Drains a pty's master side on a thread (a run writing to a full pty would block) and keeps
    what it read."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.text = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.text += data.decode(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text:
            assert time.monotonic() < deadline, (
                f"{text!r} on the terminal within {timeout} s; it shows {self.text[-2000:]!r}")
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
