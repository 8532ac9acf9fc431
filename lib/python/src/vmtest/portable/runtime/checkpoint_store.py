"""Saved machine states in the cache, for vmtest.checkpoint on the portable runtime.

A checkpoint is a directory ``<cache>/checkpoints/<name>-<key>/`` holding, per machine, its RAM
and device state (a QEMU migration stream, ``<machine>.state``) and its disk (the run's qcow2
overlay on the cached image, ``<machine>.qcow2``), and ``meta.json`` (the fingerprint the key was
made from, and each file's size), written last. One checkpoint is kept per name and machine set.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmtest.portable.runtime.machine import QemuMachine
from vmtest.portable.runtime.parallel import each_in_parallel
from vmtest.portable.runtime.process import run_tied
from vmtest.portable.runtime.qemu import MachineConfig, qemu_argv
from vmtest.waiting import format_seconds

__all__ = ["CheckpointStore", "Fingerprint", "Stored", "differences", "human_bytes", "stored_checkpoints"]

QEMU_STATE_MAGIC = b"QEVM"  # the first bytes of every QEMU migration stream
# The 9p shares, by their fstab entries (image/configure.py)
MOUNT_SHARES = "mount -a -t 9p"
# Before a save: the shares unmounted, then the journal rotated, so that the saved run's entries are
# in archived files, which a resumed guest deletes (the rotation costs the cold run, not the resume).
PREPARE_SAVE = "umount -a -t 9p && { journalctl --rotate >/dev/null 2>&1; sync; }"
ARCHIVED_JOURNALS = "/var/log/journal/*/*@*.journal* /run/log/journal/*/*@*.journal*"
SAVE_TIMEOUT = 600.0


def script_lines_through_block(source: str, line: int) -> list[str]:
    """The lines of ``source`` from the first through the end of the ``with`` statement at ``line``
    (through ``line`` when there is no such statement): what the saved state was made by."""
    end = line
    try:
        tree = ast.parse(source)
    except SyntaxError:
        tree = None
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.With) and node.lineno <= line <= (node.items[-1].context_expr.end_lineno or line):
            end = max(end, node.end_lineno or line)
    return source.splitlines()[:end]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Fingerprint:
    """What a saved state depends on: QEMU's version per binary, each machine's image and start
    script (its spec: memory, cores, VLANs, kernel parameters; comments left out, they name the
    checkout), and a digest per testScript line up to the block's end."""

    qemu: dict[str, str]
    images: dict[str, str]
    machines: dict[str, str]
    script: str
    lines: tuple[str, ...]
    disks: dict[str, str] = field(default_factory=dict)  # each image's disk as built: size and mtime

    def key(self) -> str:
        return _digest(json.dumps(self.as_json(), sort_keys=True))

    def as_json(self) -> dict[str, Any]:
        return {"qemu": self.qemu, "images": self.images, "machines": self.machines,
                "script": self.script, "lines": list(self.lines), "disks": self.disks}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fingerprint:
        return cls(dict(data["qemu"]), dict(data["images"]), dict(data["machines"]), str(data["script"]),
                   tuple(data["lines"]), dict(data.get("disks", {})))


def differences(saved: Fingerprint, now: Fingerprint) -> list[str]:
    """Why a saved checkpoint does not fit this run, one phrase per difference."""
    found = [f"QEMU changed ({binary}: {saved.qemu.get(binary)} -> {version})"
             for binary, version in now.qemu.items() if saved.qemu.get(binary) != version]
    for name in sorted(set(saved.images) | set(now.images)):
        if saved.images.get(name) != now.images.get(name):
            found.append(f"machine {name}'s image changed ({saved.images.get(name)} -> {now.images.get(name)})")
        elif saved.disks.get(name) != now.disks.get(name):
            found.append(f"machine {name}'s image was built again since (its disk differs)")
        elif saved.machines.get(name) != now.machines.get(name):
            found.append(f"machine {name}'s spec changed: its start script differs")
    changed = next((number for number, (old, new) in enumerate(zip(saved.lines, now.lines, strict=False), 1)
                    if old != new), None)
    if changed is not None:
        found.append(f"line {changed} of {now.script} changed")
    elif len(saved.lines) != len(now.lines):
        found.append(f"{now.script} has {len(now.lines)} lines up to the block's end, "
                     f"the checkpoint was made with {len(saved.lines)}")
    return found


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@dataclass
class Stored:
    """A checkpoint directory in the cache, as ``meta.json`` describes it."""

    path: Path
    name: str
    fingerprint: Fingerprint
    files: dict[str, int]  # file name -> size when saved
    created: float

    def broken(self) -> str | None:
        """Why the files cannot be this checkpoint's (missing, truncated, not a QEMU state), or None."""
        for file_name, size in self.files.items():
            entry = self.path / file_name
            if not entry.is_file():
                return f"{file_name} is missing"
            if entry.stat().st_size != size:
                return f"{file_name} is {entry.stat().st_size} bytes, {size} were saved (truncated or changed)"
            if file_name.endswith(".state") and _head(entry, len(QEMU_STATE_MAGIC)) != QEMU_STATE_MAGIC:
                return f"{file_name} is not a QEMU migration stream (its header is not {QEMU_STATE_MAGIC!r})"
        return None


