"""Internal: systemd units as the helpers see them: one ``systemctl show`` parser, observations, diagnostics.

Everything here asks once and returns; the waits on units are in ``vmtest.health``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from vmtest.errors import HealthCheckFailed
from vmtest.machine_api import Machine

PROPERTIES = (
    "Id", "Type", "ActiveState", "SubState", "Result", "NRestarts",
    "ActiveEnterTimestampMonotonic", "ExecMainExitTimestampMonotonic", "InactiveEnterTimestampMonotonic",
    "InactiveExitTimestampMonotonic",
)


def parse_properties(text: str) -> dict[str, str]:
    """``NAME=value`` lines (one ``systemctl show`` block) as a dict; other lines are skipped."""
    properties: dict[str, str] = {}
    for line in text.splitlines():
        key, separator, value = line.partition("=")
        if separator:
            properties[key] = value
    return properties


@dataclass
class UnitObservation:
    """A unit's state as ``systemctl show`` reported it."""

    unit: str
    properties: dict[str, str]

    @property
    def state(self) -> str:
        return f"{self.properties.get('ActiveState')}/{self.properties.get('SubState')}"

    @property
    def result(self) -> str:
        return self.properties.get("Result", "")

    @property
    def ready(self) -> bool:
        """Active, or a oneshot that has finished successfully."""
        if self.properties.get("ActiveState") == "active":
            return True
        return (
            self.properties.get("Type") == "oneshot"
            and self.properties.get("ActiveState") == "inactive"
            and self.result == "success"
            and int(self.properties.get("ExecMainExitTimestampMonotonic", "0") or 0) > 0
        )

    @property
    def failed(self) -> bool:
        state = self.properties.get("ActiveState")
        return state == "failed" or (self.result not in ("", "success") and state != "active")

    @property
    def ready_at_us(self) -> int:
        """When it became ready (monotonic µs): activation, or a oneshot's exit."""
        for key in ("ActiveEnterTimestampMonotonic", "ExecMainExitTimestampMonotonic"):
            value = int(self.properties.get(key, "0") or 0)
            if value:
                return value
        return 0

    @property
    def started_at_us(self) -> int:
        """When its latest activation began (monotonic µs; 0 if systemd has no record of one)."""
        return int(self.properties.get("InactiveExitTimestampMonotonic", "0") or 0)


def show_command(units: Sequence[str], properties: Sequence[str] = PROPERTIES) -> str:
    """The ``systemctl show`` command line for ``units`` and ``properties``."""
    names = " ".join(shlex.quote(unit) for unit in units)
    return f"systemctl show --no-pager -p {','.join(properties)} {names}"


def parse_show(machine: Machine, units: Sequence[str], status: int, output: str) -> list[UnitObservation]:
    """The observations in ``systemctl show``'s output; raises HealthCheckFailed if it exited non-zero."""
    if status != 0:
        raise HealthCheckFailed(
            f"{machine.name}: systemctl show {' '.join(units)} failed (exit {status}): {output.strip()}"
        )
    blocks = [block for block in output.strip().split("\n\n") if block.strip()]
    return [UnitObservation(unit, parse_properties(block)) for unit, block in zip(units, blocks, strict=False)]


def observe_units(machine: Machine, units: Sequence[str],
                  properties: Sequence[str] = PROPERTIES) -> list[UnitObservation]:
    """Every unit's state in one ``systemctl show`` call; raises HealthCheckFailed if that fails."""
    # execute, not succeed: a poll loop should not log every query
    status, output = machine.execute(f"{show_command(units, properties)} 2>&1")
    return parse_show(machine, units, status, output)


def unit_diagnostics(machine: Machine, unit: str, journal_lines: int = 40) -> str:
    """``systemctl status``, the last journal lines and ``systemd-analyze critical-chain`` of ``unit``."""
    quoted = shlex.quote(unit)
    _, status = machine.execute(f"systemctl status --no-pager --full {quoted} 2>&1 | head -n 30")
    _, journal = machine.execute(f"journalctl --no-pager -n {journal_lines} -u {quoted} 2>&1")
    _, chain = machine.execute(f"systemd-analyze critical-chain --no-pager {quoted} 2>&1 | head -n 20")
    return (
        f"--- systemctl status {unit}\n{status.rstrip()}\n"
        f"--- journalctl -u {unit} (last {journal_lines} lines)\n{journal.rstrip()}\n"
        f"--- systemd-analyze critical-chain {unit}\n{chain.rstrip()}"
    )
