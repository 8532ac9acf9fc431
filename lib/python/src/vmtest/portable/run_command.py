"""``vmtest run``: read and check the testScripts and machines, lock a fresh output directory, run
the Driver (or the interactive shell), and return the exit status from the run's outcome.

The run's record and outcome belong to its ``RunRecord``; this module only concludes it.
"""

from __future__ import annotations

import argparse
import signal
import time
import traceback
from pathlib import Path

from vmtest.artifacts import DRIVER_JUNIT
from vmtest.cli import EXIT_BAD_INPUT, EXIT_FAILED
from vmtest.cli import error as _error
from vmtest.errors import ImageBuildError, MachineError, RecipeError
from vmtest.portable import doctor
from vmtest.portable.accel import select_accelerator
from vmtest.portable.image.builder import cache_dir
from vmtest.portable.image.recipe import Recipe
from vmtest.portable.outdir import OutputLock, check_file_target, lock_output_dir, prepare_output_dir
from vmtest.portable.runtime.driver import Driver, script_traceback
from vmtest.portable.runtime.driver_log import CompositeLogger, JunitLogger, TerminalLogger
from vmtest.portable.runtime.namespace import namespace_names, undefined_names
from vmtest.portable.runtime.run_record import RunRecord
from vmtest.portable.runtime.rundir import sweep_stale_run_dirs
from vmtest.portable.runtime.signals import RunSignals, Terminated
from vmtest.portable.runtime.spec import MachineSpec, configure_machines, parse_machine_specs
from vmtest.progress.source import showing_progress
from vmtest.redaction import Redactor
from vmtest.waiting import format_seconds

EXIT_INTERRUPTED = 130


def _read_scripts(paths: list[str]) -> list[tuple[Path, str]] | None:
    """Read and compile every testScript before anything boots; None after saying what is wrong."""
    scripts = []
    for name in paths:
        script_path = Path(name)
        try:
            source = script_path.read_text()
        except OSError as error:
            _error(f"cannot read testScript {script_path}: {error.strerror}")
            return None
        try:
            compile(source, str(script_path), "exec")
        except SyntaxError as error:
            source_line = (error.text or "").rstrip()
            _error(f"testScript {script_path} is malformed: line {error.lineno}: {error.msg}\n  {source_line}")
            return None
        scripts.append((script_path, source))
    return scripts


def _preflight(recipes: list[Recipe], *, booting: bool) -> bool:
    """Check the host has what ``recipes`` need before any work; False after one line per missing piece."""
    missing = doctor.preflight(recipes, booting=booting)
    for line in missing:
        _error(line)
    return not missing


def _emulated_vms(specs: list[MachineSpec]) -> list[str]:
    """The VMs of ``specs`` that would run under TCG, each with why (``--force-accel`` refuses them)."""
    emulated = []
    for spec in specs:
        if spec.kind == "vm":
            accelerator = select_accelerator(spec.recipe.machine_arch)
            if accelerator.name == "tcg":
                # The reason's first line: a failed KVM probe's QEMU error, without QEMU's assertion.
                emulated.append(f"{spec.name} ({spec.recipe.machine_arch}): {accelerator.reason.splitlines()[0]}")
    return emulated


def _check_names(scripts: list[tuple[Path, str]], specs: list[MachineSpec]) -> bool:
    """Check that every script names only machines and driver names that exist; False after one line."""
    names = [spec.name for spec in specs]
    known = namespace_names(names, {vlan for spec in specs for vlan in spec.vlans})
    for path, source in scripts:
        missing = undefined_names(source, str(path), known)
        if missing:
            listed = ", ".join(f"`{name}` (line {line})" for name, line in missing)
            _error(f"testScript {path} uses {listed}, which is not defined: no machine or driver name "
                   f"has it (machines: {', '.join(sorted(names))})")
            return False
    return True


