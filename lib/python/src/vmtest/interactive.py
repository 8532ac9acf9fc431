"""Helpers for the driverInteractive / ptpython shell.

In ``nix run .#…driverInteractive`` (or ``vmtest run --interactive``)::

    from vmtest import interactive as vi
    vi.status(machines)                      # who is up, failed units
    vi.tail(server, "alicia.service")        # last journal lines of a unit
    vi.collect(machines)                     # collect logs now, into the out dir
    vi.rerun(check_health, subtest)          # run a subtest function again
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TextIO

from vmtest import guest_facts, logs
from vmtest.machine_api import Machine

__all__ = [
    "collect", "rerun", "status", "tail"
]


def status(machines: Sequence[Machine], stream: TextIO | None = None) -> dict[str, dict[str, Any]]:
    """Print and return, per machine: up or not, system state and failed units (only asks machines that are up)."""
    stream = stream or sys.stdout
    result: dict[str, dict[str, Any]] = {}
    for machine in machines:
        is_up = machine.is_up()
        entry: dict[str, Any] = {"up": is_up}
        if is_up:
            _, state = machine.execute("systemctl is-system-running 2>/dev/null || true")
            entry.update(state=state.strip(), failed_units=guest_facts.failed_units(machine))
        result[machine.name] = entry
        details = f"{entry.get('state', '-')}, failed: {', '.join(entry.get('failed_units', [])) or 'none'}"
        stream.write(f"{machine.name:<16} {'up' if is_up else 'down':<5} {details if is_up else ''}\n")
    return result


def tail(machine: Machine, unit: str, lines: int = 50, stream: TextIO | None = None) -> str:
    """Print and return the last ``lines`` journal lines of ``unit``."""
    _, output = machine.execute(f"journalctl --no-pager -n {int(lines)} -u {shlex.quote(unit)} 2>&1")
    (stream or sys.stdout).write(output)
    return output


def collect(machines: Sequence[Machine], redactor: logs.Redactor | None = None,
            dest: str = "logs/interactive") -> list[logs.CollectedLog]:
    """Collect the standard logs of every machine now, into ``<out>/<dest>/<name>``."""
    collected: list[logs.CollectedLog] = []
    for machine in machines:
        collected += logs.collect_logs(machine, dest=f"{dest}/{machine.name}", redactor=redactor)
    return collected


def rerun(function: Callable[[], Any], subtest: Callable[[str], AbstractContextManager[Any]] | None = None,
          name: str | None = None) -> Any:
    """Run a subtest's function again (inside ``subtest(name)`` when the namespace's ``subtest`` is given)."""
    label: str = name or str(getattr(function, "__name__", "subtest"))
    if subtest is None:
        return function()
    with subtest(label):
        return function()
