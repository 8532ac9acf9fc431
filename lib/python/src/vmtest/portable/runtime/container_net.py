"""The VLANs of container machines: a bridge per VLAN, a veth pair per container and VLAN, all in
network namespaces the run creates and that die with it.

A VM gets ``192.168.<vlan>.<number>/24`` on the NIC of each VLAN from the kernel command line
(``network.sh``); a container has no kernel command line of its own, so the host sets the same
addresses, in a network namespace of the container's own, before the container starts. Each
namespace is held by a ``sleep`` made with ``unshare --net`` (``process.spawn``: it gets SIGKILL
when vmtest dies, however it dies); when its holder and the processes in it are gone, the kernel
removes the namespace and with it the bridges, veths and addresses it held: nothing to find on the
host afterwards, nothing reachable from it, no route off this machine (no interface of these
namespaces has a way out). The switch namespace holds one bridge per VLAN (``vlan<n>``), the
containers' veth peers enslaved to it; a container sees its VLANs as ``eth1``, ``eth2``… with a
VM's MAC address for that VLAN, as a VM sees them after its user-mode ``eth0``.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vmtest.errors import MachineError, RecipeError
from vmtest.portable.runtime.driver_log import AbstractLogger
from vmtest.portable.runtime.process import run_tied, spawn, terminate_group
from vmtest.portable.runtime.qemu import MachineConfig, hosts_lines
from vmtest.waiting import Deadline, format_seconds, poll

CONTAINER = "container"
KINDS = ("vm", CONTAINER)
# What every /etc/hosts starts with (network.sh writes the same in a VM).
LOCALHOST = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
HOLDER_START_SECONDS = 10.0


@dataclass(frozen=True)
class Link:
    """One VLAN of a container: the veth end in the switch namespace and the one in the container."""

    vlan: int
    outside: str  # in the switch namespace, enslaved to the VLAN's bridge (at most 15 characters)
    inside: str  # in the container's namespace
    mac: str
    address: str  # with its prefix


def links(config: MachineConfig) -> list[Link]:
    """The veth pairs of ``config``'s machine, one per VLAN, in the order a VM numbers its NICs."""
    return [
        Link(vlan, f"v{vlan}m{config.number}", f"eth{index}", config.vlan_mac(vlan),
             f"{config.vlan_address(vlan)}/24")
        for index, vlan in enumerate(config.vlans, 1)
    ]


def bridge(vlan: int) -> str:
    return f"vlan{vlan}"


def hosts_file(configs: list[MachineConfig]) -> str:
    """The /etc/hosts of every container of the run: localhost, then every machine, as a VM's."""
    return LOCALHOST + hosts_lines(configs)


