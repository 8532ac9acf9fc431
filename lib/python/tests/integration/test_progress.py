"""Progress reaches the host while the work runs: a build's steps, and a detached guest command's results.

Each line and event is timed on arrival at the host and compared with when the work ended:
what arrives only at the end (the old silence, then everything at once) fails.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from vmtest.guest_results import follow_results
from vmtest.portable.image.build_progress import previous_marks
from vmtest.portable.image.builder import cache_dir, image_directory
from vmtest.portable.image.recipe import load_recipe
from vmtest.portable.runtime.driver import Driver
from vmtest.progress.events import Began, Event, GuestResult

from ..conftest import RECIPES

pytestmark = pytest.mark.vm
MINIMAL = RECIPES / "minimal.toml"
STAMPED = re.compile(r"^\[ *([0-9.]+)s\] (.*)$")


# A silent setup step longer than the renderer's quiet time: the heartbeat must speak during it,
# however fast the mirror makes the rest of the build.
SILENT_SETUP_SECONDS = 14


def fresh_minimal(tmp_path: Path) -> Path:
    """minimal.toml with a unique file (so its cache key is new: a real build, the same recipe name)
    and a setup step that is silent for SILENT_SETUP_SECONDS."""
    recipe = tmp_path / "minimal.toml"
    recipe.write_text(f'setup = ["sleep {SILENT_SETUP_SECONDS}"]\n' + MINIMAL.read_text()
                      + f'\n[files."/etc/vmtest-progress-test"]\ntext = "{uuid.uuid4()}\\n"\n')
    return recipe


def test_build_steps_reach_the_host_while_the_image_builds(tmp_path: Path) -> None:
    recipe_path = fresh_minimal(tmp_path)
    recipe = load_recipe(str(recipe_path))
    directory = image_directory(recipe)
    expecting = bool(previous_marks(cache_dir() / "logs", f"{recipe.name}-{recipe.arch}"))
    arrived: list[tuple[float, str]] = []
    spawned = time.monotonic()
    try:
        process = subprocess.Popen([sys.executable, "-m", "vmtest.portable.cli", "build", "--progress", "plain",
                                    str(recipe_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert process.stdout is not None
        for line in process.stdout:
            arrived.append((time.monotonic(), line.rstrip("\n")))
        ended = time.monotonic()
        assert process.wait(timeout=60) == 0, "\n".join(text for _, text in arrived)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    output = "\n".join(text for _, text in arrived)
    stamped = [(at, float(match.group(1)), match.group(2)) for at, text in arrived
               if (match := STAMPED.match(text))]
    progress = [(at, text) for at, _, text in stamped]
    steps = [(at, stamp, text) for at, stamp, text in stamped if text.startswith("minimal image: ")]
    assert any("kernel took" in text for _, _, text in steps), output
    assert ended - steps[0][0] >= SILENT_SETUP_SECONDS, "the first step's line arrived at the build's end"
    # Each step's line reaches the host when the renderer stamped it: nothing buffers it on the way
    # (the stamp counts from the child's start, some interpreter start-up after the spawn).
    delays = [round(at - spawned - stamp, 1) for at, stamp, _ in steps]
    assert all(-0.5 <= delay <= 5 for delay in delays), f"arrival minus stamp, per step: {delays}\n{output}"
    stamps = [stamp for _, stamp, _ in steps]
    assert stamps[-1] - stamps[0] >= SILENT_SETUP_SECONDS, f"the steps were reported as each ended: {stamps}"
    # The plain renderer's promise: a line at least every 10 s (1 s of slack for the pipe and the host).
    building = [at for at, text in arrived if at >= steps[0][0]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(building)]
    assert max(gaps) <= 11, f"silent for {max(gaps):.1f} s:\n{output}"
    assert any("still running: minimal image: building" in text for _, text in progress), output
    if expecting:  # a complete earlier build of minimal in this cache gives the time left
        assert any(" left" in text or "over the last time" in text for _, _, text in steps), output


# The detached guest command: a result line every 3 s, each written in two parts (a partial line
# for a second), then the done file.
GUEST_LOOP = r'''
for i in 1 2 3 4; do
  sleep 2; printf '{"name": "t%s", ' "$i" >> /tmp/progress/r.jsonl
  sleep 1; printf '"outcome": "passed", "seconds": 3.0}\n' >> /tmp/progress/r.jsonl
done
sleep 3; echo 0 > /tmp/progress/done
'''


def test_guest_results_reach_the_host_while_the_guest_work_runs(make_driver: Callable[..., Driver]) -> None:
    events: list[tuple[float, Event]] = []
    driver = make_driver(f"machine={MINIMAL}", progress=lambda event: events.append((time.monotonic(), event)))
    machine = driver.machines[0]
    machine.wait_for_unit("multi-user.target")
    machine.succeed("rm -rf /tmp/progress && mkdir -p /tmp/progress && touch /tmp/progress/r.jsonl")
    machine.succeed(f"systemd-run --unit=progress-loop --collect bash -c {shlex.quote(GUEST_LOOP)}")
    started = time.monotonic()
    followed = follow_results(machine, "/tmp/progress/r.jsonl", "/tmp/progress/done", timeout=120,
                              alive="systemctl is-active --quiet progress-loop.service")
    ended = time.monotonic()
    assert [result.name for result in followed.results] == ["t1", "t2", "t3", "t4"], "once each, in order"
    assert followed.unreadable == [], "the half-written lines waited for their ends"
    shown = [(at, event) for at, event in events if isinstance(event, GuestResult)]
    assert [event for _, event in shown] == followed.results, "every result went to the progress display"
    times = [at for at, _ in shown]
    assert ended - times[0] >= 8, "the first result arrived while the guest loop still ran (9 s of it left)"
    spread = [round(at - started, 1) for at in times]
    assert times[-1] - times[0] >= 6, f"results arrived as written (3 s apart), not in a batch: {spread}"
    assert all(later - earlier >= 0.5 for earlier, later in itertools.pairwise(times)), spread
    assert any(isinstance(event, Began) and event.scope == "machine" and "following /tmp/progress/r.jsonl"
               in event.what for _, event in events), "the wait is on the machine's row"
