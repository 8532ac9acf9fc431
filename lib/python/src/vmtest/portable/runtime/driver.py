"""The Driver: runs a testScript with the upstream namespace over QemuMachines.

Whatever ends the run (success, a failed assertion, an exception, SIGINT,
SIGTERM, SIGHUP, the global timeout), ``Driver.__exit__`` kills every QEMU and
vde_switch it started, writes the JUnit report and the run's record (``RunRecord``) and removes
its temporary directory. What ends it without a teardown (SIGKILL) takes QEMU and
vde_switch with it (``process.spawn``), and the next ``vmtest run`` removes the
temporary directory it left (``rundir``).
"""

from __future__ import annotations

import _thread
import contextlib
import os
import shutil
import threading
import traceback
import unittest
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from vmtest.errors import MachineError, RequestedAssertionFailed
from vmtest.portable.runtime.checkpoint_store import CheckpointStore
from vmtest.portable.runtime.container import NspawnMachine, new_container
from vmtest.portable.runtime.container_net import ContainerNetwork, is_container
from vmtest.portable.runtime.driver_log import CompositeLogger, ProgressLogger
from vmtest.portable.runtime.machine import QemuMachine
from vmtest.portable.runtime.namespace import identifier
from vmtest.portable.runtime.parallel import each_in_parallel
from vmtest.portable.runtime.polling_condition import PollingCondition
from vmtest.portable.runtime.qemu import MachineConfig, hosts_lines, write_start_script
from vmtest.portable.runtime.run_record import RunRecord
from vmtest.portable.runtime.rundir import RunDir
from vmtest.portable.runtime.signals import shielded
from vmtest.portable.runtime.vlan import VLan
from vmtest.progress.events import Emit
from vmtest.redaction import Redactor
from vmtest.waiting import Timeout, format_seconds, retry, to_seconds

# How long a machine may take from the testScript first needing it to its backdoor shell.
BOOT_DEADLINE_KVM = 120.0
BOOT_DEADLINE_TCG = 600.0


class GlobalTimeoutReached(Exception):
    """The run exceeded its global timeout; every machine was killed."""


class _TestCase(unittest.TestCase):
    failureException = RequestedAssertionFailed

    def runTest(self) -> None:
        return None


class NoDebug:
    """The testScript's ``debug``: upstream's DebugNop (its RemotePdb hook, enableDebugHook, is not offered)."""

    def breakpoint(self) -> None:
        """Do nothing: there is no debug hook to stop at."""


