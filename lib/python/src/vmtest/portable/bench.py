"""``make bench``: the runtime against raw QEMU, measured in the same run, written as JSON.

For each architecture: boot to the backdoor marker and to ``systemctl
is-system-running`` = running, through QemuMachine and through a bare harness
that starts the same start script and speaks the same framing; the round trip
of ``execute("true")`` both ways; warm (and optionally cold) image builds.
"""

from __future__ import annotations

import argparse
import base64
import functools
import gzip
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmtest.artifacts import PERFORMANCE_RECORD, RUN_RECORD
from vmtest.portable.accel import select_accelerator
from vmtest.portable.image.builder import build_image
from vmtest.portable.image.recipe import load_recipe
from vmtest.portable.runtime.backdoor import BACKDOOR_DEVICES, MARKER, STATUS_REQUEST, command_line, read_line_block
from vmtest.portable.runtime.driver_log import CompositeLogger
from vmtest.portable.runtime.machine import QemuMachine
from vmtest.portable.runtime.process import spawn
from vmtest.portable.runtime.qemu import MachineConfig, write_start_script
from vmtest.portable.runtime.spec import prepare_machines

Record = dict[str, Any]


def _stats(samples: list[float]) -> Record:
    return {
        "mean": round(statistics.mean(samples), 4),
        "min": round(min(samples), 4),
        "max": round(max(samples), 4),
        "n": len(samples),
    }


