"""``polling_condition``: a condition re-checked (at most once per interval) before each command."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vmtest.errors import PollingConditionError
from vmtest.portable.runtime.driver_log import AbstractLogger
from vmtest.waiting import Timeout, retry


class PollingCondition:
    """A condition that must keep holding while it is active (``with cond:``)."""

    def __init__(
        self,
        condition: Callable[[], bool | None],
        logger: AbstractLogger,
        seconds_interval: float = 2.0,
        description: str | None = None,
    ) -> None:
        self.condition = condition
        self.logger = logger
        self.seconds_interval = seconds_interval
        self.description = description or (condition.__doc__ or condition.__name__).strip()
        self.last_called = float("-inf")
        self.entered = False
        self.checking = False
        self.active_conditions: list[PollingCondition] | None = None

    def check(self, force: bool = False) -> bool:
        """Evaluate the condition (if due or forced); raise PollingConditionError if it fails.

        As upstream's: a check is skipped while one is running (the condition's own commands
        run the machine's callbacks, which would check it again), any exception the condition
        raises counts as a failure, and the interval counts from the end of the last check.
        """
        if self.checking or not (self.entered or force):
            return True
        if not force and time.monotonic() - self.last_called < self.seconds_interval:
            return True
        self.checking = True
        try:
            with self.logger.nested(f"checking polling condition {self.description!r}"):
                try:
                    result = self.condition()
                    ok = result is None or bool(result)
                except Exception:
                    ok = False
        finally:
            self.checking = False
            self.last_called = time.monotonic()
        if not ok:
            raise PollingConditionError(f"polling condition failed: {self.description}")
        return ok

    def wait(self, timeout: Timeout = 900) -> None:
        """Wait until the condition holds."""
        def condition_holds(_last_try: bool) -> bool:
            try:
                return self.check(force=True)
            except PollingConditionError:
                return False

        with self.logger.nested(f"waiting for {self.description!r}"):
            retry(condition_holds, timeout)

    def __enter__(self) -> PollingCondition:
        self.entered = True
        if self.active_conditions is not None:
            self.active_conditions.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.entered = False
        if self.active_conditions is not None and self in self.active_conditions:
            self.active_conditions.remove(self)
