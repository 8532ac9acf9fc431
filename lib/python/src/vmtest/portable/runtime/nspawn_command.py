"""Internal: the command lines that start a container and enter it (``container.NspawnMachine``'s).

Pure functions of their arguments, so the unit tests read them without a container.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from vmtest.waiting import Timeout, to_whole_seconds

# cgroup v1 hierarchies beside a unified one (this kind of host): nspawn is told to use the unified one.
NSPAWN_ENVIRONMENT = {"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
# The PATH systemd gives a service (the VM's backdoor.service); /etc/profile sets its own.
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The VM's backdoor.sh, line for line, minus the serial console plumbing: stderr goes to the console.
PRELUDE = (
    "export USER=root HOME=/root DISPLAY=:0.0; "
    "if [[ -e /etc/profile ]]; then set +o nounset; source /etc/profile; fi; "
    "export PAGER=; cd /tmp; exec 2>/dev/console; "
)
NSPAWN_RUN = "/run/systemd/nspawn"
# Units masked in a container (/dev/null bound over them): the backdoor on its virtio port (execute
# needs none) and the addresses from the kernel command line (the host sets them), which are a VM's;
# and the getty systemd starts on a container's /dev/console, whose hangup made the commands' stderr
# (the console, as a VM's serial console) fail with EIO: `echo err >&2` exited 1 under set -e.
MASKED_UNITS = ("backdoor.service", "vmtest-network.service", "console-getty.service")
# Mounts in the container's private mount namespace, before nspawn starts: $1 the image, $2 the state dir.
# nspawn's own files (/run/systemd/nspawn: propagation directories, image locks) go to a tmpfs there
# too: where /run is no tmpfs (this kind of host), a SIGKILLed nspawn would leave them on the disk.
MOUNT_SCRIPT = (
    f'mkdir -p {NSPAWN_RUN} && mount -t tmpfs -o mode=0755 vmtest-nspawn {NSPAWN_RUN} && '
    'mkdir -p "$2/lower" "$2/upper" "$2/work" "$2/root" && mount -o loop,ro "$1" "$2/lower" && '
    'mount -t overlay overlay -o "lowerdir=$2/lower,upperdir=$2/upper,workdir=$2/work" "$2/root" && '
    'shift 2 && exec "$@"'
)
# How long the host lets nsenter run past a command's guest timeout before it ends it (a frozen guest).
HOST_GRACE_SECONDS = 30.0
BOOT_DEADLINE_SECONDS = 120.0
# basic.target: where the VM's backdoor.service starts (a service's default dependencies).
BOOTED = "systemctl is-active basic.target"


def machine_name(name: str, run_dir: Path) -> str:
    """systemd-nspawn's ``--machine``: the machine's name and its run's suffix, as a valid host name
    (letters, digits and ``-``: nspawn refuses ``_``, which temporary directory names contain)."""
    suffix = run_dir.name.rsplit("-", 1)[-1]
    return re.sub(r"[^a-z0-9-]", "-", f"{name}-{suffix}".lower())[:64].strip("-")


def nspawn_argv(name: str, machine_name: str, state_dir: Path, shared_dir: Path, files: dict[str, Path],
                netns: str | None) -> list[str]:
    """systemd-nspawn's command line: boot ``state_dir/root`` with ``files`` bound read-only over the
    guest paths they name, the shared directory at /tmp/shared, in ``netns`` (else a private network)."""
    argv = [
        "systemd-nspawn", "--quiet", f"--directory={state_dir / 'root'}", f"--machine={machine_name}",
        "--register=no", "--keep-unit", "--console=read-only", "--resolv-conf=off", "--timezone=off",
        "--link-journal=no",
        f"--network-namespace-path={netns}" if netns else "--private-network",
        f"--bind={shared_dir}:/tmp/shared",
        *(f"--bind-ro=/dev/null:/etc/systemd/system/{unit}" for unit in MASKED_UNITS),
        *(f"--bind-ro={source}:{target}" for target, source in sorted(files.items())),
        "--boot", f"systemd.hostname={name}",
    ]
    return argv


def start_argv(disk: Path, state_dir: Path, nspawn: list[str]) -> list[str]:
    """The whole start command: nspawn as the first process of a new PID and mount namespace."""
    return ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", MOUNT_SCRIPT, "sh", str(disk), str(state_dir), *nspawn]


def guest_command(command: str, timeout: Timeout | None) -> str:
    """The bash that runs ``command`` as the VM's backdoor would (see ``backdoor.command_line``)."""
    inner = f"bash -c {shlex.quote('set -euo pipefail; ' + command)}"
    return PRELUDE + "exec " + (f"timeout {to_whole_seconds(timeout)} {inner}" if timeout is not None else inner)


def notify_fields(datagram: bytes) -> dict[str, str]:
    """The ``KEY=value`` lines of an sd_notify datagram."""
    fields = {}
    for line in datagram.decode(errors="replace").splitlines():
        key, separator, value = line.partition("=")
        if separator:
            fields[key] = value
    return fields


def host_pid(status: str, namespace_pid: int) -> bool:
    """Whether a process's ``/proc/<pid>/status`` says it is ``namespace_pid`` one PID namespace down
    (nspawn reports its container's leader as its own PID namespace numbers it)."""
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            numbers = line.split()[1:]
            return len(numbers) > 1 and numbers[1] == str(namespace_pid)
    return False
