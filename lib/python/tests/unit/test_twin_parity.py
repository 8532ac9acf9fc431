"""What a testScript can tell between the drivers and between the twins, without a VM.

The portable runtime's port waits run upstream's own guest command (``nc -z addr port``), so a
Debian twin without netcat fails under it as under upstream's driver (tests/repo/guest_interface.py
finds such a recipe before anything boots). Log sources run as plain scripts, so a source's journal
part is collected on a node without /var/log/postgresql (NixOS), and ``journal_and_files`` reads a
service's log wherever either flavour puts it (the e2e testScript's sources, checked against the
script in tests/repo/test_nix_side.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vmtest import logs
from vmtest.errors import RequestedAssertionFailed
from vmtest.portable.runtime.driver_log import CompositeLogger
from vmtest.portable.runtime.machine import QemuMachine

from .host_shell import BASH, HostShellMachine

_STUB_NC = f"""#!{BASH}
# netcat's `nc -z`: records its arguments; the port accepts from the NC_OPEN_AFTER-th try on.
echo "$*" >> "$NC_LOG"
[ "$(wc -l < "$NC_LOG")" -ge "$NC_OPEN_AFTER" ]
"""


class LocalGuest(QemuMachine):
    """A QemuMachine whose ``execute`` runs in the host's bash as the backdoor runs a command
    (``set -euo pipefail``), with ``path`` as PATH; records every command."""

    def __init__(self, tmp_path: Path, path: str, env: dict[str, str] | None = None) -> None:
        super().__init__(tmp_path / "out", tmp_path / "tmp", "run-guest-vm", CompositeLogger([]))
        self.path = path
        self.env = env or {}
        self.commands: list[str] = []

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: Any = 900) -> tuple[int, str]:
        self.commands.append(command)
        done = subprocess.run([BASH, "-c", f"set -euo pipefail; {command}"], capture_output=True, text=True,
                              env={"PATH": self.path, **self.env}, timeout=60)
        return done.returncode, done.stdout


def _stub_bin(tmp_path: Path, tools: dict[str, str]) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    for name, text in tools.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o755)
    return directory


# -- the port waits: upstream's `nc -z addr port`, once a second ------------------------------------

def test_wait_for_open_port_runs_nc_z_once_a_second_until_it_succeeds(tmp_path: Path) -> None:
    stubs = _stub_bin(tmp_path, {"nc": _STUB_NC})
    log = tmp_path / "nc.log"
    guest = LocalGuest(tmp_path, f"{stubs}:{os.environ['PATH']}", {"NC_LOG": str(log), "NC_OPEN_AFTER": "3"})
    guest.wait_for_open_port(8000, timeout=30)
    assert log.read_text().splitlines() == ["-z localhost 8000"] * 3
    assert all("/dev/tcp" not in command for command in guest.commands)
    log.unlink()
    guest.wait_for_open_port(5432, addr="server", timeout=30)
    assert log.read_text().splitlines() == ["-z server 5432"] * 3


def test_wait_for_closed_port_returns_once_nc_z_fails(tmp_path: Path) -> None:
    stubs = _stub_bin(tmp_path, {"nc": _STUB_NC})
    log = tmp_path / "nc.log"
    guest = LocalGuest(tmp_path, f"{stubs}:{os.environ['PATH']}", {"NC_LOG": str(log), "NC_OPEN_AFTER": "1000"})
    guest.wait_for_closed_port(8000, timeout=30)
    assert log.read_text().splitlines() == ["-z localhost 8000"]
    # negative control: a port that stays open is never closed
    open_port = LocalGuest(tmp_path, f"{stubs}:{os.environ['PATH']}", {"NC_LOG": str(log), "NC_OPEN_AFTER": "1"})
    with pytest.raises(RequestedAssertionFailed, match="TCP port localhost:8000 to close"):
        open_port.wait_for_closed_port(8000, timeout=1)


def test_a_guest_without_netcat_never_sees_the_port_open(tmp_path: Path) -> None:
    """What a Debian twin without netcat-openbsd gets, here as under upstream's driver."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    guest = LocalGuest(tmp_path, str(empty))
    with pytest.raises(RequestedAssertionFailed, match=r"TCP port localhost:8000 to open.*nc: command not found"):
        guest.wait_for_open_port(8000, timeout=1)


