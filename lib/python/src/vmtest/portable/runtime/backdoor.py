"""The backdoor shell's framing, as upstream's driver speaks it (reference §3).

A command goes out as one line; its stdout comes back base64-encoded on one line; the
exit status follows on request (``${PIPESTATUS[0]}``). ``QemuMachine`` and ``make
bench``'s raw harness both speak it through these functions.
"""

from __future__ import annotations

import shlex
import socket

from vmtest.timeouts import Timeout, to_whole_seconds

MARKER = b"Spawning backdoor root shell..."
STATUS_REQUEST = b"echo ${PIPESTATUS[0]}\n"


def command_line(command: str, timeout: Timeout | None) -> bytes:
    """The line that runs ``command`` under ``set -euo pipefail`` (bounded by guest ``timeout(1)``
    when ``timeout`` is given) and prints its stdout base64-encoded on one line."""
    prefix = f"timeout {to_whole_seconds(timeout)} " if timeout is not None else ""
    return f"{prefix}bash -c {shlex.quote('set -euo pipefail; ' + command)} | (base64 -w 0; echo)\n".encode()


def read_line_block(shell: socket.socket) -> bytes | None:
    """Read until what was received ends with a newline; None if the shell closed first."""
    chunks: list[bytes] = []
    while True:
        chunk = shell.recv(1 << 20)
        if not chunk:
            return None
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            return b"".join(chunks)
