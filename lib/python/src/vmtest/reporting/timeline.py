"""Internal: What a run's timeline is made of: timed spans, and the guest clocks that place guest times on it.

A ``Span`` is something observed to take time (a machine's boot, a unit of a chain
becoming ready), in seconds from the report's start on the host's ``time.monotonic()``.
systemd stamps its units on the guest's ``CLOCK_MONOTONIC`` (microseconds since the
guest's kernel started); ``guest_clock`` measures where that clock's zero lies on the
host's, so both kinds of time share one axis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from vmtest.machine_api import Machine


@dataclass
class Span:
    """A timed bar of the timeline: seconds from the report's start; ``lane`` groups bars (a machine)."""

    name: str
    kind: str
    start: float
    end: float
    lane: str = ""
    passed: bool = True


@dataclass(frozen=True)
class GuestClock:
    """A guest's monotonic clock as the host sees it: ``zero`` is the host's ``time.monotonic()``
    when the guest's clock read 0 (its kernel started)."""

    zero: float

    def host_time(self, guest_us: int) -> float:
        """The host's ``time.monotonic()`` at the guest's monotonic ``guest_us`` microseconds."""
        return self.zero + guest_us / 1e6


# bash's own `read`: no process starts between the host's two clock readings.
UPTIME_COMMAND = 'read -r vmtest_up _ < /proc/uptime && echo "$vmtest_up"'


def guest_clock(machine: Machine) -> GuestClock:
    """Measure ``machine``'s clock: its uptime, read between two host clock readings.

    The error is at most half that command's round trip. Raises ValueError when the
    guest's answer is not a number of seconds.
    """
    before = time.monotonic()
    _, output = machine.execute(UPTIME_COMMAND)
    after = time.monotonic()
    try:
        uptime = float(output.split()[0])
    except (IndexError, ValueError):
        raise ValueError(f"{machine.name}: /proc/uptime said {output.strip()[:80]!r}") from None
    return GuestClock((before + after) / 2 - uptime)


def _manager_timestamp_us(machine: Machine, prop: str) -> int:
    _, output = machine.execute(f"systemctl show --value -p {prop} 2>/dev/null")
    text = output.strip()
    return int(text) if text.isdigit() else 0


def boot_finished_us(machine: Machine) -> int:
    """When systemd finished starting up (the guest's monotonic µs); 0 while it has not."""
    return _manager_timestamp_us(machine, "FinishTimestampMonotonic")


def userspace_started_us(machine: Machine) -> int:
    """When the guest's systemd (PID 1) started, on its monotonic clock (µs); 0 if it does not say.

    A container shares the host's kernel and so its monotonic clock: its boot begins here,
    not at the clock's zero (the host's own boot).
    """
    return _manager_timestamp_us(machine, "UserspaceTimestampMonotonic")