def test_wait_for_open_unix_socket_runs_nc_z_u(tmp_path: Path) -> None:
    stubs = _stub_bin(tmp_path, {"nc": _STUB_NC})
    log = tmp_path / "nc.log"
    guest = LocalGuest(tmp_path, f"{stubs}:{os.environ['PATH']}", {"NC_LOG": str(log), "NC_OPEN_AFTER": "1"})
    guest.wait_for_open_unix_socket("/run/app.sock", timeout=30)
    guest.wait_for_open_unix_socket("/run/log.sock", is_datagram=True, timeout=30)
    assert log.read_text().splitlines() == ["-z -U /run/app.sock", "-z -uU /run/log.sock"]


# -- log sources on both node flavours ----------------------------------------------------------------

_STUB_JOURNALCTL = f"""#!{BASH}
# The journal of a NixOS-like server: postgres and nginx log there.
case "$*" in
  *--sync*) ;;
  *"-u postgresql*"*) echo "postgres[811]: LOG:  database system is ready to accept connections" ;;
  *"-u nginx.service"*) echo "nginx[900]: [emerg] host not found in upstream" ;;
  *) echo "journal of: $*" ;;
esac
"""


def server_guest(tmp_path: Path, root: Path) -> HostShellMachine:
    """A guest for ``logs.collect_logs``: a stub journal, and the guest's /var/log at ``root``/var/log."""
    stub = f"#!{BASH}\n" 'echo "$(basename "$0") $*"\n'
    stubs = _stub_bin(tmp_path, {"journalctl": _STUB_JOURNALCTL, "systemctl": stub, "dmesg": stub})
    return HostShellMachine(tmp_path / "out", name="server", stubs=stubs, var_log=root / "var/log")


# The e2e testScript's PostgreSQL source as it was: a glob only Debian's pg_ctlcluster fills, then
# the journal (where NixOS' postgres logs). Under the backdoor's set -e the failed cat ended it.
OLD_POSTGRESQL_SOURCE = logs.command(
    "postgresql.log", "cat /var/log/postgresql/*.log 2>/dev/null; journalctl --no-pager -o short-iso -u 'postgresql*'")


def test_a_command_source_runs_on_after_a_failing_command(tmp_path: Path) -> None:
    guest = server_guest(tmp_path, tmp_path / "nixos")  # no /var/log/postgresql
    source = logs.command("list.log", "echo first; false; echo second")
    collected = logs.collect_logs(guest, [OLD_POSTGRESQL_SOURCE, source],  # type: ignore[arg-type]
                                  out_dir=tmp_path, dest="logs")
    assert [c.error for c in collected] == [None, None]
    assert "database system is ready" in (tmp_path / "logs/postgresql.log").read_text()
    assert (tmp_path / "logs/list.log").read_text() == "first\nsecond\n"


def test_journal_and_files_on_a_nixos_like_guest_is_the_journal(tmp_path: Path) -> None:
    guest = server_guest(tmp_path, tmp_path / "nixos")  # nginx logs its errors to stderr: no error.log
    (tmp_path / "nixos/var/log/nginx").mkdir(parents=True)
    source = logs.journal_and_files("nginx-error.log", "nginx.service", "/var/log/nginx/error.log")
    [collected] = logs.collect_logs(guest, [source], out_dir=tmp_path, dest="logs")  # type: ignore[arg-type]
    assert collected.error is None
    assert (tmp_path / "logs/nginx-error.log").read_text() == "nginx[900]: [emerg] host not found in upstream\n"


def test_journal_and_files_on_a_debian_like_guest_adds_the_files(tmp_path: Path) -> None:
    root = tmp_path / "debian"
    (root / "var/log/postgresql").mkdir(parents=True)
    for cluster in ("16-main", "17-main"):
        (root / f"var/log/postgresql/postgresql-{cluster}.log").write_text(f"LOG:  cluster {cluster}\n")
    guest = server_guest(tmp_path, root)
    source = logs.journal_and_files("postgresql.log", "postgresql*", "/var/log/postgresql/*.log")
    logs.collect_logs(guest, [source], out_dir=tmp_path, dest="logs")  # type: ignore[arg-type]
    assert (tmp_path / "logs/postgresql.log").read_text() == (
        "postgres[811]: LOG:  database system is ready to accept connections\n"
        f"==> {root}/var/log/postgresql/postgresql-16-main.log <==\nLOG:  cluster 16-main\n"
        f"==> {root}/var/log/postgresql/postgresql-17-main.log <==\nLOG:  cluster 17-main\n"
    )
