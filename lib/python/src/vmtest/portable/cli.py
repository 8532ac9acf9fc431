"""``vmtest``: run a testScript on the portable runtime, build images, probe the accelerator, check the host."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from vmtest import ci_report
from vmtest.errors import ImageBuildError, MachineError, RecipeError
from vmtest.portable import doctor
from vmtest.portable.accel import select_accelerator
from vmtest.portable.image.builder import build_image, cache_dir
from vmtest.portable.image.recipe import Recipe, load_recipe
from vmtest.portable.outdir import OutputLock, check_file_target, lock_output_dir, prepare_output_dir
from vmtest.portable.runtime.checkpoints import human_bytes, read_stored, stored_checkpoints
from vmtest.portable.runtime.driver import (
    BOOT_DEADLINE_KVM,
    BOOT_DEADLINE_TCG,
    Driver,
    script_traceback,
    write_run_record,
)
from vmtest.portable.runtime.logger import CompositeLogger, JunitLogger, TerminalLogger
from vmtest.portable.runtime.namespace import namespace_names, undefined_names
from vmtest.portable.runtime.rundir import sweep_stale_run_dirs
from vmtest.portable.runtime.signals import RunSignals, Terminated
from vmtest.portable.runtime.spec import MachineSpec, configure_machines, parse_machine_specs
from vmtest.progress.source import MODES, showing_progress
from vmtest.redaction import Redactor
from vmtest.timeouts import format_seconds

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _error(message: str) -> None:
    # A terminal that hung up fails every write (EIO): the run's exit status must not change for it.
    with contextlib.suppress(OSError):
        print(f"vmtest: {message}", file=sys.stderr)


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


def _interruption(signals: RunSignals, driver: Driver | None, stage: str) -> tuple[str, str, int]:
    """The outcome, message and exit status of a run a signal or the global timeout ended."""
    if driver is not None and driver.timed_out:
        return ("timed out", f"global timeout of {format_seconds(driver.global_timeout)} reached "
                f"{driver.timed_out_while}".rstrip(), EXIT_FAILED)
    if signals.first in ("SIGTERM", "SIGHUP"):
        # SIGHUP: the terminal closed (or a supervisor hung the run up); ended as on SIGTERM.
        return "terminated", f"terminated ({signals.first}){stage}", 128 + (signals.first_number or signal.SIGTERM)
    return "interrupted", f"interrupted (SIGINT){stage}", EXIT_INTERRUPTED


def _write_early_artifacts(out_dir: Path, logger: CompositeLogger, redactor: Redactor, outcome: str,
                           started: float) -> list[str]:
    """JUnit and run record for a run that ended before it had a driver; returns the writes that failed."""
    failures = []
    record = {"outcome": outcome, "duration_seconds": round(time.monotonic() - started, 2), "machines": {}}
    def run_record() -> None:
        write_run_record(out_dir, record, redactor)

    writes: list[tuple[str, Callable[[], None]]] = [("run record", run_record), ("JUnit report", logger.close)]
    for what, write in writes:
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
    junit_path = Path(args.junit_xml).resolve() if args.junit_xml else out_dir / "vmtest-junit.xml"
    lock: OutputLock | None = None
    try:
        specs = parse_machine_specs(args.machines)
        if not _check_names(scripts, specs):
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
    started = time.monotonic()
    driver: Driver | None = None
    outcome, code, stage = "failed", EXIT_FAILED, " while building the images"
    artifact_errors: list[str] = []
    # The interactive shell needs the terminal to itself: no display unless asked for.
    mode = "off" if args.interactive and args.progress == "auto" else args.progress
    with RunSignals() as signals, showing_progress(mode) as progress:
        try:
            try:
                configs = configure_machines(specs, progress=progress.emit)
            except (RecipeError, ImageBuildError) as error:
                outcome, code = "bad input", EXIT_BAD_INPUT
                logger.log_test_error(str(error))
                raise _Ended() from None
            for config in configs:
                junit.properties[f"{config.name}.arch"] = config.arch
                junit.properties[f"{config.name}.accelerator"] = config.accelerator.name
            stage = " while starting the machines"
            driver = Driver(configs, source, out_dir, logger, script_path=script_path, more_scripts=more,
                            global_timeout=args.global_timeout, keep_machine_state=args.keep_machine_state,
                            boot_timeout=args.boot_timeout, redactor=redactor, progress=progress.emit,
                            checkpoints=None if args.no_checkpoints else checkpoint_dir(), fresh=args.fresh)
            stage = ""
            with driver:
                outcome, code = _run_driver(driver, args, signals, script_path)
                driver.outcome = outcome
            signals.stopping = True
        except _Ended:
            pass
        except MachineError as error:
            logger.log_test_error(str(error))
        except (KeyboardInterrupt, Terminated):
            signals.stopping = True
            outcome, message, code = _interruption(signals, driver, stage)
            logger.log_test_error(message)
        signals.stopping = True
        if driver is None:
            artifact_errors = _write_early_artifacts(out_dir, logger, redactor, outcome, started)
        else:
            artifact_errors = driver.artifact_errors
        for problem in artifact_errors:
            _error(redactor.redact(problem))
        if artifact_errors and code == 0:
            code = EXIT_FAILED
        _error(
            f"{outcome} in {format_seconds(time.monotonic() - started)}; "
            f"artifacts in {out_dir} (JUnit {junit.path}, run record {out_dir / 'vmtest-run.json'})"
            + (f"; {len(artifact_errors)} artifact(s) could not be written" if artifact_errors else "")
        )
    return code


class _Ended(Exception):
    """The run ended early; its outcome was already recorded."""


def _run_driver(driver: Driver, args: argparse.Namespace, signals: RunSignals,
                script_path: Path) -> tuple[str, int]:
    """Run the testScript (or the shell) on ``driver``; returns the outcome and the exit status."""
    logger = driver.logger

    def interrupted() -> tuple[str, int]:
        signals.stopping = True
        outcome, message, code = _interruption(signals, driver, "")
        logger.log_test_error(message)
        return outcome, code

    try:
        if args.interactive:
            from vmtest.portable.runtime.repl import interact
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


def build(args: argparse.Namespace) -> int:
    try:
        recipes = [load_recipe(path) for path in args.recipes]
        if not _preflight(recipes, booting=False):
            return EXIT_BAD_INPUT
    except (RecipeError, ImageBuildError) as error:
        _error(str(error))
        return EXIT_BAD_INPUT
    with RunSignals() as signals, showing_progress(args.progress) as progress:
        for path, recipe in zip(args.recipes, recipes, strict=True):
            try:
                started = time.monotonic()
                image = build_image(recipe, progress=progress.emit)
            except (RecipeError, ImageBuildError) as error:
                _error(str(error))
                return EXIT_BAD_INPUT
            except (KeyboardInterrupt, Terminated):
                signals.stopping = True
                _error(f"{signals.first} while building {recipe.path}: the build was stopped and its "
                       "mounts and files removed; the cache is as it was")
                return EXIT_INTERRUPTED if signals.first == "SIGINT" else 128 + (signals.first_number or 15)
            print(json.dumps({"recipe": path, "image": str(image.directory),
                              "seconds": round(time.monotonic() - started, 2)}))
    return 0


def accel(args: argparse.Namespace) -> int:
    for arch in args.arch:
        choice = select_accelerator(arch)
        print(f"{arch}: {choice.name} ({choice.reason})")
    return 0


def check_host(args: argparse.Namespace) -> int:
    results = doctor.run_checks(doctor.Host.current(), args.arch or doctor.ARCHES, offline=args.offline)
    for result in results:
        print(result.line())
    failed = [result.name for result in results if result.status == "FAIL"]
    warnings = sum(result.status == "warn" for result in results)
    if not doctor.passed(results):
        print(f"vmtest doctor: {len(failed)} required check(s) failed: {', '.join(failed)}")
        return EXIT_FAILED
    print(f"vmtest doctor: every required check passed ({warnings} warning(s))")
    return 0


def report(args: argparse.Namespace) -> int:
    try:
        junit, summary, page = ci_report.merge(Path(args.directory))
    except (FileNotFoundError, ET.ParseError) as error:
        _error(str(error))
        return EXIT_FAILED
    result = json.loads(summary.read_text())
    print(f"vmtest: {result['tests']['tests']} cases, {len(result['failed_cases'])} failed; "
          f"{junit}, {summary}, {page}")
    for case in result["failed_cases"]:
        print(f"  FAILED {case}")
    return 0 if result["result"] == "passed" else EXIT_FAILED


def verdict(args: argparse.Namespace) -> int:
    try:
        passed, message = ci_report.verdict(Path(args.directory))
    except FileNotFoundError as error:
        _error(f"{args.directory} is not a test's artifacts: {error.strerror}: {error.filename}")
        return EXIT_BAD_INPUT
    print(message, file=sys.stdout if passed else sys.stderr)
    return 0 if passed else EXIT_FAILED


def checkpoint_dir() -> Path:
    """Where checkpoints live: next to the images in the cache."""
    return cache_dir() / "checkpoints"


def _tree_size(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def cache(args: argparse.Namespace) -> int:
    """List the cache's images and checkpoints with their sizes; with --prune, delete the checkpoints."""
    images = sorted(entry for entry in (cache_dir() / "images").glob("*") if entry.is_dir())
    print(f"images in {cache_dir() / 'images'}:")
    for image in images:
        print(f"  {image.name:<48} {human_bytes(_tree_size(image)):>10}")
    print(f"checkpoints in {checkpoint_dir()}:")
    for path in stored_checkpoints(checkpoint_dir()):
        stored = read_stored(path)
        made = time.strftime("%Y-%m-%d %H:%M", time.localtime(stored.created)) if stored else "incomplete"
        size = human_bytes(_tree_size(path))
        if args.prune:
            shutil.rmtree(path)
        print(f"  {path.name:<48} {size:>10}  {made}" + ("  (deleted)" if args.prune else ""))
    return 0


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value!r}: must be more than 0 seconds")
    return seconds


