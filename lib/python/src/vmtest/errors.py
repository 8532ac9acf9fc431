"""Internal: Every failure vmtest raises, in one hierarchy: what failed the test, and what is not its fault.

A failed check is a ``CheckFailed``, an ``AssertionError``: the upstream driver (whose
``RequestedAssertionFailed`` is one too) and the portable runtime both report it as a test
failure. Each kind of check has its own subclass, so a caller can tell a health wait from a
migration check; ``except CheckFailed`` takes them all. The modules that defined a class before
(``vmtest.health``, ``vmtest.migrations``, ``vmtest.guest_results``, ``vmtest.waiting``,
``vmtest.suites.vm_validation``) still export it under its name, for one release.

``MachineError`` and its kin are not the test's fault: QEMU died, a tool is missing.
"""

from __future__ import annotations


class CheckFailed(AssertionError):
    """A check did not hold; the message names the machine, what was expected and what was seen."""


class RequestedAssertionFailed(CheckFailed):
    """A check the test asked of a machine did not hold (failed command, wait timeout, unit state):
    the portable runtime's, named as the upstream driver's."""


class HealthCheckFailed(CheckFailed):
    """A health wait timed out or saw a hard failure; the message has the last observation."""


class MigrationCheckFailed(CheckFailed):
    """A migration check did not hold; the message names the file, statement and error."""


class ValidationFailed(CheckFailed):
    """A validation check did not hold; the message names the machine, the check and what was seen."""


class PollingConditionError(RequestedAssertionFailed):
    """A ``polling_condition`` stopped holding."""


class DetachedWorkStopped(RequestedAssertionFailed):
    """The work stopped (its liveness check failed twice) without writing its done file."""


class WaitTimedOut(RequestedAssertionFailed):
    """``retry`` ran out of time; the wait's own failures are other exceptions, so callers tell them apart."""

    def __init__(self, elapsed: float, limit: float) -> None:
        # Imported here: vmtest.waiting raises this class, so it cannot be imported at the top.
        from vmtest.waiting import format_seconds

        super().__init__(f"action timed out after {format_seconds(elapsed)} (timeout={format_seconds(limit)})")
        self.elapsed = elapsed
        self.limit = limit


class MachineError(Exception):
    """A problem that is not the test's fault: QEMU died, a tool is missing, a start failed."""


class RecipeError(ValueError):
    """A machine recipe is malformed or names something that does not exist."""


class ImageBuildError(RuntimeError):
    """Building a machine image from its recipe failed."""
