"""The guest shell probes, run by bash on the host against real sockets."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from vmtest import probes


def holds(probe: str) -> bool:
    return subprocess.run(["bash", "-c", f"set -euo pipefail; {probe}"]).returncode == 0


def test_unix_socket_probe_follows_symlinks_and_ignores_stale_files(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    path = real / "s.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    assert holds(probes.unix_socket_listening(str(path)))
    assert holds(probes.unix_socket_listening(str(tmp_path / "link" / "s.sock"))), "bound under another name"
    assert not holds(probes.unix_socket_listening(str(real / "missing.sock")))
    server.close()
    assert path.exists() and not holds(probes.unix_socket_listening(str(path))), "a stale socket file is not a server"


def test_datagram_sockets_are_told_apart(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    datagram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    datagram.bind(str(path))
    try:
        assert holds(probes.unix_socket_listening(str(path), datagram=True))
        assert not holds(probes.unix_socket_listening(str(path)))
    finally:
        datagram.close()


def test_tcp_probe() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    assert holds(probes.tcp_open(port, "127.0.0.1"))
    server.close()
    assert not holds(probes.tcp_open(port, "127.0.0.1"))
