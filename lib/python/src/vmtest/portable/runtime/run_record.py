"""A run's record (``vmtest-run.json``) and its outcome: one object that the ``vmtest run`` command
and the Driver share, and its one writer.

The outcome has one owner: ``conclude`` sets it, and once the global timeout has fired
(``time_out``) the run timed out, whatever ended it afterwards (a wait the killed machines
failed, the timer's interrupt landing after the record was written: ae3ec1d's race).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmtest.artifacts import RUN_RECORD
from vmtest.redaction import Redactor


@dataclass
class RunRecord:
    """What ``vmtest-run.json`` says of one run; ``details`` adds the driver's machines and checkpoints."""

    out_dir: Path
    redactor: Redactor = field(default_factory=Redactor)
    global_timeout: float = 0.0
    started: float = field(default_factory=time.monotonic)
    outcome: str = "not run"
    timed_out: bool = False
    timed_out_while: str = ""
    artifact_errors: list[str] = field(default_factory=list)
    details: Callable[[], dict[str, Any]] | None = None

    @property
    def path(self) -> Path:
        return self.out_dir / RUN_RECORD

    def conclude(self, outcome: str) -> None:
        """Set the run's outcome (``passed``, ``failed``, …); a run that timed out stays ``timed out``."""
        self.outcome = "timed out" if self.timed_out else outcome

    def time_out(self, doing: str) -> None:
        """The global timeout fired while the run was ``doing`` (``while …``): the outcome is final."""
        self.timed_out = True
        self.timed_out_while = doing
        self.outcome = "timed out"

    def as_dict(self) -> dict[str, Any]:
        """The record as written: outcome, duration, the global timeout, host, artifact problems, and the
        driver's details (machines, checkpoints; no machines when the run ended before it had a driver)."""
        record: dict[str, Any] = {
            "outcome": self.outcome,
            "duration_seconds": round(time.monotonic() - self.started, 2),
            "global_timeout_seconds": self.global_timeout,
            "timed_out": self.timed_out,
            "host": platform.machine(),
            "artifact_errors": self.artifact_errors,
            "machines": {},
            "checkpoints": None,
        }
        if self.details is not None:
            record.update(self.details())
        return record

    def write(self) -> None:
        """Write ``vmtest-run.json``, redacted, into the output directory; raises OSError."""
        self.path.write_text(self.redactor.redact(json.dumps(self.as_dict(), indent=2)) + "\n")
