"""vmtest: helpers for NixOS test-driver testScripts, and a portable QEMU runtime.

What a testScript may import is this package's ``__all__`` (and ``vmtest.suites``' ``__all__``):
docs/api.md lists every name with its docstring. A public module's own ``__all__`` says what it
offers. Every other module is internal (its docstring says so) and may change without notice;
the portable runtime (``vmtest.portable``) is never imported by a testScript: the driver hands
the script its machines. Helpers take a Machine (the upstream driver's or the portable one's)
and depend only on its public API (``vmtest.machine_api``).
"""

from vmtest import guest_facts, guest_results, health, interactive, logs, migrations, waiting
from vmtest.checkpoint_block import checkpoint
from vmtest.errors import (
    CheckFailed,
    DetachedWorkStopped,
    HealthCheckFailed,
    MachineError,
    MigrationCheckFailed,
    PollingConditionError,
    RequestedAssertionFailed,
    ValidationFailed,
    WaitTimedOut,
)
from vmtest.machine_api import Machine, UnsupportedOnMachine, copy_from_machine, driver_timeout
from vmtest.redaction import Redactor
from vmtest.reporting.report import Report
from vmtest.waiting import Timeout, retry

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 - grouped by what they are, as docs/api.md lists them
    # modules: waits, logs, checks and facts
    "guest_facts", "guest_results", "health", "interactive", "logs", "migrations", "waiting",
    # a testScript's tools
    "Machine", "Redactor", "Report", "Timeout", "checkpoint", "copy_from_machine", "driver_timeout", "retry",
    # failures: every check failure is a CheckFailed (an AssertionError)
    "CheckFailed", "DetachedWorkStopped", "HealthCheckFailed", "MigrationCheckFailed", "PollingConditionError",
    "RequestedAssertionFailed", "ValidationFailed", "WaitTimedOut",
    # not the test's fault
    "MachineError", "UnsupportedOnMachine",
]
