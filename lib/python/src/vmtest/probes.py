"""Shell probes that any Linux guest can run: no netcat, no Python, only bash, coreutils and ss."""

from __future__ import annotations

import shlex


def tcp_open(port: int, host: str = "localhost", attempt_timeout: float = 2) -> str:
    """Succeeds if ``host:port`` accepts a TCP connection (bash's /dev/tcp)."""
    return f"timeout {attempt_timeout:g} bash -c {shlex.quote(f': < /dev/tcp/{host}/{int(port)}')} 2>/dev/null"


def unix_socket_listening(path: str, datagram: bool = False) -> str:
    """Succeeds if a process has bound the Unix socket ``path`` (and listens, for stream sockets).

    ss shows the path the server bound, which may differ by a symlink from
    ``path`` (PostgreSQL binds /var/run/postgresql/…), so both are resolved.
    """
    quoted = shlex.quote(path)
    listing = "ss -Hxa" if datagram else "ss -Hxl"
    kind = "u_dgr" if datagram else "u_(str|seq)"
    return (
        f"test -S {quoted} && target=$(realpath {quoted}) && "
        f"{listing} | awk '$1 ~ /^{kind}$/ {{print $5}}' | "
        '{ while read -r bound; do [ "$(realpath -q -- "$bound")" = "$target" ] && exit 0; done; exit 1; }'
    )