class _OnVlans(Protocol):
    """A machine spec or config: its name, kind and VLANs."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def vlans(self) -> tuple[int, ...]: ...


def is_container(config: _OnVlans) -> bool:
    return config.kind == CONTAINER


def check_kind(origin: str, table: dict[str, Any], recipe: Any) -> str:
    """The ``kind`` of a machines table entry; raises RecipeError for an unknown one, or for a container
    of another architecture than the host's (nspawn runs the image's binaries natively)."""
    kind = table.get("kind", "vm")
    if kind not in KINDS:
        raise RecipeError(f"{origin}: kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    host = platform.machine()
    if kind == CONTAINER and recipe.machine_arch != host:
        raise RecipeError(f"{origin}: a container runs natively, but the recipe is for {recipe.machine_arch} "
                          f"and this host is {host}: boot it as a VM (kind = \"vm\")")
    return str(kind)


def shared_vlans(configs: Iterable[_OnVlans]) -> str | None:
    """Why the run cannot put its machines on their VLANs, or None: a VLAN both a VM (a vde_switch
    hub) and a container (a bridge) are on would be two networks, not one."""
    vms: dict[int, str] = {}
    containers: dict[int, str] = {}
    for config in configs:
        for vlan in config.vlans:
            (containers if is_container(config) else vms).setdefault(vlan, config.name)
    both = sorted(set(vms) & set(containers))
    if not both:
        return None
    vlan = both[0]
    return (f"vlan {vlan} has both the VM {vms[vlan]} and the container {containers[vlan]}: containers and VMs "
            f"cannot share a VLAN yet; put them on different vlans (vlans = [...] in the machines table)")


def check_vlans(configs: Iterable[_OnVlans]) -> None:
    """Raise RecipeError (bad input: exit 2) when a VM and a container share a VLAN."""
    problem = shared_vlans(configs)
    if problem is not None:
        raise RecipeError(f"--machines: {problem}")


class NetworkNamespace:
    """A network namespace held by a ``sleep`` made with ``unshare --net``, tied to vmtest's life."""

    def __init__(self, what: str) -> None:
        self.what = what
        try:
            self.process = spawn(["unshare", "--net", "--", "sleep", "infinity"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError:
            raise MachineError(f"{what}: containers need unshare (apt-get install util-linux)") from None
        ours = os.readlink("/proc/self/ns/net")
        deadline = Deadline(HOLDER_START_SECONDS)

        def unshared(_last_try: bool) -> bool:
            if self.process.poll() is not None:
                return True
            try:
                return os.readlink(self.path) != ours
            except OSError:
                return False

        poll(unshared, deadline, interval=0.01)
        if self.process.poll() is not None or os.readlink(self.path) == ours:
            error = self.process.stderr.read().decode(errors="replace").strip() if self.process.stderr else ""
            self.stop()
            raise MachineError(f"{what}: could not make a network namespace within "
                               f"{format_seconds(deadline.elapsed())} (timeout {format_seconds(deadline.limit)}): "
                               f"{error or 'unshare --net did not unshare'}")

    @property
    def path(self) -> str:
        return f"/proc/{self.process.pid}/ns/net"

    def ip(self, *arguments: str) -> None:
        """Run ``ip arguments`` in this namespace; raises MachineError with ip's words if it fails."""
        result = run_tied(["nsenter", f"--net={self.path}", "ip", *arguments],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        if result.returncode != 0:
            raise MachineError(f"{self.what}: `ip {' '.join(arguments)}` failed (exit code "
                               f"{result.returncode}): {result.stdout.strip()}")

    def stop(self) -> None:
        terminate_group(self.process, grace=1.0)


class ContainerNetwork:
    """The switch namespace of a run's containers (a bridge per VLAN) and each container's namespace."""

    def __init__(self, vlans: Iterable[int], logger: AbstractLogger) -> None:
        self.logger = logger
        self.namespaces: dict[str, NetworkNamespace] = {}
        self.switch = NetworkNamespace("the containers' VLAN switch")
        try:
            self.switch.ip("link", "set", "lo", "up")
            for vlan in sorted(set(vlans)):
                self.switch.ip("link", "add", bridge(vlan), "type", "bridge")
                self.switch.ip("link", "set", bridge(vlan), "up")
        except BaseException:
            self.stop()
            raise

    @classmethod
    def for_run(cls, configs: list[MachineConfig], logger: AbstractLogger) -> ContainerNetwork | None:
        """The network of the run's containers, or None if it has none."""
        containers = [config for config in configs if is_container(config)]
        if not containers:
            return None
        check_vlans(configs)
        return cls((vlan for config in containers for vlan in config.vlans), logger)

    def attach(self, config: MachineConfig) -> NetworkNamespace:
        """A network namespace for ``config``'s container: ``lo`` up and its address on each VLAN."""
        namespace = NetworkNamespace(f"container {config.name}")
        self.namespaces[config.name] = namespace
        namespace.ip("link", "set", "lo", "up")
        for link in links(config):
            self.switch.ip("link", "add", link.outside, "type", "veth", "peer", "name", link.inside,
                           "netns", namespace.path)
            self.switch.ip("link", "set", link.outside, "master", bridge(link.vlan), "up")
            namespace.ip("link", "set", link.inside, "address", link.mac)
            namespace.ip("address", "add", link.address, "dev", link.inside)
            namespace.ip("link", "set", link.inside, "up")
        self.logger.info(f"{config.name}: network namespace (holder pid {namespace.process.pid}), "
                         + (", ".join(f"{link.inside} {link.address} on vlan{link.vlan}" for link in links(config))
                            or "no VLAN"))
        return namespace

    def stop(self) -> None:
        """Stop every holder: the kernel removes the namespaces with their veths and bridges."""
        for namespace in self.namespaces.values():
            namespace.stop()
        self.switch.stop()


def write_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
