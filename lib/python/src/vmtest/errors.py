"""Exceptions: the portable runtime's, named and shaped as the upstream driver's, and the helpers'.

Helpers only ever raise ``AssertionError`` subclasses for test failures, so the
upstream driver (whose ``RequestedAssertionFailed`` is also an
``AssertionError``) reports them as test failures too.
"""

from __future__ import annotations


class RequestedAssertionFailed(AssertionError):
    """A check the test asked for did not hold (failed command, wait timeout, unit state)."""


class HealthCheckFailed(AssertionError):
    """A health wait timed out or saw a hard failure; the message has the last observation."""


class MachineError(Exception):
    """A problem that is not the test's fault: QEMU died, a tool is missing, a start failed."""


class PollingConditionError(RequestedAssertionFailed):
    """A ``polling_condition`` stopped holding."""


class RecipeError(ValueError):
    """A machine recipe is malformed or names something that does not exist."""


class ImageBuildError(RuntimeError):
    """Building a machine image from its recipe failed."""