class RawHarness:
    """QEMU started from the same start script, with only the sockets it needs and no runtime around it."""

    def __init__(self, script: Path, state: Path, devices: tuple[str, ...] = BACKDOOR_DEVICES) -> None:
        state.mkdir(parents=True, exist_ok=True)
        self.shell_path = state / "shell"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(self.shell_path))
        server.listen(1)
        args = [
            "-chardev", f"socket,id=shell,path={self.shell_path}", *devices,
            "-device", "virtio-rng-pci", "-serial", "file:/dev/null",
            "-monitor", "none", "-no-reboot",
        ]
        env = {**os.environ, "TMPDIR": str(state), "SHARED_DIR": str(state), "USE_TMPDIR": "1"}
        self.started = time.monotonic()
        self.process = spawn(f"exec {script} {shlex.join(args)}", shell=True, cwd=state, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        self.shell, _ = server.accept()
        server.close()

    def wait_for_marker(self) -> float:
        received = b""
        while MARKER not in received:
            chunk = self.shell.recv(1024)
            if not chunk:
                raise RuntimeError("raw QEMU died before the marker")
            received += chunk
        return time.monotonic() - self.started

    def _block(self) -> bytearray:
        block = read_line_block(self.shell)
        if block is None:
            raise RuntimeError("raw QEMU shell closed")
        return block

    def execute(self, command: str) -> tuple[int, str]:
        self.shell.sendall(command_line(command, 900))
        output = base64.b64decode(self._block()).decode()
        self.shell.sendall(STATUS_REQUEST)
        return int(self._block().strip()), output

    def stop(self) -> None:
        self.shell.sendall(b"poweroff\n")
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _round_trips(run_true: Callable[[], object], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.monotonic()
        run_true()
        samples.append(time.monotonic() - started)
    return samples


def _runtime_boot(script: Path, work: Path, name: str, round_trips: int) -> tuple[float, float, list[float]]:
    logger = CompositeLogger([])
    machine = QemuMachine(work, work, str(script), logger, name=name)
    try:
        machine.start()
        machine.connect()
        assert machine.started_at is not None and machine.connected_at is not None
        marker = machine.connected_at - machine.started_at
        machine.succeed("systemctl is-system-running --wait")
        running = time.monotonic() - machine.started_at
        samples = _round_trips(lambda: machine.execute("true"), round_trips)
        machine.shutdown()
        return marker, running, samples
    finally:
        machine.release()


def _raw_boot(script: Path, work: Path, round_trips: int) -> tuple[float, float, list[float]]:
    harness = RawHarness(script, work)
    try:
        marker = harness.wait_for_marker()
        status, _ = harness.execute("systemctl is-system-running --wait")
        if status != 0:
            raise RuntimeError("raw boot did not reach 'running'")
        running = time.monotonic() - harness.started
        samples = _round_trips(lambda: harness.execute("true"), round_trips)
        harness.stop()
        return marker, running, samples
    finally:
        if harness.process.poll() is None:
            harness.process.kill()
            harness.process.wait()


def bench_architecture(recipe_path: Path, runs: int, round_trips: int, log: Callable[[str], None]) -> Record:
    """Boot and round-trip figures for one recipe, runtime and raw interleaved."""
    recipe = load_recipe(recipe_path)
    image = build_image(recipe)
    accelerator = select_accelerator(recipe.machine_arch)
    config = MachineConfig(recipe.name, image, accelerator, number=1, vlans=())
    results: dict[str, dict[str, list[float]]] = {
        kind: {"marker": [], "running": [], "round_trip": []} for kind in ("runtime", "raw")
    }
    with tempfile.TemporaryDirectory(prefix="vmtest-bench-") as directory:
        script = write_start_script(config, "", Path(directory))
        for run in range(runs):
            for kind in ("raw", "runtime"):  # interleaved so drift hits both alike
                work = Path(directory) / f"{kind}-{run}"
                work.mkdir()
                if kind == "raw":
                    marker, running, trips = _raw_boot(script, work, round_trips)
                else:
                    marker, running, trips = _runtime_boot(script, work, recipe.name, round_trips)
                log(f"{recipe.machine_arch} {kind} run {run + 1}: marker {marker:.2f} s, running {running:.2f} s, "
                    f"round trip {statistics.mean(trips) * 1000:.0f} ms")
                results[kind]["marker"].append(marker)
                results[kind]["running"].append(running)
                results[kind]["round_trip"].append(statistics.mean(trips))
    record: Record = {"accelerator": accelerator.name, "recipe": str(recipe_path)}
    for kind, values in results.items():
        record[kind] = {
            "boot_to_backdoor_s": _stats(values["marker"]),
            "boot_to_running_s": _stats(values["running"]),
            "execute_true_round_trip_s": _stats(values["round_trip"]),
        }
    for metric in ("boot_to_backdoor_s", "boot_to_running_s", "execute_true_round_trip_s"):
        record[f"ratio_{metric.removesuffix('_s')}"] = round(
            record["runtime"][metric]["mean"] / record["raw"][metric]["mean"], 3
        )
    return record


def bench_image_builds(recipe_paths: list[Path], cold: bool, log: Callable[[str], None]) -> Record:
    """Warm builds (cache hits) always; cold builds into an empty cache when ``cold``."""
    record: Record = {}
    for path in recipe_paths:
        recipe = load_recipe(path)
        build_image(recipe)
        warm = []
        for _ in range(3):
            started = time.monotonic()
            build_image(recipe)
            warm.append(time.monotonic() - started)
        entry: Record = {"warm_s": _stats(warm)}
        if cold:
            with tempfile.TemporaryDirectory(prefix="vmtest-cold-") as cache:
                started = time.monotonic()
                build_image(recipe, cache=Path(cache), log=log)
                entry["cold_s"] = round(time.monotonic() - started, 1)
        log(f"image {recipe.name}/{recipe.arch}: {entry}")
        record[f"{recipe.name}-{recipe.arch}"] = entry
    return record


def _timed_vmtest_run(arguments: list[str], env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """Run ``vmtest run ARGUMENTS``; returns (exit status, stderr, wall seconds)."""
    started = time.monotonic()
    run = subprocess.Popen([sys.executable, "-m", "vmtest.portable.cli", "run", *arguments],
                           env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = run.communicate()
    except BaseException:
        # Interrupted: `vmtest run` releases its VMs on SIGTERM; a SIGKILL would orphan them.
        run.terminate()
        run.communicate(timeout=120)
        raise
    return run.returncode, stderr, time.monotonic() - started


def bench_vm_suites(machines_toml: Path, arch: str, log: Callable[[str], None]) -> Record:
    """Wall time of the three validation suites (boot, services, integration) in one warm run,
    as `make test-vm-<arch>` runs them, with the suites' own performance record."""
    scripts = [machines_toml.parent / f"{suite}.py" for suite in ("boot", "services", "integration")]
    with tempfile.TemporaryDirectory(prefix="vmtest-bench-vm-") as out:
        prepare_machines([str(machines_toml)])  # warm the images first: this times the suites, not builds
        returncode, stderr, wall = _timed_vmtest_run([*map(str, scripts), "--machines", str(machines_toml),
                                                      "--out", out], {"VMTEST_EXPECT_ARCH": arch})
        perf_path = Path(out) / PERFORMANCE_RECORD
        performance = json.loads(perf_path.read_text()) if perf_path.is_file() else {}
    record: Record = {"passed": returncode == 0, "wall_s": round(wall, 1), "performance": performance}
    if returncode != 0:
        record["error_tail"] = stderr[-2000:]
    log(f"vm suites {arch}: {record['wall_s']} s, passed: {record['passed']}")
    return record


def bench_e2e(script: Path, machines_toml: Path, log: Callable[[str], None]) -> Record:
    """The e2e suite as `make e2e` runs it, images warm: wall time, time from the server's start
    to a healthy stack, and the browser tests' share (from the suite's own summary.json)."""
    with tempfile.TemporaryDirectory(prefix="vmtest-bench-e2e-") as out:
        prepare_machines([str(machines_toml)])  # warm the images first: this times the suite, not builds
        returncode, stderr, wall = _timed_vmtest_run([str(script), "--machines", str(machines_toml), "--out", out,
                                                      "--fresh"])
        summary_path = Path(out) / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    steps = {case["name"]: round(case["seconds"], 1) for case in summary.get("cases", [])
             if case.get("suite") != "browser"}
    record: Record = {
        "passed": returncode == 0,
        "wall_s": round(wall, 1),
        "stack_healthy_after_s": summary.get("stack_healthy_after_s"),
        "unit_chain_ready_offsets_s": summary.get("unit_chain_ready_offsets_s"),
        "steps_s": steps,
        "goal": {"wall_s": 240, "stack_healthy_after_s": 25},
    }
    if returncode != 0:
        record["error_tail"] = stderr[-2000:]
    log(f"e2e: {record['wall_s']} s, healthy after {record['stack_healthy_after_s']} s, passed: {record['passed']}")
    return record


def bench_e2e_checkpoint(script: Path, machines_toml: Path, log: Callable[[str], None]) -> Record:
    """The e2e suite cold (``--fresh``: boots, then saves its checkpoint) and then resumed from that
    checkpoint, images warm: wall times, the time from `vmtest run` to the first command after the
    checkpoint block, the checkpoint's files and sizes, and the resumed/cold ratios."""
    prepare_machines([str(machines_toml)])
    runs: dict[str, Record] = {}
    for mode, extra in (("cold", ["--fresh"]), ("resumed", [])):
        with tempfile.TemporaryDirectory(prefix=f"vmtest-bench-e2e-{mode}-") as out:
            launched = time.time()
            returncode, stderr, wall = _timed_vmtest_run([str(script), "--machines", str(machines_toml),
                                                          "--out", out, *extra])
            record = json.loads((Path(out) / RUN_RECORD).read_text()).get("checkpoints") or {}
            summary_path = Path(out) / "summary.json"
            summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        ended = (record.get("block_ended_at") or {}).get("stack-healthy")
        runs[mode] = {
            "passed": returncode == 0,
            "wall_s": round(wall, 1),
            "first_command_after_checkpoint_s": round(ended - launched, 1) if ended else None,
            "cases": len(summary.get("cases", [])),
            "passed_cases": sum(1 for case in summary.get("cases", []) if case.get("passed")),
            "checkpoints": record,
        }
        if returncode != 0:
            runs[mode]["error_tail"] = stderr[-2000:]
        log(f"e2e {mode}: {runs[mode]['wall_s']} s, first command after the checkpoint "
            f"{runs[mode]['first_command_after_checkpoint_s']} s, passed: {runs[mode]['passed']}")
    cold, resumed = runs["cold"], runs["resumed"]
    result: Record = {**runs, "goal": {"first_command_after_checkpoint_s": 3, "wall_ratio": 0.5}}
    if cold["first_command_after_checkpoint_s"] and resumed["first_command_after_checkpoint_s"]:
        result["first_command_ratio"] = round(
            resumed["first_command_after_checkpoint_s"] / cold["first_command_after_checkpoint_s"], 3)
    result["wall_ratio"] = round(resumed["wall_s"] / cold["wall_s"], 3)
    saved = cold["checkpoints"].get("saved") or []
    result["checkpoint_bytes"] = {entry["name"]: entry["bytes"] for entry in saved}
    result["checkpoint_files"] = {entry.name: entry.stat().st_size for path in map(Path, (e["path"] for e in saved))
                                  if path.is_dir() for entry in sorted(path.iterdir())}
    return result


def _readiness_trial(machine: QemuMachine, trial: int, wait: Callable[[], object]) -> float:
    """Seconds from the service being ready (its console line) to ``wait`` returning."""
    machine.succeed("systemctl stop healthsvc.service")
    # Earlier readiness lines (boot, previous trials) are still queued: drop them first.
    machine.drain_console_queue()
    ready_at: list[float] = []

    def watch_console() -> None:
        machine.wait_for_console_text("healthsvc-ready", timeout=120)
        ready_at.append(time.monotonic())

    watcher = threading.Thread(target=watch_console, daemon=True)
    watcher.start()
    # AccuracySec: a timer otherwise fires anywhere within a minute of its time.
    machine.succeed(f"systemd-run --on-active=2 --timer-property=AccuracySec=10ms --unit=bench-start-{trial} "
                    "systemctl start healthsvc.service")
    wait()
    returned = time.monotonic()
    watcher.join(timeout=120)
    if not ready_at:
        raise RuntimeError("the service never printed its readiness line")
    return returned - ready_at[0]


def bench_helpers(recipe_path: Path, trials: int, journal_mb: int, log: Callable[[str], None]) -> Record:
    """Readiness latency of health.wait_for_http against an upstream-style 1 s wait_until_succeeds
    loop, on the same machine in the same run; and collecting a journal of ``journal_mb`` MB."""
    from vmtest import health, logs

    recipe = load_recipe(recipe_path)
    config = MachineConfig("server", build_image(recipe), select_accelerator(recipe.machine_arch), 1, vlans=())
    url = "http://127.0.0.1:8888/health"
    record: Record = {"accelerator": config.accelerator.name}
    with tempfile.TemporaryDirectory(prefix="vmtest-bench-") as directory:
        work = Path(directory)
        script = write_start_script(config, "", work)
        machine = QemuMachine(work, work, str(script), CompositeLogger([]), name="server")
        try:
            health.wait_for_unit_chain(machine, ["svc-migrate.service", "healthsvc.service"], timeout=600)
            ours, upstream = [], []
            for trial in range(trials):
                ours.append(_readiness_trial(
                    machine, 2 * trial, lambda: health.wait_for_http(machine, url, timeout=60)))
                upstream.append(_readiness_trial(
                    machine, 2 * trial + 1, lambda: machine.wait_until_succeeds(f"curl -sf {url}", timeout=60)))
                log(f"readiness trial {trial + 1}: vmtest {ours[-1]:.3f} s, upstream-style {upstream[-1]:.3f} s")
            record["readiness_latency_s"] = {"vmtest_wait_for_http": _stats(ours),
                                             "upstream_wait_until_succeeds_1s": _stats(upstream)}
            # On disk and with room: by default journald keeps a volatile journal capped at
            # 10% of /run (~20 MB in a 1 GiB guest), which would silently drop most of it.
            machine.succeed(
                "mkdir -p /etc/systemd/journald.conf.d /var/log/journal",
                "printf '[Journal]\\nStorage=persistent\\nRateLimitBurst=0\\nForwardToConsole=no\\n"
                "SystemMaxUse=1G\\nSystemMaxFileSize=512M\\nSystemKeepFree=64M\\n' "
                # zz-: read after the image's vmtest.conf, whose ForwardToConsole=yes would push
                # every line through the emulated serial port.
                "> /etc/systemd/journald.conf.d/zz-bench.conf",
                "systemctl restart systemd-journald",
                # 20% more than asked: journald under TCG kept ~90% of a fast writer's lines here.
                f"head -c {int(journal_mb * 1e6 * 1.2 * 3 / 4)} /dev/urandom | base64 -w 150 | systemd-cat -t bench",
                "journalctl --sync",
            )
            size = int(machine.succeed("journalctl -t bench -o cat | wc -c").strip())
            if size < journal_mb * 1e6:
                raise RuntimeError(f"the guest's journal kept {size / 1e6:.1f} MB, less than the {journal_mb} MB "
                                   "asked: the log collection figure would not be for that size")
            started = time.monotonic()
            collected = logs.collect_logs(machine, [logs.command("bench.log", "journalctl -t bench -o cat")],
                                          out_dir=work, dest="collected")
            seconds = time.monotonic() - started
            written = collected[0].path
            if written is None:
                raise RuntimeError(f"the journal was not collected: {collected[0].error}")
            text = gzip.decompress(written.read_bytes()) if written.suffix == ".gz" else written.read_bytes()
            if len(text) < size:
                raise RuntimeError(f"collected {len(text)} bytes of a {size}-byte journal")
            record["log_collection"] = {"journal_bytes": size, "seconds": round(seconds, 2),
                                        "written_bytes": collected[0].size,
                                        "written_file": collected[0].path.name if collected[0].path else None,
                                        "mb_per_s": round(size / 1e6 / seconds, 1)}
            log(f"collected a {size / 1e6:.0f} MB journal in {seconds:.1f} s")
        finally:
            machine.release()
    return record


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _ratios(baseline: Record, measured: Record, keys: tuple[str, ...]) -> Record:
    """``measured[key] / baseline[key]`` for each key both have as a number (not a bool), rounded."""
    def number(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    return {f"{key.removesuffix('_s')}_ratio": round(measured[key] / baseline[key], 3) for key in keys
            if number(baseline.get(key)) and number(measured.get(key)) and baseline[key]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vmtest.portable.bench", description=__doc__)
    parser.add_argument("--recipe", action="append", type=Path, required=True, help="recipe to boot (repeatable)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--round-trips", type=int, default=30)
    parser.add_argument("--cold", action="store_true", help="also time cold image builds")
    parser.add_argument("--helpers-recipe", type=Path, help="also benchmark the helpers on this machine")
    parser.add_argument("--readiness-trials", type=int, default=5)
    parser.add_argument("--journal-mb", type=int, default=60)
    parser.add_argument("--build-only", action="append", type=Path, default=[], metavar="RECIPE",
                        help="also time this recipe's builds (cold with --cold), without the boot benchmark")
    parser.add_argument("--vm-suites", action="append", type=Path, default=[], metavar="MACHINES_TOML",
                        help="time the validation suites of this machine list (tests/vm/machines-aarch64.toml)")
    parser.add_argument("--e2e", type=Path, metavar="MACHINES_TOML",
                        help="time the e2e suite (its test_script.py next to this machine list), images warm")
    parser.add_argument("--e2e-containers", type=Path, metavar="MACHINES_TOML",
                        help="time the same suite on these container machines too, with the ratios to --e2e's VMs")
    parser.add_argument("--output", type=Path, default=Path("bench/results.json"))
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: every machine's finally block runs, no QEMU outlives the bench.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    def log(message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    results: Record = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "boot": {},
    }
    failures: list[str] = []

    def section(key: str, measure: Callable[[], Record]) -> None:
        """Measure one section and write the results so far: a failing section loses nothing else."""
        try:
            value = measure()
        except Exception as error:  # a benchmark that fails is recorded as such, the others kept
            failures.append(key)
            value = {"error": f"{type(error).__name__}: {error}"}
            log(f"{key} failed: {error}")
        target = results
        *parents, last = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[last] = value
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")

    section("images", lambda: bench_image_builds([*args.recipe, *args.build_only], args.cold, log))
    for path in args.recipe:
        arch = load_recipe(path).machine_arch
        section(f"boot.{arch}", functools.partial(bench_architecture, path, args.runs, args.round_trips, log))
    for machines_toml in args.vm_suites:
        arch = machines_toml.stem.removeprefix("machines-")
        section(f"vm_suites.{arch}", functools.partial(bench_vm_suites, machines_toml, arch, log))
    if args.helpers_recipe:
        recipe = args.helpers_recipe
        section("helpers", lambda: bench_helpers(recipe, args.readiness_trials, args.journal_mb, log))
    if args.e2e:
        machines = args.e2e
        section("e2e", lambda: bench_e2e(machines.parent / "test_script.py", machines, log))
        section("e2e_checkpoint", lambda: bench_e2e_checkpoint(machines.parent / "test_script.py", machines, log))
    if args.e2e_containers:
        containers = args.e2e_containers
        section("e2e_containers", lambda: bench_e2e(containers.parent / "test_script.py", containers, log))
        section("e2e_container_vs_vm", lambda: _ratios(results.get("e2e", {}), results["e2e_containers"],
                                                       ("wall_s", "stack_healthy_after_s")))
    log(f"results written to {args.output}" + (f"; failed: {', '.join(failures)}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
