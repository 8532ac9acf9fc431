"""``vmtest``: run a testScript on the portable runtime, build images, probe the accelerator, check the host;
and the helpers' verbs beside them (``report``, ``verdict``: ``vmtest.cli``)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import sys
import time
from pathlib import Path

from vmtest import cli as helper_cli
from vmtest.cli import EXIT_BAD_INPUT, EXIT_FAILED
from vmtest.cli import error as _error
from vmtest.errors import ImageBuildError, RecipeError
from vmtest.portable import doctor, run_command
from vmtest.portable.accel import select_accelerator
from vmtest.portable.image.builder import build_image, cache_dir
from vmtest.portable.image.recipe import load_recipe
from vmtest.portable.run_command import EXIT_INTERRUPTED, checkpoint_dir
from vmtest.portable.runtime.checkpoint_store import human_bytes, read_stored, stored_checkpoints
from vmtest.portable.runtime.driver import BOOT_DEADLINE_KVM, BOOT_DEADLINE_TCG
from vmtest.portable.runtime.signals import RunSignals, Terminated
from vmtest.progress.source import MODES, showing_progress


def build(args: argparse.Namespace) -> int:
    try:
        recipes = [load_recipe(path) for path in args.recipes]
        if not run_command._preflight(recipes, booting=False):
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
    run_parser = commands.add_parser("run", help="run a testScript on Debian QEMU VMs and containers")
    run_parser.add_argument("script", nargs="+",
                            help="the testScript (the same file the Nix check runs); several run in turn "
                                 "on the same machines, each in a fresh namespace")
    run_parser.add_argument("--machines", action="append", required=True, metavar="SPEC",
                            help="name=recipe.toml[,…], a recipe, or a TOML file with [machines.<name>]")
    run_parser.add_argument("--out", "-o", default="out", help="output directory (default: ./out)")
    run_parser.add_argument("--interactive", "-I", action="store_true", help="open a ptpython shell")
    run_parser.add_argument("--junit-xml", help="the driver's JUnit report (default: OUT/vmtest-junit.xml)")
    run_parser.add_argument("--global-timeout", type=float, default=3600, metavar="S",
                            help="end the whole run (its machines, with every artifact written) after S seconds "
                                 "(default: 3600, as the NixOS driver's globalTimeout)")
    run_parser.add_argument("--boot-timeout", type=_seconds, metavar="S",
                            help="how long a machine may take to reach its backdoor shell once the testScript "
                                 f"needs it (default: {BOOT_DEADLINE_KVM:.0f} s, {BOOT_DEADLINE_TCG:.0f} s under TCG)")
    run_parser.add_argument("--keep-machine-state", "-K", "--keep-vm-state", action="store_true",
                            dest="keep_machine_state",
                            help="keep the run's temporary directory (each machine's disk and shared "
                                 "directory) after the run instead of deleting it")
    run_parser.add_argument("--force-accel", action="store_true",
                            help="fail (exit 2, before any work) instead of running a VM under TCG when the "
                                 "host has no usable KVM, as the NixOS test option qemu.forceAccel")
    run_parser.add_argument("--fresh", action="store_true",
                            help="resume no checkpoint: boot cold, and save each checkpoint anew")
    run_parser.add_argument("--no-checkpoints", action="store_true",
                            help="neither resume nor save checkpoints (vmtest.checkpoint blocks just run)")
    _add_progress_option(run_parser)
    run_parser.set_defaults(handler=run_command.run)
    cache_parser = commands.add_parser("cache", help="list the cached images and checkpoints with their sizes")
    cache_parser.add_argument("--prune", action="store_true", help="delete every checkpoint")
    cache_parser.set_defaults(handler=cache)
    build_parser = commands.add_parser("build", help="build (or find cached) images for recipes")
    build_parser.add_argument("recipes", nargs="+", metavar="RECIPE",
                              help="a machine recipe (.toml); each image is built once and cached")
    _add_progress_option(build_parser)
    build_parser.set_defaults(handler=build)
    accel_parser = commands.add_parser("accel", help="show the accelerator guests would get")
    accel_parser.add_argument("arch", nargs="*", default=["x86_64", "aarch64"],
                              help="the guest architectures to ask about (default: x86_64 aarch64)")
    accel_parser.set_defaults(handler=accel)
    doctor_parser = commands.add_parser("doctor", help="check that this host has everything the runtime needs")
    doctor_parser.add_argument("--arch", action="append", choices=doctor.ARCHES,
                               help="check only what guests and images of this architecture need "
                                    "(repeatable; default: both)")
    doctor_parser.add_argument("--offline", action="store_true", help="skip the Debian mirror check")
    doctor_parser.set_defaults(handler=check_host)
    helper_cli.add_commands(commands)
    return top


def _version() -> str:
    """The installed distribution's version (the package's own, from pyproject.toml)."""
    try:
        return importlib.metadata.version("vmtest")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    return helper_cli.dispatch(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
