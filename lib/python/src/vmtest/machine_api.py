"""Internal: The part of the Machine API the helpers rely on, as a Protocol, and what differs by driver.

Helpers are duck-typed: the upstream driver's ``Machine`` (nixos-25.11), ``QemuMachine`` and
``NspawnMachine`` (2026) and this package's portable ``QemuMachine`` all satisfy ``Machine``,
so no helper reaches a machine any other way. It names only what every one of them has
(upstream's names): a container (``NspawnMachine``, a NixOS test's ``containers.<name>``) has
no serial console, monitor, QMP or keyboard, so those are not in it; a helper that needs one
asks ``require_method``, which names the machine and its kind when it is missing. Nothing
here imports the upstream driver.

Timeouts go to the driver as ``driver_timeout`` makes them: whole seconds as ``int`` for a
driver that takes ints (nixos-25.11, nixos-26.05), a ``timedelta`` for one that takes
timedeltas and warns on bare numbers (nixpkgs #542374, nixos-unstable since July 2026).
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import types
import typing
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from vmtest.errors import MachineError
from vmtest.waiting import Timeout, to_whole_seconds

# Upstream class names, by what kind of node they drive.
CONTAINER_CLASSES = frozenset({"NspawnMachine"})
VM_CLASSES = frozenset({"QemuMachine", "Machine"})
# What upstream (nixos-unstable) wraps the single node in when a script calls it `machine`.
DEPRECATION_WRAPPER = "MachineDeprecationWrapper"
MachineKind = Literal["vm", "container"]


class Machine(Protocol):
    """What every machine a helper takes has: the upstream driver's (VM or container) and the portable one's."""

    name: str

    # Read-only here, so an attribute or a property of any Path type satisfies them.
    @property
    def out_dir(self) -> Path:
        """Where the driver writes artifacts ($out under Nix)."""
        ...

    @property
    def shared_dir(self) -> Path:
        """The host side of the directory the guest mounts at /tmp/shared (9p for a VM, a bind mount
        for a container)."""
        ...

    def is_up(self) -> bool: ...

    def execute(
        self, command: str, check_return: bool = True, check_output: bool = True, timeout: Any = 900
    ) -> tuple[int, str]: ...

    def succeed(self, *commands: str, timeout: Any = None) -> str: ...

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: Any = 900) -> None: ...

    def wait_until_succeeds(self, command: str, timeout: Any = 900) -> str: ...

    def log(self, msg: str) -> None: ...

    # Upstream's is nested(msg, attrs={}); a Protocol must not demand more than every driver has.
    def nested(self, msg: str) -> Any: ...


@runtime_checkable
class HasConsoleLog(Protocol):
    """A machine with a serial console the host keeps (every VM; no container)."""

    def get_console_log(self) -> str: ...


# -- what only some runtimes have (the portable one): optional, asked with isinstance ----------------


@runtime_checkable
class ExplainsAccelerator(Protocol):
    """A machine that says why the host gave it its accelerator (``kvm: /dev/kvm is usable``); None:
    it does not know. The guest itself only sees which one it got."""

    accelerator_reason: str | None


class CheckpointSite(Protocol):
    """Where a checkpoint stands: its name and machines, and the testScript text that leads to it."""

    def resume(self) -> bool: ...

    def save(self) -> None: ...

    def left(self) -> None: ...


class CheckpointSites(Protocol):
    """A run's checkpoint store, as ``vmtest.checkpoint`` uses it."""

    def site(self, name: str, machines: Sequence[Any], filename: str, line: int) -> CheckpointSite: ...


@runtime_checkable
class KeepsCheckpoints(Protocol):
    """A machine whose run keeps checkpoints: its run's store (None: this run keeps none)."""

    checkpoint_store: CheckpointSites | None


class UnsupportedOnMachine(MachineError):
    """A helper needs something this kind of machine does not have (a container's missing console, …)."""


def unwrapped(machine: object) -> object:
    """The machine itself, when upstream handed the script its deprecated ``machine`` alias
    (a wrapper that warns on every attribute it forwards)."""
    if type(machine).__name__ == DEPRECATION_WRAPPER:
        return object.__getattribute__(machine, "machine")
    return machine


def machine_kind(machine: object) -> MachineKind:
    """``container`` for an upstream ``NspawnMachine`` (or a subclass), else ``vm``."""
    classes = {cls.__name__ for cls in type(unwrapped(machine)).__mro__}
    return "container" if classes & CONTAINER_CLASSES else "vm"


def describe(machine: object) -> str:
    """``container box (NspawnMachine)`` / ``VM server (QemuMachine)``: a machine as errors name it."""
    inner = unwrapped(machine)
    kind = "container" if machine_kind(inner) == "container" else "VM"
    return f"{kind} {getattr(inner, 'name', '?')} ({type(inner).__name__})"


