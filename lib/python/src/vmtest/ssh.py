"""Internal: SSH between guests: a key login waited for, and scripts run over it as a user.

The client guest runs ``ssh``; nothing runs on the host. A wait gives up with ``waiting``'s
timeout message and ssh's last error.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass

from vmtest.errors import ValidationFailed
from vmtest.machine_api import Machine
from vmtest.waiting import Deadline, gave_up, poll

SSH_OPTIONS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=10"


def ssh_command(key: str, user: str, host: str, script: str) -> str:
    """A shell command that runs ``script`` (any text) over SSH with ``key``; the script travels base64-encoded."""
    encoded = base64.b64encode(script.encode()).decode()
    return (f"ssh -i {shlex.quote(key)} {SSH_OPTIONS} -o LogLevel=ERROR {shlex.quote(f'{user}@{host}')} "
            f"{shlex.quote(f'echo {encoded} | base64 -d | bash -l')}")


@dataclass
class SshFacts:
    """The first successful key login: how long it was waited for, and the server's uptime then."""

    waited_seconds: float
    server_uptime_seconds: float


def wait_for_ssh_login(client: Machine, server: Machine, user: str, key: str, *, timeout: float = 300) -> SshFacts:
    """Retry an SSH key login from ``client`` to ``server`` until it works.

    Returns how long it took and the server's uptime then; raises ValidationFailed (a CheckFailed)
    with ssh's last error when it never works.
    """
    deadline = Deadline(timeout)
    last = ""

    def logged_in(_last_try: bool) -> bool:
        nonlocal last
        status, output = client.execute(f"{ssh_command(key, user, server.name, 'id -un')} 2>&1")
        last = f"exit {status}: {output.strip()[-400:]}"
        return status == 0 and output.strip() == user

    if not poll(logged_in, deadline, last_try=False):
        raise ValidationFailed(gave_up(client.name, f"ssh {user}@{server.name}: no key login", deadline.elapsed(),
                                       deadline.limit) + f"; last attempt: {last}")
    uptime = float(server.succeed("cut -d' ' -f1 /proc/uptime").strip())
    return SshFacts(round(deadline.elapsed(), 2), round(uptime, 2))