def _progress_mode(value: str) -> str:
    if value not in MODES:
        raise argparse.ArgumentTypeError(f"{value!r}: expected one of {', '.join(MODES)}")
    return value


def _add_progress_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--progress", type=_progress_mode, default=os.environ.get("VMTEST_PROGRESS", "auto"),
                         metavar="MODE", help="live display (on a terminal), plain time-stamped lines with a "
                                              "heartbeat at least every 10 s (otherwise), or off: "
                                              f"{'|'.join(MODES)} (default: $VMTEST_PROGRESS, else auto)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="vmtest", description=__doc__)
    top.add_argument("--version", action="version", version=f"vmtest {_version()}")
    commands = top.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run a testScript on Debian QEMU VMs")
    run_parser.add_argument("script", nargs="+",
                            help="the testScript (the same file the Nix check runs); several run in turn "
                                 "on the same machines, each in a fresh namespace")
    run_parser.add_argument("--machines", action="append", required=True, metavar="SPEC",
                            help="name=recipe.toml[,…], a recipe, or a TOML file with [machines.<name>]")
    run_parser.add_argument("--out", "-o", default="out", help="output directory (default: ./out)")
    run_parser.add_argument("--interactive", "-I", action="store_true", help="open a ptpython shell")
    run_parser.add_argument("--junit-xml", help="the driver's JUnit report (default: OUT/vmtest-junit.xml)")
    run_parser.add_argument("--global-timeout", type=float, default=3600, metavar="S")
    run_parser.add_argument("--boot-timeout", type=_seconds, metavar="S",
                            help="how long a machine may take to reach its backdoor shell once the testScript "
                                 f"needs it (default: {BOOT_DEADLINE_KVM:.0f} s, {BOOT_DEADLINE_TCG:.0f} s under TCG)")
    run_parser.add_argument("--keep-machine-state", "-K", "--keep-vm-state", action="store_true",
                            dest="keep_machine_state")
    run_parser.add_argument("--fresh", action="store_true",
                            help="resume no checkpoint: boot cold, and save each checkpoint anew")
    run_parser.add_argument("--no-checkpoints", action="store_true",
                            help="neither resume nor save checkpoints (vmtest.checkpoint blocks just run)")
    _add_progress_option(run_parser)
    run_parser.set_defaults(handler=run)
    cache_parser = commands.add_parser("cache", help="list the cached images and checkpoints with their sizes")
    cache_parser.add_argument("--prune", action="store_true", help="delete every checkpoint")
    cache_parser.set_defaults(handler=cache)
    build_parser = commands.add_parser("build", help="build (or find cached) images for recipes")
    build_parser.add_argument("recipes", nargs="+")
    _add_progress_option(build_parser)
    build_parser.set_defaults(handler=build)
    accel_parser = commands.add_parser("accel", help="show the accelerator guests would get")
    accel_parser.add_argument("arch", nargs="*", default=["x86_64", "aarch64"])
    accel_parser.set_defaults(handler=accel)
    doctor_parser = commands.add_parser("doctor", help="check that this host has everything the runtime needs")
    doctor_parser.add_argument("--arch", action="append", choices=doctor.ARCHES,
                               help="check only what guests and images of this architecture need "
                                    "(repeatable; default: both)")
    doctor_parser.add_argument("--offline", action="store_true", help="skip the Debian mirror check")
    doctor_parser.set_defaults(handler=check_host)
    report_parser = commands.add_parser("report", help="merge the suite runs under DIR into DIR/junit.xml, "
                                                       "DIR/summary.json and DIR/report.html")
    report_parser.add_argument("directory")
    report_parser.set_defaults(handler=report)
    verdict_parser = commands.add_parser("verdict", help="pass or fail on a Nix test's artifacts (DIR/driver-exit-"
                                                         "status), naming the failed cases")
    verdict_parser.add_argument("directory")
    verdict_parser.set_defaults(handler=verdict)
    return top


def _version() -> str:
    """The installed distribution's version (the package's own, from pyproject.toml)."""
    try:
        return importlib.metadata.version("vmtest")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