def require_method(machine: object, method: str, purpose: str) -> Callable[..., Any]:
    """``machine``'s bound ``method``; raises UnsupportedOnMachine naming the machine, its kind and
    ``purpose`` when this kind of machine has no such method (never an AttributeError)."""
    found: object = getattr(unwrapped(machine), method, None)
    if not callable(found):
        raise UnsupportedOnMachine(f"{purpose} needs {method}(), which the {describe(machine)} does not have")
    return found


# -- timeouts -------------------------------------------------------------------------------------

def _accepts_timedelta(hint: object) -> bool | None:
    """Whether a resolved annotation admits ``timedelta`` (None: not a type we can read)."""
    if hint is timedelta:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_accepts_timedelta(arg) for arg in typing.get_args(hint))
    if isinstance(hint, type):
        return False
    return None


def _driver_package_has_durations(cls: type) -> bool:
    """Whether the machine's driver ships ``test_driver.duration`` (nixpkgs #542374 and later)."""
    package = cls.__module__.split(".")[0]
    return hasattr(sys.modules.get(f"{package}.duration"), "Duration")


def accepts_timedelta(machine: object, method: str = "execute") -> bool:
    """Whether ``machine.<method>`` takes timedelta timeouts (nixpkgs #542374 and later).

    Read from the method's ``timeout`` annotation, resolved (``Duration | None`` upstream,
    ``Timeout | None`` here); a default that is a timedelta counts too. Without an annotation
    to read, the driver's version decides: whether its package has ``duration.Duration``.
    """
    cls = type(unwrapped(machine))
    function = getattr(cls, method, None)
    if function is None:
        return False
    try:
        parameter = inspect.signature(function).parameters["timeout"]
    except (KeyError, TypeError, ValueError):
        return False
    if isinstance(parameter.default, timedelta):
        return True
    try:
        hint: object = typing.get_type_hints(function).get("timeout", inspect.Parameter.empty)
    except Exception:  # an annotation naming what cannot be imported here: read its text
        hint = parameter.annotation
    if isinstance(hint, str):
        return "timedelta" in hint or "Duration" in hint
    verdict = None if hint is inspect.Parameter.empty else _accepts_timedelta(hint)
    return _driver_package_has_durations(cls) if verdict is None else verdict


def driver_timeout(machine: object, timeout: Timeout, method: str = "execute") -> Any:
    """``timeout`` (int, float or timedelta) in the form ``machine.<method>`` takes without a warning:
    an ``int`` or a ``timedelta``.

    Drivers before nixpkgs #542374 take int seconds only (a timedelta would reach the guest's
    ``timeout`` as ``0:00:30``); later ones warn on bare numbers and want a timedelta. Whole
    seconds either way, rounded up, as guest ``timeout(1)`` has them. Typed ``Any``: which of the
    two it is depends on the driver at run time, and a testScript passes it to a method that the
    type check of nixos-25.11 and 26.05 annotates ``int``, of nixos-unstable ``Duration``.
    """
    seconds = to_whole_seconds(timeout)
    return timedelta(seconds=seconds) if accepts_timedelta(machine, method) else seconds


def run(machine: Machine, command: str, timeout: Timeout) -> tuple[int, str]:
    """``machine.execute(command)`` with ``timeout`` in the form the machine takes.

    An expired timeout is status 124 on every kind of machine: a VM's guest ``timeout(1)``
    says so itself, a container's driver (``subprocess.run``) raises TimeoutExpired instead.
    """
    try:
        return machine.execute(command, timeout=driver_timeout(machine, timeout))
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout or b""
        return 124, output.decode(errors="replace") if isinstance(output, bytes) else output


@runtime_checkable
class _CopiesFromMachine(Protocol):
    def copy_from_machine(self, source: str, target_dir: str = "") -> None: ...


@runtime_checkable
class _CopiesFromVm(Protocol):
    def copy_from_vm(self, source: str, target_dir: str = "") -> None: ...


def copy_from_machine(machine: Machine, source: str, target_dir: str = "") -> None:
    """Copy a guest path to ``<out_dir>/<target_dir>/`` with whichever name the driver has.

    ``copy_from_machine`` since 2026 (nixpkgs #478109; ``copy_from_vm`` is its deprecated
    alias there), ``copy_from_vm`` before; raises UnsupportedOnMachine if it has neither.
    """
    inner = unwrapped(machine)
    if isinstance(inner, _CopiesFromMachine):
        inner.copy_from_machine(source, target_dir)
    elif isinstance(inner, _CopiesFromVm):
        inner.copy_from_vm(source, target_dir)
    else:
        raise UnsupportedOnMachine(
            f"copying {source} out needs copy_from_machine() or copy_from_vm(), which the "
            f"{describe(machine)} does not have"
        )