def _interruption(signals: RunSignals, record: RunRecord, stage: str) -> tuple[str, str, int]:
    """The outcome, message and exit status of a run a signal or the global timeout ended."""
    if record.timed_out:
        return ("timed out", f"global timeout of {format_seconds(record.global_timeout)} reached "
                f"{record.timed_out_while}".rstrip(), EXIT_FAILED)
    if signals.first in ("SIGTERM", "SIGHUP"):
        # SIGHUP: the terminal closed (or a supervisor hung the run up); ended as on SIGTERM.
        return "terminated", f"terminated ({signals.first}){stage}", 128 + (signals.first_number or signal.SIGTERM)
    return "interrupted", f"interrupted (SIGINT){stage}", EXIT_INTERRUPTED


def _write_early_artifacts(record: RunRecord, logger: CompositeLogger) -> list[str]:
    """Run record and JUnit for a run that ended before it had a driver; returns the writes that failed."""
    failures = []
    for what, write in (("run record", record.write), ("JUnit report", logger.close)):
        try:
            write()
        except OSError as error:
            failures.append(f"could not write the {what}: {error.strerror or error}")
    return failures


def run(args: argparse.Namespace) -> int:
    scripts = _read_scripts(args.script)
    if scripts is None:
        return EXIT_BAD_INPUT
    (script_path, source), more = scripts[0], [path for path, _ in scripts[1:]]
    out_dir = Path(args.out).resolve()
    junit_path = Path(args.junit_xml).resolve() if args.junit_xml else out_dir / DRIVER_JUNIT
    lock: OutputLock | None = None
    try:
        specs = parse_machine_specs(args.machines)
        if not _check_names(scripts, specs):
            return EXIT_BAD_INPUT
        if args.force_accel and (emulated := _emulated_vms(specs)):
            _error("--force-accel: no hardware acceleration for " + "; ".join(emulated) + " (nothing was started)")
            return EXIT_BAD_INPUT
        if not _preflight([spec.recipe for spec in specs], booting=True):
            return EXIT_BAD_INPUT
        # Held until the run ends: a second run into this directory stops here, naming this one.
        lock = lock_output_dir(out_dir)
        moved = prepare_output_dir(out_dir)
        if args.junit_xml:
            check_file_target(junit_path)
    except (RecipeError, ImageBuildError, ValueError) as error:  # OutputDirError is a ValueError
        if lock is not None:
            lock.release(forget=True)
        _error(str(error))
        return EXIT_BAD_INPUT
    assert lock is not None
    with lock:
        if moved is not None:
            _error(f"the previous run's artifacts in {out_dir} were moved to {moved}")
        return _run_in(args, out_dir, junit_path, specs, script_path, source, more)


