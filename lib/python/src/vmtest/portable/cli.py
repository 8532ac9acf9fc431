"""``vmtest``: run a testScript on the portable runtime, build images, probe the accelerator, check the host."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from types import FrameType

from vmtest import ci_report
from vmtest.errors import ImageBuildError, MachineError, RecipeError
from vmtest.portable import doctor
from vmtest.portable.accel import select_accelerator
from vmtest.portable.image.builder import build_image
from vmtest.portable.image.recipe import Recipe, load_recipe
from vmtest.portable.runtime.driver import Driver, script_traceback
from vmtest.portable.runtime.logger import CompositeLogger, JunitLogger, TerminalLogger
from vmtest.portable.runtime.spec import configure_machines, parse_machine_specs
from vmtest.timeouts import format_seconds

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class Terminated(BaseException):
    """SIGTERM arrived: unwind so that every machine is released."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _error(message: str) -> None:
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


def run(args: argparse.Namespace) -> int:
    scripts = _read_scripts(args.script)
    if scripts is None:
        return EXIT_BAD_INPUT
    (script_path, source), more = scripts[0], [path for path, _ in scripts[1:]]
    try:
        specs = parse_machine_specs(args.machines)
        if not _preflight([spec.recipe for spec in specs], booting=True):
            return EXIT_BAD_INPUT
        configs = configure_machines(specs)
    except (RecipeError, ImageBuildError, ValueError) as error:
        _error(str(error))
        return EXIT_BAD_INPUT
    out_dir = Path(args.out).resolve()
    junit = JunitLogger(Path(args.junit_xml).resolve() if args.junit_xml else out_dir / "vmtest-junit.xml",
                        suite_name=f"vmtest {script_path.stem}")
    for config in configs:
        junit.properties[f"{config.name}.arch"] = config.arch
        junit.properties[f"{config.name}.accelerator"] = config.accelerator.name
    logger = CompositeLogger([TerminalLogger(), junit])
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.monotonic()
    driver: Driver | None = None
    code = EXIT_FAILED
    try:
        driver = Driver(configs, source, out_dir, logger, script_path=script_path, more_scripts=more,
                        global_timeout=args.global_timeout, keep_machine_state=args.keep_machine_state)
        with driver:
            try:
                if args.interactive:
                    from vmtest.portable.runtime.repl import interact
                    interact(driver)
                else:
                    driver.run_tests()
                driver.outcome = "passed"
                code = 0
            except KeyboardInterrupt:
                if driver.timed_out:
                    driver.outcome = "timed out"
                    logger.log_test_error(f"global timeout of {format_seconds(args.global_timeout)} reached")
                    code = EXIT_FAILED
                else:
                    driver.outcome = "interrupted"
                    logger.log_test_error("interrupted (SIGINT)")
                    code = EXIT_INTERRUPTED
            except Terminated:
                driver.outcome = "terminated"
                logger.log_test_error("terminated (SIGTERM)")
                code = 128 + signal.SIGTERM
            except (AssertionError, MachineError) as error:  # helpers' failures are AssertionErrors too
                driver.outcome = "timed out" if driver.timed_out else "failed"
                frames = script_traceback(error, script_path)
                logger.log_test_error(f"{type(error).__name__}: {error}" + (f"\n{frames}" if frames else ""))
            except Exception as error:
                driver.outcome = "crashed"
                logger.log_test_error("testScript crashed:\n" + "".join(traceback.format_exception(error)))
    except MachineError as error:
        _error(str(error))
    except KeyboardInterrupt:
        # The global timeout's interrupt can land after the script has already failed on the
        # machines the timeout killed; the driver was torn down on the way out either way.
        if driver is None or not driver.timed_out:
            raise
        driver.outcome = "timed out"
        code = EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(
        f"vmtest: {driver.outcome if driver else 'failed'} in {format_seconds(time.monotonic() - started)}; "
        f"artifacts in {out_dir} (JUnit {junit.path}, run record {out_dir / 'vmtest-run.json'})",
        file=sys.stderr,
    )
    return code


def build(args: argparse.Namespace) -> int:
    try:
        recipes = [load_recipe(path) for path in args.recipes]
        if not _preflight(recipes, booting=False):
            return EXIT_BAD_INPUT
    except (RecipeError, ImageBuildError) as error:
        _error(str(error))
        return EXIT_BAD_INPUT
    for path, recipe in zip(args.recipes, recipes, strict=True):
        try:
            started = time.monotonic()
            image = build_image(recipe)
        except (RecipeError, ImageBuildError) as error:
            _error(str(error))
            return EXIT_BAD_INPUT
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
        junit, summary = ci_report.merge(Path(args.directory))
    except (FileNotFoundError, ET.ParseError) as error:
        _error(str(error))
        return EXIT_FAILED
    result = json.loads(summary.read_text())
    print(f"vmtest: {result['tests']['tests']} cases, {len(result['failed_cases'])} failed; {junit}, {summary}")
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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="vmtest", description=__doc__)
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
    run_parser.add_argument("--keep-machine-state", "-K", "--keep-vm-state", action="store_true",
                            dest="keep_machine_state")
    run_parser.set_defaults(handler=run)
    build_parser = commands.add_parser("build", help="build (or find cached) images for recipes")
    build_parser.add_argument("recipes", nargs="+")
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
    report_parser = commands.add_parser("report", help="merge the suite runs under DIR into DIR/junit.xml and "
                                                       "DIR/summary.json")
    report_parser.add_argument("directory")
    report_parser.set_defaults(handler=report)
    verdict_parser = commands.add_parser("verdict", help="pass or fail on a Nix test's artifacts (DIR/driver-exit-"
                                                         "status), naming the failed cases")
    verdict_parser.add_argument("directory")
    verdict_parser.set_defaults(handler=verdict)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
