"""Log collection into the driver's output directory, secrets redacted before anything is written.

Each source (a unit's journal as text or JSON, a guest file, a command's
output) is read through the backdoor, gzip-compressed in the guest for the
transfer, redacted on the host, and only then written under
``<out_dir>/<dest>/``; files over 10 MB are stored gzip-compressed. Paths are
relative to the driver's output directory, so under Nix they land in ``$out``.

An application names its own sources from these types (the Alicia e2e suite's are
in ``e2e-test/test_script.py``)::

    sources = [logs.journal_json("backend.jsonl", "app.service"), *logs.standard_sources()]
    logs.collect_logs(server, sources, dest="logs", redactor=redactor)
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import shlex
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vmtest.machine_api import Machine, UnsupportedOnMachine, require_method, run

# Re-exported: testScripts name it logs.Redactor.
from vmtest.redaction import REDACTED as REDACTED
from vmtest.redaction import Redactor as Redactor
from vmtest.waiting import Timeout, to_seconds

__all__ = [
    "REDACTED", "CollectedLog", "LogSource", "Redactor", "collect_logs", "command", "copy_console_log",
    "failure_bundle", "file", "journal", "journal_and_files", "journal_json", "standard_sources"
]

COMPRESS_OVER_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class LogSource:
    """One thing to collect: ``kind`` is journal, journal-json, file, glob or command."""

    name: str
    kind: str
    target: str = ""
    since: str | None = None

    def command(self) -> str:
        if self.kind == "journal":
            return f"journalctl --no-pager -o short-iso -u {shlex.quote(self.target)}"
        if self.kind == "journal-json":
            return f"journalctl --no-pager -o json -u {shlex.quote(self.target)}"
        if self.kind == "file":
            return f"cat {shlex.quote(self.target)}"
        if self.kind == "glob":
            return f"cat {self.target} 2>/dev/null"  # unquoted on purpose: the guest expands it
        if self.kind == "command":
            return self.target
        raise ValueError(f"unknown log source kind {self.kind!r}")


def journal(name: str, unit: str) -> LogSource:
    return LogSource(name, "journal", unit)


def journal_json(name: str, unit: str) -> LogSource:
    return LogSource(name, "journal-json", unit)


def file(name: str, path: str) -> LogSource:
    return LogSource(name, "file", path)


def command(name: str, shell: str) -> LogSource:
    """The output (stdout and stderr) of ``shell``, run as a plain script: without the backdoor's
    ``set -euo pipefail``, so every command of a list runs whatever the one before it returned (a
    ``cat`` of a file one node flavour lacks does not cost the ``journalctl`` after it)."""
    return LogSource(name, "command", shell)


def journal_and_files(name: str, unit: str, pattern: str) -> LogSource:
    """A service's log wherever the node flavour puts it: the journal of ``unit`` (a name or a glob
    such as ``postgresql*``: NixOS' modules log to the journal, nginx's ``error_log stderr``
    included), then each existing file matching ``pattern`` (unquoted: the guest expands it) under a
    ``==> path <==`` line (Debian's packages log to files, e.g. /var/log/nginx/error.log)."""
    return LogSource(name, "command", (
        f"journalctl --no-pager -o short-iso -u {shlex.quote(unit)}; "
        f'for vmtest_f in {pattern}; do if [ -f "$vmtest_f" ]; then '
        """printf '==> %s <==\n' "$vmtest_f"; cat "$vmtest_f"; fi; done"""
    ))


def standard_sources() -> list[LogSource]:
    """What every machine gets: failed units, errors of this boot, dmesg."""
    return [
        command("systemctl-failed.txt", "systemctl --failed --no-pager --full"),
        command("system-errors.log", "journalctl --no-pager -b --priority=err"),
        command("dmesg.log", "dmesg --ctime 2>/dev/null || dmesg"),
    ]


@dataclass
class CollectedLog:
    """One collected file: where it went, how big it is, and whether collecting worked."""

    source: LogSource
    path: Path | None
    size: int
    error: str | None = None


TRANSFER_CHUNK_BYTES = 2 * 1024 * 1024
TRANSFER_ATTEMPTS = 3


class TransferError(Exception):
    """Data read through the backdoor did not match its guest-side checksum."""


UNREADABLE = (TransferError, OSError, EOFError, zlib.error)


def _decode_checked(payload: str, what: str) -> bytes:
    # QEMU drops virtio-console bytes when the host reader falls behind (hw/char/virtio-console.c,
    # flush_buf), upstream's driver included: every transfer carries the guest's sha256.
    digest, _, encoded = payload.strip().partition(":")
    try:
        data = base64.b64decode(encoded, validate=True)
    except ValueError as error:
        raise TransferError(f"{what}: corrupted in transit ({error})") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise TransferError(f"{what}: checksum mismatch after transfer ({len(data)} bytes received)")
    return data


def _read_chunk(machine: Machine, staged: str, index: int, timeout: float) -> bytes:
    read = f"dd if={staged} bs={TRANSFER_CHUNK_BYTES} skip={index} count=1 status=none"
    last = ""
    for _ in range(TRANSFER_ATTEMPTS):
        _, output = run(machine, f"printf '%s:' \"$({read} | sha256sum | cut -c1-64)\"; {read} | base64 -w0", timeout)
        try:
            return _decode_checked(output, f"chunk {index} of {staged}")
        except TransferError as error:
            last = str(error)
    raise TransferError(f"{last} ({TRANSFER_ATTEMPTS} attempts)")


def _read_source(machine: Machine, source: LogSource, timeout: float) -> tuple[bytes | None, str | None]:
    """Read a source's output gzip-compressed, verified by checksum, in chunks when it is large."""
    # gzip in the guest: logs compress ~10x, and the transfer is the slow part.
    small = TRANSFER_CHUNK_BYTES
    stage = (
        # The source runs as a plain script (see command()): not under the backdoor's set -euo pipefail.
        f"set +o pipefail; f=$(mktemp /tmp/vmtest-log.XXXXXX); ( set +eu; {source.command()} ) 2>&1 | gzip -1 -c > $f; "
        f"s=$(stat -c %s $f); printf '%s ' $s; "
        f"if [ $s -le {small} ]; then printf '%s:' \"$(sha256sum < $f | cut -c1-64)\"; base64 -w0 $f; rm -f $f; "
        f"else printf 'staged %s' $f; fi"
    )
    last = ""
    for _ in range(TRANSFER_ATTEMPTS):
        status, output = run(machine, stage, timeout)
        size_text, _, rest = output.partition(" ")
        if not size_text.isdigit():
            return None, f"unreadable output (exit {status}): {output[:200]!r}"
        if rest.startswith("staged "):
            return _read_staged(machine, rest.removeprefix("staged ").strip(), int(size_text), timeout)
        try:
            return gzip.decompress(_decode_checked(rest, source.name)), None
        except UNREADABLE as error:
            last = str(error)
    return None, f"{last} ({TRANSFER_ATTEMPTS} attempts)"


def _read_staged(machine: Machine, staged: str, size: int, timeout: float) -> tuple[bytes | None, str | None]:
    try:
        shared = _read_through_shared_dir(machine, staged, size, timeout)
        if shared is not None:
            return gzip.decompress(shared), None
        chunks = [_read_chunk(machine, staged, index, timeout) for index in range(-(-size // TRANSFER_CHUNK_BYTES))]
        return gzip.decompress(b"".join(chunks)), None
    except UNREADABLE as error:
        return None, str(error)
    finally:
        run(machine, f"rm -f {staged}", timeout)


def _read_through_shared_dir(machine: Machine, staged: str, size: int, timeout: float) -> bytes | None:
    """The staged file read through the 9p directory both drivers share (guest /tmp/shared,
    host ``machine.shared_dir``), or None when the machine has none.

    Many times faster than the console for large logs (no base64, no 2 MiB round trips);
    gzip's own CRC and length check the result. Nothing lands in the output directory.
    """
    if not Path(machine.shared_dir).is_dir():
        return None
    name = f"vmtest-log-{uuid.uuid4().hex}.gz"
    status, _ = run(machine, f"mountpoint -q /tmp/shared && cp {staged} /tmp/shared/{name}", timeout)
    host_file = Path(machine.shared_dir) / name
    try:
        if status != 0 or not host_file.is_file() or host_file.stat().st_size != size:
            return None
        return host_file.read_bytes()
    finally:
        host_file.unlink(missing_ok=True)


def collect_logs(
    machine: Machine,
    sources: Sequence[LogSource] | None = None,
    *,
    dest: str | None = None,
    redactor: Redactor | None = None,
    out_dir: Path | None = None,
    timeout: Timeout = 300,
) -> list[CollectedLog]:
    """Collect ``sources`` (default: ``standard_sources()``) from ``machine`` into ``<out_dir>/<dest>``.

    ``dest`` defaults to ``logs/<machine name>``; ``out_dir`` to the driver's
    output directory; ``timeout`` (int, float or timedelta) bounds each guest command.
    Nothing is written before redaction. Sources that fail are recorded (``error``)
    rather than raised, so a broken machine still yields what can be had; a VM's
    console log is added (a container has none: that is recorded, with why).
    """
    limit = to_seconds(timeout)
    target = (out_dir or Path(machine.out_dir)) / (dest or f"logs/{machine.name}")
    target.mkdir(parents=True, exist_ok=True)
    redactor = redactor or Redactor()
    collected: list[CollectedLog] = []
    # execute() on a machine that is down would boot it again: take only what the host has.
    chosen = (sources if sources is not None else standard_sources()) if machine.is_up() else []
    with machine.nested(f"collecting logs into {target}"):
        if any("journalctl" in source.command() for source in chosen):
            # journalctl opening a file that journald is extending can take it for truncated and
            # skip it whole ("… is truncated, ignoring file"); have journald write everything first.
            try:
                run(machine, "journalctl --sync 2>/dev/null || true", limit)
            except Exception as failure:  # collection goes on with what can be read
                machine.log(f"journalctl --sync failed: {failure}")
        for source in chosen:
            try:
                data, error = _read_source(machine, source, limit)
            except Exception as failure:  # a dead VM must not stop the collection of the rest
                data, error = None, f"{type(failure).__name__}: {failure}"
            if data is None:
                collected.append(CollectedLog(source, None, 0, error))
                continue
            collected.append(_write(target / source.name, redactor.redact(data.decode(errors="replace")), source))
        try:
            collected.extend(copy_console_log(machine, target, redactor))
        except UnsupportedOnMachine as missing:
            collected.append(CollectedLog(LogSource("serial.log", "console"), None, 0, str(missing)))
    return collected


def _write(path: Path, text: str, source: LogSource) -> CollectedLog:
    data = text.encode()
    if len(data) > COMPRESS_OVER_BYTES:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data, compresslevel=6)
    path.write_bytes(data)
    return CollectedLog(source, path, len(data))


def copy_console_log(machine: Machine, target: Path, redactor: Redactor) -> list[CollectedLog]:
    """The console log as the host has it (even when the VM is dead); nothing if the console was silent.

    Raises UnsupportedOnMachine, naming the machine and its kind, for a machine without a serial
    console (an upstream ``NspawnMachine``: its journal is what the driver streams instead).
    """
    text = str(require_method(machine, "get_console_log", "copying the serial console log")())
    if not text:
        return []
    return [_write(target / "serial.log", redactor.redact(text), LogSource("serial.log", "console"))]


@contextmanager
def failure_bundle(
    machines: Sequence[Machine],
    sources: dict[str, Sequence[LogSource]] | None = None,
    *,
    redactor: Redactor | None = None,
    dest: str = "logs",
    always: bool = False,
) -> Iterator[None]:
    """Collect every machine's logs when the block raises (or always, with ``always``), then re-raise.

    ``sources`` maps machine names to their sources (default: standard ones).
    A machine that has died still yields its host-side console log.
    """
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        if failed or always:
            for machine in machines:
                started = time.monotonic()
                chosen = (sources or {}).get(machine.name)
                try:
                    collect_logs(machine, chosen, dest=f"{dest}/{machine.name}", redactor=redactor)
                except Exception as error:  # never mask the original failure
                    machine.log(f"log collection failed after {time.monotonic() - started:.1f} s: {error}")
