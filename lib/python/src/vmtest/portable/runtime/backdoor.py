"""The backdoor shell's framing, as upstream's driver speaks it (reference §3).

A command goes out as one line; its stdout comes back base64-encoded on one line; the
exit status follows on request (``${PIPESTATUS[0]}``). ``QemuMachine`` and ``make
bench``'s raw harness both speak it through these functions. A command's output is decoded
as it arrives (``read_output``): 40 MB of output costs about twice that at its peak, not the
base64 text, its joined copy, its stripped copy and the decoded bytes at once.
"""

from __future__ import annotations

import binascii
import shlex
import socket

from vmtest.waiting import Timeout, to_whole_seconds

MARKER = b"Spawning backdoor root shell..."
# The backdoor's QEMU devices for a chardev ``shell``: a virtio serial port, which QEMU throttles when
# the host reads slowly, where upstream's virtconsole (/dev/hvc0) drops the bytes (guest/backdoor.sh).
BACKDOOR_DEVICES = ("-device", "virtio-serial", "-device", "virtserialport,chardev=shell,name=org.vmtest.backdoor")
# What the NixOS driver gives the same chardev (its QemuStartCommand): the images answer on either.
UPSTREAM_BACKDOOR_DEVICES = ("-device", "virtio-serial", "-device", "virtconsole,chardev=shell")
STATUS_REQUEST = b"echo ${PIPESTATUS[0]}\n"


def command_line(command: str, timeout: Timeout | None) -> bytes:
    """The line that runs ``command`` under ``set -euo pipefail`` (bounded by guest ``timeout(1)``
    when ``timeout`` is given) and prints its stdout base64-encoded on one line."""
    prefix = f"timeout {to_whole_seconds(timeout)} " if timeout is not None else ""
    return f"{prefix}bash -c {shlex.quote('set -euo pipefail; ' + command)} | (base64 -w 0; echo)\n".encode()


# What one recv asks for. Each recv allocates this much before it shrinks to what came; every
# chunk is consumed at once, so only one is alive at a time.
RECV_BYTES = 1 << 16
_WHITESPACE = b" \t\r\n"


class CorruptOutput(ValueError):
    """A command's output line was not base64 (bytes were lost on the way); the line was read to its end."""

    def __init__(self, reason: str, received: int) -> None:
        super().__init__(reason)
        self.received = received


def read_line_block(shell: socket.socket, keep: bool = True) -> bytearray | None:
    """Read until what was received ends with a newline; None if the shell closed first.
    Without ``keep``, nothing is kept (an output no one will read) and an empty bytearray returned."""
    block = bytearray()
    while True:
        chunk = shell.recv(RECV_BYTES)
        if not chunk:
            return None
        if keep:
            block += chunk
        if chunk.endswith(b"\n"):
            return block


def read_output(shell: socket.socket) -> bytearray | None:
    """Read a command's output line (``command_line``'s base64) and return it decoded; None if the shell
    closed first. Raises CorruptOutput, after reading the line to its end, when it is not base64.

    Decoded as it arrives, whole quads at a time: the base64 text (4/3 of the output) is never held
    at once, only the decoded bytes grow. Strict: a character outside the alphabet, padding before the
    end, or a length that is not a multiple of 4 is an error, as ``b64decode(validate=True)`` of
    the whole stripped line would say.
    """
    decoded = bytearray()
    pending = bytearray()  # received, not decoded yet: under 4 characters, or the line's end
    received = 0
    problem: str | None = None
    padded = False
    started = False
    while True:
        chunk = shell.recv(RECV_BYTES)
        if not chunk:
            return None
        received += len(chunk)
        ended = chunk.endswith(b"\n")
        if problem is None:
            pending += chunk
            if not started:
                del pending[:len(pending) - len(pending.lstrip(_WHITESPACE))]
                started = bool(pending)
            if ended:
                del pending[len(pending.rstrip(_WHITESPACE)):]
            usable = len(pending) if ended else len(pending) - len(pending) % 4
            if usable:
                quads = pending[:usable]
                del pending[:usable]
                try:
                    if padded:
                        raise binascii.Error("data after the padding")
                    decoded += binascii.a2b_base64(quads, strict_mode=True)
                    padded = quads.endswith(b"=")
                except binascii.Error as error:
                    problem = str(error)
                    pending.clear()
        if ended:
            if problem is not None:
                raise CorruptOutput(problem, received)
            return decoded
