"""A build's progress from its log: marks, the last build of the recipe, the time left, and the log
lines reaching the watcher while the build command still runs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from vmtest.portable.image import steps
from vmtest.portable.image.build_progress import (
    BuildWatcher,
    complete,
    mark_of,
    previous_marks,
    read_marks,
)
from vmtest.portable.image.builder import BuildLog, _run_timestamped
from vmtest.progress.events import Began, Event, Stepped
from vmtest.progress.plain import PlainRenderer

# The shape of a real native build log (builder._run_timestamped's stamps, mmdebstrap's info
# lines, the customize hook's steps, the builder's own last two), with the noise between them.
PREVIOUS_LOG = """\
$ mmdebstrap --mode=root --variant=apt --arch=amd64 --format=directory trixie /x/rootfs http://deb.debian.org/debian
[    0.3s] I: chroot architecture amd64 is equal to the host's architecture
[    0.4s] I: finding correct signed-by value...
[    0.5s] I: running apt-get update...
[    2.8s] I: downloading packages with apt...
[    5.7s] I: extracting archives...
[    8.0s] I: running --essential-hook in shell: sh -c 'dpkg-divert --root "$1" --quiet' exec
[    8.1s] I: installing essential packages...
[   12.0s] Setting up libc6:amd64 (2.41-12) ...
[   15.0s] I: installing remaining packages inside the chroot...
[   30.0s] Setting up systemd (257.9-1) ...
[   40.0s] I: running --customize-hook in shell: sh -c 'PYTHONPATH=/src python -m vmtest.portable.image.configure' exec
[   43.1s] vmtest-step: kernel took 3.1 s
[   45.0s] vmtest-step: instrumentation took 1.9 s
[   45.2s] vmtest-step: users took 0.2 s
[   45.3s] vmtest-step: files took 0.1 s
[   46.0s] vmtest-step: units took 0.7 s
[   46.0s] vmtest-step: pip took 0.0 s
[   46.1s] vmtest-step: setup took 0.1 s
[   46.2s] vmtest-step: update markers took 0.1 s
[   47.0s] I: cleaning package lists and apt cache...
[   48.0s] I: success in 48.0123 seconds
[   55.0s] vmtest-step: initramfs took 6.5 s
[   62.0s] vmtest-step: disk image took 7.0 s
"""
INTERRUPTED_LOG = """\
$ mmdebstrap …
[    0.3s] I: chroot architecture amd64 is equal to the host's architecture
[    5.7s] I: extracting archives...
[    6.0s] vmtest: build stopped
"""


def test_the_marks_of_a_build_log() -> None:
    marks = read_marks(PREVIOUS_LOG)
    assert len(marks) == 21, "every info and step line, no other"
    assert [(mark.seconds, mark.label, mark.ends) for mark in marks[5:7]] == [
        (8.0, "running --essential-hook", False), (8.1, "installing essential packages", False)]
    assert marks[8].label == "running --customize-hook" and marks[9].label == "kernel" and marks[9].ends
    assert marks[-1].seconds == 62.0 and marks[-1].label == "disk image"
    assert complete(marks) and not complete(read_marks(INTERRUPTED_LOG))


def test_the_same_step_matches_across_builds_whatever_its_counts() -> None:
    first = mark_of(10.0, "vmtest-step: packages: host unpack of 312 debs took 20.5 s")
    second = mark_of(11.0, "vmtest-step: packages: host unpack of 315 debs took 19.0 s")
    other = mark_of(12.0, "vmtest-step: packages: download took 19.0 s")
    assert first is not None and second is not None and other is not None
    assert first.key == second.key != other.key
    assert mark_of(1.0, "vmtest-step: warning: systemctl preset x: failed") is None
    assert mark_of(1.0, "Setting up systemd (257.9-1) ...") is None


def test_the_step_line_is_the_one_the_hook_prints(capsys: pytest.CaptureFixture[str]) -> None:
    # The hook (steps.step_done, inside the image's hash) and the builder write the same lines.
    steps.step_done("users", time.monotonic() - 1.25)
    printed = mark_of(0.0, capsys.readouterr().err.strip())
    ours = mark_of(0.0, steps.step_line("users", 1.25))
    assert printed is not None and ours is not None
    assert (printed.label, printed.ends) == (ours.label, ours.ends) == ("users", True)
    assert printed.text.rsplit(" took ", 1)[1].endswith(" s") and ours.text == "vmtest-step: users took 1.2 s"


def _log(directory: Path, name: str, text: str, age: float) -> Path:
    path = directory / name
    path.write_text(text)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_the_previous_build_is_the_newest_complete_log_of_the_recipe(tmp_path: Path) -> None:
    _log(tmp_path, "client-amd64-aaaa.log", PREVIOUS_LOG, age=3600)
    _log(tmp_path, "client-amd64-bbbb.log", INTERRUPTED_LOG, age=60)  # newer, but never finished
    _log(tmp_path, "client-extra-amd64-cccc.log", PREVIOUS_LOG.replace("62.0s", "99.0s"), age=10)
    _log(tmp_path, "client-arm64-dddd.log", PREVIOUS_LOG.replace("62.0s", "98.0s"), age=10)
    marks = previous_marks(tmp_path, "client-amd64")
    assert marks and marks[-1].seconds == 62.0
    (tmp_path / "client-amd64-aaaa.log").unlink()
    assert previous_marks(tmp_path, "client-amd64") == [], "negative control: only an incomplete one is left"
    assert previous_marks(tmp_path / "nowhere", "client-amd64") == []


def watch(previous: list[str] | str, lines: list[tuple[float, str]]) -> list[Event]:
    events: list[Event] = []
    watcher = BuildWatcher(events.append, "key", "client image", read_marks(previous) if isinstance(previous, str)
                           else [])
    watcher.begin("building (trixie/amd64)")
    for seconds, text in lines:
        watcher.line(seconds, text)
    return events


# This build runs slower than the last one; its numbers differ, its steps do not.
CURRENT = [
    (0.4, "I: chroot architecture amd64 is equal to the host's architecture"),
    (3.0, "Get:1 http://deb.debian.org/debian trixie InRelease [140 kB]"),
    (50.0, "I: running --customize-hook in shell: sh -c 'PYTHONPATH=/other python -m configure' exec"),
    (54.0, "vmtest-step: kernel took 4.0 s"),
    (70.0, "vmtest-step: initramfs took 7.5 s"),
    (78.0, "vmtest-step: disk image took 8.0 s"),
]


def test_each_mark_says_the_step_now_running_and_the_time_left_by_the_last_build() -> None:
    events = watch(PREVIOUS_LOG, CURRENT)
    assert events[0] == Began("key", "client image", "building (trixie/amd64)", 62.0)
    assert events[1:] == [
        Stepped("key", "chroot architecture amd64 is equal to the host's architecture", "", 61.7),
        # The hook's steps log their end: while one runs, the last build names it.
        Stepped("key", "kernel", "", 22.0),
        Stepped("key", "instrumentation", "kernel took 4.0 s", pytest.approx(18.9)),  # type: ignore[arg-type]
        Stepped("key", "disk image", "initramfs took 7.5 s", 7.0),
        Stepped("key", "", "disk image took 8.0 s", 0.0),
    ]


def test_without_a_previous_build_there_is_no_time_left_nor_a_named_hook_step() -> None:
    events = watch([], CURRENT)
    assert events[0] == Began("key", "client image", "building (trixie/amd64)", None)
    assert [(event.step, event.done, event.remaining) for event in events[1:] if isinstance(event, Stepped)][1:3] == [
        ("running --customize-hook", "", None), ("", "kernel took 4.0 s", None)]


def test_the_plain_lines_of_a_build() -> None:
    lines: list[str] = []
    renderer = PlainRenderer(lines.append, origin=0.0)
    watcher = BuildWatcher(lambda event: renderer.handle(event, now), "key", "client image", read_marks(PREVIOUS_LOG))
    now = 0.0
    watcher.begin("building (trixie/amd64)")
    for now, text in CURRENT[2:4]:
        watcher.line(now, text)
    assert lines == [
        "[   50.0s] client image: kernel (50.0 s in, ~22.0 s left)",
        "[   54.0s] client image: kernel took 4.0 s; now instrumentation (54.0 s in, ~18.9 s left)",
    ]


def test_the_log_lines_reach_the_watcher_while_the_command_runs(tmp_path: Path) -> None:
    arrived: list[tuple[float, str]] = []
    build_log = BuildLog(tmp_path / "build.log", lambda seconds, text: arrived.append((time.monotonic(), text)))
    script = "echo 'I: downloading packages with apt...'; sleep 1; echo 'vmtest-step: kernel took 1.0 s'; sleep 1"
    returncode = _run_timestamped(["sh", "-c", script], build_log, dict(os.environ))
    ended = time.monotonic()
    assert returncode == 0
    assert [text for _, text in arrived] == ["I: downloading packages with apt...", "vmtest-step: kernel took 1.0 s"]
    assert ended - arrived[0][0] >= 1.5, "the first line arrived while the command still ran"
    assert ended - arrived[1][0] >= 0.7
    build_log.step_done("initramfs", time.monotonic() - 2.0)
    marks = read_marks(build_log.path.read_text())
    assert [(mark.label, mark.ends) for mark in marks] == [
        ("downloading packages with apt", False), ("kernel", True), ("initramfs", True)]
    # loose bounds: a loaded builder (the Nix check phase) may run the script late
    assert marks[0].seconds < 0.9 and 0.9 <= marks[1].seconds < 5.0 and marks[2].seconds >= 2.0
    assert arrived[-1][1].startswith("vmtest-step: initramfs took 2.0 s")