def _head(path: Path, size: int) -> bytes:
    with path.open("rb") as stream:
        return stream.read(size)


def read_stored(path: Path) -> Stored | None:
    """The checkpoint in ``path``, or None when its meta.json is missing or unreadable."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        return Stored(path, str(meta["name"]), Fingerprint.from_json(meta["fingerprint"]),
                      {str(k): int(v) for k, v in meta["files"].items()}, float(meta["created"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stored_checkpoints(root: Path) -> list[Path]:
    """Every checkpoint directory under ``root``, complete or not."""
    return sorted(entry for entry in root.glob("*") if entry.is_dir()) if root.is_dir() else []


def qemu_version(binary: str) -> str:
    """The first line of ``binary --version``, or why there is none."""
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30,
                              check=False).stdout.splitlines()[0].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"


def _built(disk: Path) -> str:
    """Which build of an image's disk this is: the saved overlays are only valid on top of it."""
    status = disk.stat()
    return f"{status.st_size}:{status.st_mtime_ns}"


def _without_comments(script: str) -> str:
    return "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))


@dataclass
class CheckpointStore:
    """The checkpoints of one run: ``root`` in the cache, the run's testScripts (filename -> text),
    its machines' configs, and where to say what happens. ``fresh``: never resume (save anew)."""

    root: Path
    scripts: dict[str, str]
    configs: dict[str, MachineConfig]
    say: Callable[[str], None]
    fresh: bool = False
    messages: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    saved: list[dict[str, Any]] = field(default_factory=list)
    left: dict[str, float] = field(default_factory=dict)  # name -> when its block ended (epoch s)
    _qemu: dict[str, str] = field(default_factory=dict)

    def tell(self, message: str) -> None:
        self.messages.append(message)
        self.say(message)

    def record(self) -> dict[str, Any]:
        """For the run record: what was resumed and saved, and every message."""
        return {"resumed": self.resumed, "saved": self.saved, "block_ended_at": self.left,
                "messages": self.messages}

    def fingerprint(self, machines: Sequence[QemuMachine], filename: str, line: int) -> Fingerprint:
        configs = [self.configs[machine.name] for machine in machines]
        binaries = {qemu_argv(config)[0] for config in configs}
        for binary in binaries - set(self._qemu):
            self._qemu[binary] = qemu_version(binary)
        source = self.scripts.get(filename, "")
        return Fingerprint(
            qemu={binary: self._qemu[binary] for binary in sorted(binaries)},
            images={config.name: config.image.directory.name for config in configs},
            machines={machine.name: _digest(_without_comments(Path(machine.start_command).read_text()))
                      for machine in machines},
            script=Path(filename).name,
            lines=tuple(_digest(text) for text in script_lines_through_block(source, line)),
            disks={config.name: _built(config.image.disk) for config in configs},
        )

    def site(self, name: str, machines: Sequence[QemuMachine], filename: str, line: int) -> Site:
        """The checkpoint ``name`` of ``machines`` at ``filename``:``line`` (vmtest.checkpoint's entry)."""
        if filename not in self.scripts:
            self.tell(f"checkpoint {name!r}: {filename} is not one of this run's testScripts; it is not kept")
        return Site(self, name, list(machines), self.fingerprint(machines, filename, line),
                    kept=filename in self.scripts)


