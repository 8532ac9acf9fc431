"""The part of the Machine API the helpers rely on, as a Protocol.

Helpers are duck-typed: the upstream driver's ``Machine``/``QemuMachine`` and
this package's portable ``QemuMachine`` both satisfy it, so no helper reaches a
machine any other way. It names only what upstream machines have (upstream's
names); nothing here imports the upstream driver.
"""

from __future__ import annotations

import inspect
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from vmtest.timeouts import Timeout, to_whole_seconds


class Machine(Protocol):
    name: str

    # Read-only here, so an attribute or a property of any Path type satisfies them.
    @property
    def out_dir(self) -> Path:
        """Where the driver writes artifacts ($out under Nix)."""
        ...

    @property
    def shared_dir(self) -> Path:
        """The host side of the 9p directory the guest mounts at /tmp/shared."""
        ...

    def is_up(self) -> bool: ...

    # Everything the serial console printed so far; upstream keeps no console log file.
    def get_console_log(self) -> str: ...

    def execute(
        self, command: str, check_return: bool = True, check_output: bool = True, timeout: Any = 900
    ) -> tuple[int, str]: ...

    def succeed(self, *commands: str, timeout: Any = None) -> str: ...

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: Any = 900) -> None: ...

    def wait_until_succeeds(self, command: str, timeout: Any = 900) -> str: ...

    def log(self, msg: str) -> None: ...

    # Upstream's is nested(msg, attrs={}); a Protocol must not demand more than every driver has.
    def nested(self, msg: str) -> Any: ...


def accepts_timedelta(machine: Machine) -> bool:
    """Whether ``machine.execute`` declares timedelta timeouts (nixpkgs #542374 and later)."""
    try:
        annotation = inspect.signature(machine.execute).parameters["timeout"].annotation
    except (KeyError, TypeError, ValueError):
        return False
    return "timedelta" in str(annotation)


def driver_timeout(machine: Machine, timeout: Timeout) -> int | timedelta:
    """``timeout`` in the form ``machine`` takes without a deprecation warning.

    Drivers before #542374 take int seconds only; newer ones warn on bare
    numbers and want a timedelta. Whole seconds, as guest ``timeout(1)`` has them.
    """
    seconds = to_whole_seconds(timeout)
    return timedelta(seconds=seconds) if accepts_timedelta(machine) else seconds


def run(machine: Machine, command: str, timeout: Timeout) -> tuple[int, str]:
    """``machine.execute(command)`` with ``timeout`` in the form the machine takes."""
    return machine.execute(command, timeout=driver_timeout(machine, timeout))


@runtime_checkable
class _CopiesFromMachine(Protocol):
    def copy_from_machine(self, source: str, target_dir: str = "") -> None: ...


@runtime_checkable
class _CopiesFromVm(Protocol):
    def copy_from_vm(self, source: str, target_dir: str = "") -> None: ...


def copy_from_machine(machine: Machine, source: str, target_dir: str = "") -> None:
    """Copy a guest path to ``<out_dir>/<target_dir>/`` with whichever name the driver has.

    ``copy_from_machine`` since 2026, ``copy_from_vm`` before (nixpkgs #478109);
    raises AttributeError if the machine has neither.
    """
    if isinstance(machine, _CopiesFromMachine):
        machine.copy_from_machine(source, target_dir)
    elif isinstance(machine, _CopiesFromVm):
        machine.copy_from_vm(source, target_dir)
    else:
        raise AttributeError(f"{machine.name} has neither copy_from_machine nor copy_from_vm")