def _run_in(args: argparse.Namespace, out_dir: Path, junit_path: Path, specs: list[MachineSpec],
            script_path: Path, source: str, more: list[Path]) -> int:
    """``vmtest run`` once its input is checked and its output directory locked and fresh."""
    stale = sweep_stale_run_dirs()
    if stale:
        _error(f"removed {len(stale)} temporary director{'y' if len(stale) == 1 else 'ies'} of vmtest runs "
               f"that were killed: {', '.join(str(path) for path in stale)}")
    junit = JunitLogger(junit_path, suite_name=f"vmtest {script_path.stem}")
    logger = CompositeLogger([TerminalLogger(), junit])
    redactor = Redactor()
    logger.redact = redactor.redact
    record = RunRecord(out_dir, redactor, global_timeout=args.global_timeout)
    driver: Driver | None = None
    code, stage = EXIT_FAILED, " while building the images"
    record.conclude("failed")
    artifact_errors: list[str] = []
    # The interactive shell needs the terminal to itself: no display unless asked for.
    mode = "off" if args.interactive and args.progress == "auto" else args.progress
    with RunSignals() as signals, showing_progress(mode) as progress:
        try:
            try:
                configs = configure_machines(specs, progress=progress.emit)
            except (RecipeError, ImageBuildError) as error:
                code = EXIT_BAD_INPUT
                record.conclude("bad input")
                logger.log_test_error(str(error))
                raise _Ended() from None
            for config in configs:
                junit.properties[f"{config.name}.arch"] = config.arch
                junit.properties[f"{config.name}.accelerator"] = config.accelerator.name
            stage = " while starting the machines"
            driver = Driver(configs, source, out_dir, logger, script_path=script_path, more_scripts=more,
                            record=record, keep_machine_state=args.keep_machine_state,
                            boot_timeout=args.boot_timeout, redactor=redactor, progress=progress.emit,
                            checkpoints=None if args.no_checkpoints else checkpoint_dir(), fresh=args.fresh)
            stage = ""
            with driver:
                code = _run_driver(driver, args, signals, script_path)
            signals.stopping = True
        except _Ended:
            pass
        except MachineError as error:
            logger.log_test_error(str(error))
        except (KeyboardInterrupt, Terminated):
            signals.stopping = True
            outcome, message, code = _interruption(signals, record, stage)
            record.conclude(outcome)
            logger.log_test_error(message)
        signals.stopping = True
        # With a driver, its teardown wrote the record and JUnit; without one, they are written here.
        artifact_errors = record.artifact_errors if driver is not None else _write_early_artifacts(record, logger)
        for problem in artifact_errors:
            _error(redactor.redact(problem))
        if artifact_errors and code == 0:
            code = EXIT_FAILED
        _error(
            f"{record.outcome} in {format_seconds(time.monotonic() - record.started)}; "
            f"artifacts in {out_dir} (JUnit {junit.path}, run record {record.path})"
            + (f"; {len(artifact_errors)} artifact(s) could not be written" if artifact_errors else "")
        )
    return code


class _Ended(Exception):
    """The run ended early; its outcome was already recorded."""


def _run_driver(driver: Driver, args: argparse.Namespace, signals: RunSignals, script_path: Path) -> int:
    """Run the testScript (or the shell) on ``driver``, conclude its record; returns the exit status."""
    outcome, code = _outcome_of(driver, args, signals, script_path)
    driver.record.conclude(outcome)
    return code


def _outcome_of(driver: Driver, args: argparse.Namespace, signals: RunSignals,
                script_path: Path) -> tuple[str, int]:
    """Run the testScript (or the shell) on ``driver``; returns the outcome and the exit status."""
    logger = driver.logger

    def interrupted() -> tuple[str, int]:
        signals.stopping = True
        outcome, message, code = _interruption(signals, driver.record, "")
        logger.log_test_error(message)
        return outcome, code

    try:
        if args.interactive:
            interact(driver)
            # ptpython catches every exception while it reads a line or runs one, the signal's
            # included; a hung-up terminal then reads end-of-input and the shell returns.
            if signals.received:
                return interrupted()
        else:
            driver.run_tests()
        return "passed", 0
    except (KeyboardInterrupt, Terminated):
        return interrupted()
    except (AssertionError, MachineError) as error:  # helpers' failures are AssertionErrors too
        frames = script_traceback(error, script_path)
        logger.log_test_error(f"{type(error).__name__}: {error}" + (f"\n{frames}" if frames else ""))
        return ("timed out" if driver.timed_out else "failed"), EXIT_FAILED
    except Exception as error:
        if signals.received and not driver.timed_out:
            return interrupted()  # what the signal broke (a terminal that hung up) is not the script's fault
        logger.log_test_error("testScript crashed:\n" + "".join(traceback.format_exception(error)))
        return "crashed", EXIT_FAILED


def interact(driver: Driver) -> None:
    """Open ptpython with the testScript namespace (plain ``code.interact`` without it); nothing boots
    until the user asks."""
    try:
        from ptpython.repl import embed
    except ImportError:
        import code

        code.interact(local=driver.test_symbols(), banner="vmtest interactive (install ptpython for a better shell)")
        return
    embed(locals=driver.test_symbols(), history_filename=str(Path(".vmtest-history").resolve()))


def checkpoint_dir() -> Path:
    """Where checkpoints live: next to the images in the cache."""
    return cache_dir() / "checkpoints"
