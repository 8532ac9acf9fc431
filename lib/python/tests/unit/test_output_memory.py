"""A command's output through the backdoor: what it costs in memory, and that decoding it as it
arrives says the same as decoding it whole.

The backdoor here is the host's bash on the other end of a socket pair: the line
``QemuMachine.execute`` sends runs as the guest's backdoor runs it, base64 and all.
The same on a real VM: tests/integration/test_faults.py.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmtest.errors import MachineError
from vmtest.portable.runtime import backdoor
from vmtest.portable.runtime.driver_log import CompositeLogger
from vmtest.portable.runtime.machine import QemuMachine

BASH = shutil.which("bash") or "bash-is-not-on-PATH"
OUTPUT_BYTES = 40_000_000


@pytest.fixture
def host_shell_machine(tmp_path: Path) -> Iterator[QemuMachine]:
    """A connected QemuMachine whose backdoor shell is the host's bash."""
    machine = QemuMachine(tmp_path / "out", tmp_path / "tmp", "run-box-vm", CompositeLogger([]))
    ours, theirs = socket.socketpair()
    shell = subprocess.Popen([BASH], stdin=theirs, stdout=theirs)
    theirs.close()
    machine.shell = ours
    machine.booted = machine.connected = True
    yield machine
    ours.close()
    shell.wait(timeout=30)


def test_a_40_mb_output_costs_about_twice_its_size(host_shell_machine: QemuMachine) -> None:
    host_shell_machine.succeed("true")  # everything a first command allocates, allocated
    tracemalloc.start()
    try:
        output = host_shell_machine.succeed(f"head -c {OUTPUT_BYTES} /dev/zero | tr '\\0' x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(output) == OUTPUT_BYTES and output.count("x") == OUTPUT_BYTES
    # The str returned and the decoded bytes it is made from are both needed at one moment: 2x.
    # Before: the base64 chunks, their join, the stripped copy and the decoded bytes (3.7x).
    assert peak < 2.5 * OUTPUT_BYTES, f"peak {peak / 1e6:.0f} MB for {OUTPUT_BYTES / 1e6:.0f} MB of output"


class Chunks:
    """A socket whose ``recv`` hands out the given chunks in turn, then end of stream."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    def recv(self, size: int) -> bytes:
        assert size >= 1
        return self.chunks.pop(0) if self.chunks else b""


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[start:start + size] for start in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 3, 4, 5, 7, 64, 1000])
def test_decoding_as_it_arrives_gives_what_decoding_it_whole_gives(size: int) -> None:
    payload = bytes(range(256)) * 13 + b"tail"
    line = base64.b64encode(payload) + b"\r\n"  # a terminal's line end, as the whole-line decode stripped it
    chunks = [*_split(line[:-2], size), b"\r\n"]  # a block ends with the chunk that ends in a newline
    assert backdoor.read_output(Chunks(chunks)) == payload  # type: ignore[arg-type]
    assert backdoor.read_output(Chunks([b"  " + base64.b64encode(b"ab") + b"\n"])) == b"ab"  # type: ignore[arg-type]
    assert backdoor.read_output(Chunks([b"\n"])) == b""  # type: ignore[arg-type]


@pytest.mark.parametrize(("line", "chunk"), [
    (b"QUJD!ERF\n", 64),          # a character outside the alphabet
    (b"QQ==QUJD\n", 4),           # padding before the end, in another chunk than what follows it
    (b"QQ==QUJD\n", 64),          # the same in one chunk
    (b"QUJDRA\n", 3),             # a length that is not a multiple of 4 (bytes were dropped)
])
def test_corrupt_output_is_read_to_its_end_and_reported(line: bytes, chunk: int) -> None:
    shell = Chunks([*_split(line[:-1], chunk), b"\n", b"MA==\n"])
    with pytest.raises(backdoor.CorruptOutput) as raised:
        backdoor.read_output(shell)  # type: ignore[arg-type]
    assert raised.value.received == len(line)
    assert backdoor.read_output(shell) == b"0", "the next line is read as the next line"  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        base64.b64decode(line.strip(), validate=True)  # the whole-line decode says so too


def test_a_corrupt_output_is_a_machine_error_and_the_next_command_is_in_step(host_shell_machine: QemuMachine) -> None:
    # What a console that dropped bytes delivers: a line that is not base64 (sent raw, past execute's
    # own base64), read where execute reads a command's output.
    assert host_shell_machine.shell is not None
    host_shell_machine.shell.sendall(b"printf 'QQ==QUJD\\n'\n")
    with pytest.raises(MachineError, match=r"box: the command's output was corrupted in transit while running "
                                           r"`cat big` \(9 bytes of base64 received: "):
        host_shell_machine._read_output("while running `cat big`")
    assert host_shell_machine.succeed("echo in step") == "in step\n"


def test_an_output_nobody_reads_is_not_kept(host_shell_machine: QemuMachine) -> None:
    host_shell_machine.execute(f"head -c {OUTPUT_BYTES // 4} /dev/zero", check_output=False)
    tracemalloc.start()
    try:
        assert host_shell_machine.succeed("echo next") == "next\n"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, f"the skipped output was kept: peak {peak / 1e6:.1f} MB"