@dataclass
class Site:
    """One ``with checkpoint(...)`` of a run."""

    store: CheckpointStore
    name: str
    machines: list[QemuMachine]
    fingerprint: Fingerprint
    kept: bool = True

    @property
    def label(self) -> str:
        return f"{self.name}-{'-'.join(sorted(m.name for m in self.machines))}"

    @property
    def path(self) -> Path:
        return self.store.root / f"{self.label}-{self.fingerprint.key()}"

    def _same_label(self) -> list[Path]:
        return [p for p in stored_checkpoints(self.store.root)
                if p.suffix != ".partial" and p.name.rsplit("-", 1)[0] == self.label]

    def resume(self) -> bool:
        """Resume every machine from the matching checkpoint; False (the block runs, cold) when there
        is none, it does not fit or it is broken, each with a message saying why."""
        if not self.kept:
            return False
        say = self.store.tell
        what = f"checkpoint {self.name!r} ({', '.join(m.name for m in self.machines)})"
        if self.store.fresh:
            say(f"{what}: --fresh, not resumed; the block runs and saves it anew")
            return False
        stored = read_stored(self.path)
        if stored is None:
            others = [s for s in map(read_stored, self._same_label()) if s is not None]
            if others:
                why = "; ".join(differences(others[-1].fingerprint, self.fingerprint)) or "its key differs"
                say(f"{what}: the saved one does not fit this run ({why}); booting cold")
            else:
                say(f"{what}: none saved yet; booting cold, saved when the block ends")
            return False
        kept = [m.name for m in self.machines if m.keep_machine_state and m.disk_path.exists()]
        if kept:
            say(f"{what}: not resumed, {', '.join(kept)} keeps its disk from an earlier run (--keep-machine-state)")
            return False
        if any(machine.booted for machine in self.machines):
            say(f"{what}: not resumed, {', '.join(m.name for m in self.machines if m.booted)} already running")
            return False
        broken = stored.broken()
        if broken:
            say(f"{what}: {stored.path} is broken ({broken}); discarded, booting cold")
            shutil.rmtree(stored.path, ignore_errors=True)
            return False
        started = time.monotonic()
        failures = each_in_parallel(self.machines, lambda machine: resume_machine(machine, stored.path),
                                    lambda machine: machine.name)
        if failures:  # QEMU's refusal, a dead guest, a failed command: all mean cold
            name, error = next(iter(failures.items()))
            failed = next(machine for machine in self.machines if machine.name == name)
            if failed.serial_thread is not None:
                failed.serial_thread.join(timeout=2)  # QEMU's last words, when it exited
            said = "; ".join(line.strip() for line in failed.console_tail(3).splitlines() if line.strip())
            for machine in self.machines:
                machine.release()
                machine.disk_path.unlink(missing_ok=True)  # it is backed by the checkpoint discarded here
            if not isinstance(error, Exception):
                raise error  # an interruption is not a broken checkpoint
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            say(f"{what}: QEMU could not resume {name} ({first}; its console: {said or 'nothing'}); "
                "discarded, booting cold")
            shutil.rmtree(stored.path, ignore_errors=True)
            return False
        elapsed = time.monotonic() - started
        size = human_bytes(sum(stored.files.values()))
        say(f"{what}: resumed in {format_seconds(elapsed)} from {stored.path} ({size})")
        self.store.resumed.append(self.name)
        return True

    def left(self) -> None:
        """Note when the block ended: the first command after it comes next."""
        self.store.left[self.name] = time.time()

    def save(self) -> None:
        """Save every machine (all paused first, so their states belong to one moment) into the
        cache, replacing this name's older checkpoint; the machines run on afterwards."""
        if not self.kept:
            return
        what = f"checkpoint {self.name!r}"
        down = [m.name for m in self.machines if not m.is_up()]
        if down:
            self.store.tell(f"{what}: not saved, {', '.join(down)} not running at the block's end")
            return
        started = time.monotonic()
        partial = self.path.with_name(self.path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        # Guest memory and disks, secrets included: only their owner reads them.
        self.store.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial.mkdir(mode=0o700)
        try:
            files = save_machines(self.machines, partial)
            (partial / "meta.json").write_text(json.dumps({
                "name": self.name, "fingerprint": self.fingerprint.as_json(), "files": files,
                "created": time.time()}, indent=1))
            for old in self._same_label():
                shutil.rmtree(old, ignore_errors=True)
            partial.rename(self.path)
        except Exception as error:  # a checkpoint is an optimisation: failing to save fails no test
            self.store.tell(f"{what}: not saved after {format_seconds(time.monotonic() - started)}: {error}")
            return
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        size = sum(files.values())
        self.store.saved.append({"name": self.name, "path": str(self.path), "bytes": size,
                                 "seconds": round(time.monotonic() - started, 2)})
        self.store.tell(f"{what}: saved in {format_seconds(time.monotonic() - started)} to {self.path} "
                        f"({human_bytes(size)})")


def save_machines(machines: Sequence[QemuMachine], directory: Path) -> dict[str, int]:
    """Pause all ``machines``, write each one's state and disk into ``directory``, and let them run on;
    returns each file's size. QEMU refuses to migrate a guest with a 9p export mounted, so the
    shares are unmounted around the save."""
    for machine in machines:
        machine.succeed(PREPARE_SAVE, timeout=120)
    try:
        for machine in machines:
            machine.pause()
        for machine in machines:
            machine.save_state(directory / f"{machine.name}.state", SAVE_TIMEOUT)
            # The migration flushed and released the disk: its overlay is whole until `cont`.
            run_tied(["cp", "--sparse=always", str(machine.disk_path), str(directory / f"{machine.name}.qcow2")],
                     check=True)
    finally:
        for machine in machines:
            machine.run_on()
        for machine in machines:
            if machine.is_up():
                machine.succeed(MOUNT_SHARES, timeout=120)
    return {entry.name: entry.stat().st_size for entry in directory.iterdir()}


def resume_machine(machine: QemuMachine, directory: Path) -> None:
    """Start ``machine`` from its state in ``directory`` on a new overlay of the saved disk, then make
    the guest this run's: its clock stepped to the host's, the shares mounted again, and its journal
    holding nothing of the run that saved it."""
    machine.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    machine.disk_path.unlink(missing_ok=True)
    run_tied(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
              "-b", str(directory / f"{machine.name}.qcow2"), str(machine.disk_path)], check=True)
    machine.resume_from(directory / f"{machine.name}.state")
    # the saved run's journal entries are in the files archived before the save (PREPARE_SAVE)
    machine.succeed(f"date -s @{time.time():.3f} >/dev/null; {MOUNT_SHARES}; rm -f {ARCHIVED_JOURNALS}", timeout=120)
