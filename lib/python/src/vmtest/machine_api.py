"""The part of the Machine API the helpers rely on, as a Protocol.

Helpers are duck-typed: the upstream driver's ``Machine``/``QemuMachine`` and
this package's portable ``QemuMachine`` both satisfy it. Nothing here imports
the upstream driver.
"""

from __future__ import annotations

import inspect
from datetime import timedelta
from typing import Any, Protocol

from vmtest.timeouts import Timeout, to_whole_seconds


class Machine(Protocol):
    name: str

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


def copy_from_machine(machine: Machine, source: str, target_dir: str = "") -> None:
    """Copy a guest path to ``<out_dir>/<target_dir>/`` with whichever name the driver has.

    ``copy_from_machine`` since 2026, ``copy_from_vm`` before (nixpkgs #478109).
    """
    copy = getattr(machine, "copy_from_machine", None) or getattr(machine, "copy_from_vm", None)
    if copy is None:
        raise AttributeError(f"{machine.name} has neither copy_from_machine nor copy_from_vm")
    copy(source, target_dir)