class Driver:
    """Owns the machines, VLANs, loggers and timers of one test run."""

    def __init__(
        self,
        machines: list[MachineConfig],
        test_script: str,
        out_dir: Path,
        logger: CompositeLogger,
        script_path: Path | None = None,
        global_timeout: float | None = None,
        keep_machine_state: bool = False,
        tmp_dir: Path | None = None,
        more_scripts: Sequence[Path] = (),
        boot_timeout: float | None = None,
        redactor: Redactor | None = None,
        progress: Emit | None = None,
        checkpoints: Path | None = None,
        fresh: bool = False,
        record: RunRecord | None = None,
    ) -> None:
        self.tests = test_script
        self.script_path = script_path
        self.more_scripts = list(more_scripts)
        self.out_dir = out_dir
        self.logger = logger
        self.keep_machine_state = keep_machine_state
        self.configs = sorted(machines, key=lambda config: config.name)
        # One redaction path: every message, report and console log of this run goes through it;
        # the testScript declares values on the same object (Redactor.for_driver).
        self.redactor = redactor or Redactor()
        self.logger.redact = self.redactor.redact
        # The run's record and outcome: the caller's (``vmtest run`` concludes it), else this driver's own.
        self.record = record or RunRecord(out_dir, self.redactor)
        if global_timeout is not None or record is None:
            self.record.global_timeout = 3600 if global_timeout is None else global_timeout
        self.record.details = self._record_details
        # The progress display: every log section is open work, machines say when they start and stop.
        self.progress = progress
        if progress is not None:
            self.logger.add(ProgressLogger(progress))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._own_tmp = tmp_dir is None
        # Locked while the run lives: the next run removes it if this one is killed.
        self._run_dir: RunDir | None = None
        if tmp_dir is None:
            self._run_dir = RunDir(keep=keep_machine_state)
            tmp_dir = self._run_dir.path
        self.tmp_dir = tmp_dir
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.polling_conditions: list[PollingCondition] = []
        self.checkpoints: CheckpointStore | None = None
        self._timer: threading.Timer | None = None
        self._vlan_numbers = sorted({vlan for config in self.configs for vlan in config.vlans})
        self.vlans: list[VLan] = []
        self.machines: list[QemuMachine | NspawnMachine] = []
        self.container_network: ContainerNetwork | None = None
        hosts = hosts_lines(self.configs)
        scripts_dir = self.tmp_dir / "start-scripts"
        try:
            with self.logger.nested("start all VLans"):
                self.vlans = [VLan(nr, self.tmp_dir, self.logger) for nr in self._vlan_numbers]
                self.container_network = ContainerNetwork.for_run(self.configs, self.logger)
            for config in self.configs:
                if is_container(config):
                    self.machines.append(new_container(self, config, boot_timeout))
                    continue
                script = write_start_script(config, hosts, scripts_dir)
                self.machines.append(
                    QemuMachine(
                        out_dir=self.out_dir,
                        tmp_dir=self.tmp_dir,
                        start_command=str(script),
                        logger=self.logger,
                        name=config.name,
                        keep_machine_state=keep_machine_state,
                        callbacks=[self.check_polling_conditions],
                        boot_panic_retries=1 if config.accelerator.name == "tcg" else 0,
                        boot_nice=config.boot_nice,
                        boot_timeout=boot_deadline(boot_timeout, config),
                        redact=self.redactor.redact,
                        progress=progress,
                    )
                )
        except BaseException:
            self.terminate()
            raise
        # vmtest.checkpoint's store: the run's testScripts by the filename they are compiled under.
        if checkpoints is not None:
            scripts = {script_filename(self.script_path): self.tests}
            scripts.update({str(path): path.read_text() for path in self.more_scripts})
            self.checkpoints = CheckpointStore(checkpoints, scripts, {c.name: c for c in self.configs},
                                               self.logger.info, fresh=fresh)
            # A checkpoint is QEMU's snapshot of RAM and disk: a container has none, so a block
            # naming one just runs (vmtest.checkpoint says so in the log).
            for config, machine in zip(self.configs, self.machines, strict=True):
                if not is_container(config):
                    machine.checkpoint_store = self.checkpoints
        for config, machine in zip(self.configs, self.machines, strict=True):
            if is_container(config):
                self.logger.info(f"{config.name}: {config.arch} container (systemd-nspawn)")
                continue
            accel = config.accelerator
            machine.accelerator_reason = f"{accel.name}: {accel.reason}"
            self.logger.info(f"{config.name}: {config.arch} guest, accelerator {accel.name.upper()} ({accel.reason})")
            if accel.name == "tcg":
                self.logger.warning(
                    f"{config.name} runs under TCG software emulation: expect it to be several times slower"
                )

    # The run's state, as its record has it.
    @property
    def global_timeout(self) -> float:
        return self.record.global_timeout

    @property
    def timed_out(self) -> bool:
        return self.record.timed_out

    @property
    def timed_out_while(self) -> str:
        return self.record.timed_out_while

    @property
    def outcome(self) -> str:
        return self.record.outcome

    @outcome.setter
    def outcome(self, outcome: str) -> None:
        self.record.conclude(outcome)

    @property
    def artifact_errors(self) -> list[str]:
        return self.record.artifact_errors

    # -- context management ------------------------------------------------------------------

    def __enter__(self) -> Driver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.terminate()

    def terminate(self) -> None:
        """Kill every machine and VLAN, stop the timer, write the reports; signals cannot interrupt it.

        A SIGINT or SIGTERM (or the global timer's interrupt) that arrives meanwhile
        is logged and ignored. One that lands before the shield is up starts the
        teardown over: every step is idempotent.
        """
        while True:
            try:
                with shielded():
                    if self._timer is not None:
                        self._timer.cancel()
                        if self._timer.is_alive():
                            self._timer.join()
                    self._tear_down()
                return
            except Exception:
                raise
            except BaseException as interrupt:  # KeyboardInterrupt, Terminated
                self.logger.warning(f"{type(interrupt).__name__} during teardown: starting it over")

    def _tear_down(self) -> None:
        try:
            for machine in self.machines:
                try:
                    machine.release()
                except Exception as error:  # keep tearing down the others
                    self.logger.error(f"releasing {machine.name}: {error}")
            for vlan in self.vlans:
                try:
                    vlan.stop()
                except Exception as error:
                    self.logger.error(f"stopping vlan{vlan.nr}: {error}")
            if self.container_network is not None:
                self.container_network.stop()
            # Each artifact is written on its own: one that fails (a full disk) does not stop the others.
            self._write_artifact("serial logs (redacted again with every declared value)", self._redact_console_logs)
            self._write_artifact(f"run record {self.record.path}", self.record.write)
            self._write_artifact("the loggers' reports (JUnit)", self.logger.close)
        finally:
            if self._own_tmp and not self.keep_machine_state:
                shutil.rmtree(self.tmp_dir, ignore_errors=True)
            if self._run_dir is not None:
                self._run_dir.close()

    def _write_artifact(self, what: str, write: Callable[[], None]) -> None:
        try:
            write()
        except OSError as error:
            message = f"could not write {what}: {error.strerror or error}" + (
                f" ({error.filename})" if error.filename else "")
            if message not in self.artifact_errors:
                self.artifact_errors.append(message)
            with contextlib.suppress(Exception):
                self.logger.error(message)

    def _redact_console_logs(self) -> None:
        for machine in self.machines:
            path = machine.console_log_path
            if path.is_file():
                text = path.read_text(errors="replace")
                redacted = self.redactor.redact(text)
                if redacted != text:
                    path.write_text(redacted)

    def _record_details(self) -> dict[str, Any]:
        """The run record's machines and checkpoints."""
        return {
            "machines": {
                config.name: {
                    "arch": config.arch,
                    "kind": config.kind,
                    "accelerator": "none" if is_container(config) else config.accelerator.name,
                    "accelerator_reason": None if is_container(config) else config.accelerator.reason,
                    "image": str(config.image.directory),
                    "recipe": str(config.image.recipe.path),
                    "kernel": config.image.kernel_version,
                    "vlans": list(config.vlans),
                    "boot_to_backdoor_seconds": _rounded(machine.boot_seconds()),
                    "console_log": str(machine.console_log_path),
                    "boot_panics_retried": machine.boot_panics,
                }
                for config, machine in zip(self.configs, self.machines, strict=False)
            },
            "checkpoints": self.checkpoints.record() if self.checkpoints is not None else None,
        }

    # -- the testScript namespace ---------------------------------------------------------------

    def test_symbols(self) -> dict[str, Any]:
        """The names a testScript sees (upstream §2)."""
        symbols: dict[str, Any] = {
            "start_all": self.start_all,
            "test_script": self.test_script,
            "run_tests": self.run_tests,
            "machines": self.machines,
            "machines_qemu": [machine for machine in self.machines if isinstance(machine, QemuMachine)],
            "machines_nspawn": [machine for machine in self.machines if isinstance(machine, NspawnMachine)],
            "vlans": self.vlans,
            "driver": self,
            "log": self.logger,
            "os": os,
            "create_machine": self.create_machine,
            "subtest": self.subtest,
            "join_all": self.join_all,
            "retry": retry,
            "serial_stdout_off": self.serial_stdout_off,
            "serial_stdout_on": self.serial_stdout_on,
            "polling_condition": self.polling_condition,
            "BaseMachine": QemuMachine,
            "QemuMachine": QemuMachine,
            "Machine": QemuMachine,
            "t": _TestCase(),
            "debug": NoDebug(),
        }
        symbols.update({identifier(machine.name): machine for machine in self.machines})
        if len(self.machines) == 1:
            symbols["machine"] = self.machines[0]
        symbols.update({f"vlan{vlan.nr}": vlan for vlan in self.vlans})
        return symbols

    def compile_script(self) -> Any:
        """Compile the testScript; raises SyntaxError before anything boots."""
        return compile(self.tests, script_filename(self.script_path), "exec")

    def test_script(self) -> None:
        """Run the testScript in the namespace; then each of ``more_scripts`` in a fresh one.

        With several scripts (e.g. the boot, services and integration suites on
        one boot of the machines), a failing script does not stop the next ones;
        the run then fails naming every failed script.
        """
        if not self.more_scripts:
            with self.logger.nested("running the VM test script"):
                exec(self.compile_script(), self.test_symbols(), None)
            return
        scripts = [(Path(script_filename(self.script_path)), self.tests)]
        scripts += [(path, path.read_text()) for path in self.more_scripts]
        failed: list[str] = []
        for path, source in scripts:
            with self.logger.nested(f"running the VM test script {path}"):
                try:
                    exec(compile(source, str(path), "exec"), self.test_symbols(), None)
                except (AssertionError, MachineError) as error:
                    self.logger.log_test_error(f"{path}: {type(error).__name__}: {error}")
                    failed.append(f"{path.name}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
        if failed:
            raise RequestedAssertionFailed(f"{len(failed)} of {len(scripts)} testScripts failed:\n  "
                                           + "\n  ".join(failed))

    def run_tests(self) -> None:
        """Start the global timer, run the script, then sync the machines that are up."""
        self._start_global_timer()
        self.test_script()
        for machine in self.machines:
            if machine.is_up():
                machine.execute("sync")

    def _start_global_timer(self) -> None:
        if self.global_timeout <= 0 or self._timer is not None:
            return

        def expire() -> None:
            # The record is written on the way out, maybe before the caller concludes it: it times out now.
            self.record.time_out(self.logger.doing())
            self.logger.error(
                f"global timeout of {format_seconds(self.global_timeout)} reached {self.timed_out_while}: "
                "killing every machine"
            )
            for machine in self.machines:
                machine.release()
            _thread.interrupt_main()

        self._timer = threading.Timer(self.global_timeout, expire)
        self._timer.daemon = True
        self._timer.start()

    def start_all(self) -> None:
        """Start every machine in parallel; raises MachineError listing the ones that failed."""
        with self.logger.nested("start all VMs"):
            failures = each_in_parallel(self.machines, lambda machine: machine.start(), lambda machine: machine.name)
            if failures:
                raise MachineError(
                    "failed to start: " + "; ".join(f"{name}: {error}" for name, error in failures.items())
                )

    def join_all(self) -> None:
        """Wait for every machine to power off."""
        with self.logger.nested("wait for all VMs to finish"):
            for machine in self.machines:
                machine.wait_for_shutdown()

    def create_machine(
        self, start_command: str, *, name: str | None = None, keep_machine_state: bool = False,
        keep_vm_state: bool = False,
    ) -> QemuMachine:
        """An extra machine from a start command (released with the others); ``keep_vm_state`` is the
        pre-2026 spelling of ``keep_machine_state``."""
        machine = QemuMachine(
            out_dir=self.out_dir, tmp_dir=self.tmp_dir, start_command=start_command, logger=self.logger,
            name=name, keep_machine_state=keep_machine_state, callbacks=[self.check_polling_conditions],
            keep_vm_state=keep_vm_state, progress=self.progress,
        )
        self.machines.append(machine)
        return machine

    @contextmanager
    def subtest(self, name: str) -> Iterator[None]:
        """A named section and JUnit test case; logs and re-raises failures."""
        with self.logger.subtest(name):
            try:
                yield
            except Exception as error:
                self.logger.log_test_error(f'Test "{name}" failed with error: "{error}"')
                raise

    def serial_stdout_on(self) -> None:
        self.logger.print_serial_logs(True)

    def serial_stdout_off(self) -> None:
        self.logger.print_serial_logs(False)

    def check_polling_conditions(self) -> None:
        for condition in list(self.polling_conditions):
            condition.check()

    def polling_condition(
        self,
        fun_: Callable[[], bool | None] | None = None,
        *,
        seconds_interval: float = 2.0,
        interval: Timeout | None = None,
        description: str | None = None,
    ) -> Any:
        """Decorator turning a function into a PollingCondition (usable as ``with cond:``), checked at
        most every ``interval`` (2 s; ``seconds_interval`` is its older name); TypeError for both."""
        if interval is not None and seconds_interval != 2.0:
            raise TypeError("polling_condition() takes one of 'interval' and 'seconds_interval', got both")
        every = to_seconds(interval) if interval is not None else seconds_interval

        def wrap(fun: Callable[[], bool | None]) -> PollingCondition:
            condition = PollingCondition(fun, self.logger, every, description)
            condition.active_conditions = self.polling_conditions
            return condition

        return wrap(fun_) if fun_ is not None else wrap


def boot_deadline(configured: float | None, config: MachineConfig) -> float:
    """The boot deadline of ``config``'s machine: ``configured``, else a default scaled for TCG."""
    if configured is not None:
        return configured
    return BOOT_DEADLINE_TCG if config.accelerator.name == "tcg" else BOOT_DEADLINE_KVM


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 2)


def script_filename(script_path: Path | None) -> str:
    """The filename a testScript is compiled under: its tracebacks and checkpoint keys name it so."""
    return str(script_path or "<testScript>")


def script_traceback(error: BaseException, script_path: Path | None) -> str:
    """The traceback frames that belong to the testScript, with their source lines."""
    name = script_filename(script_path)
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename == name]
    lines = []
    for frame in frames:
        source = frame.line or ""
        if script_path is not None and not source:
            try:
                source = script_path.read_text().splitlines()[frame.lineno - 1 if frame.lineno else 0].strip()
            except (OSError, IndexError):
                source = ""
        lines.append(f"  {name}, line {frame.lineno}: {source}")
    return "\n".join(lines)
