"""Internal: Secret redaction: the one path every artifact and message vmtest writes goes through.

A ``Redactor`` holds the values a testScript declares (``add``, ``add_env_file``)
and a few patterns for common shapes of secrets. The portable runtime's driver
owns one per run and passes every log line, JUnit report, run record, serial log
and error message through it; ``Redactor.for_driver(driver)`` hands the
testScript that same object, so values are declared once. Under the NixOS test
driver there is no such object and the testScript gets a fresh one for what the
helpers write (collected logs, reports).
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmtest.machine_api import Machine

REDACTED = "[REDACTED]"
Replacement = str | Callable[[re.Match[str]], str]
# The shortest value that is redacted: shorter ones would redact ordinary text everywhere.
MIN_SECRET_LENGTH = 4
# Common shapes of secrets, redacted whatever their value: (pattern, replacement). A name's
# separator must not be doubled: ``prstoken::oid`` is an identifier, not an assignment.
SECRET_PATTERNS: tuple[tuple[re.Pattern[str], Replacement], ...] = (
    (re.compile(r"(?i)\b([A-Z0-9_]*(?:API_?KEY|SECRET|TOKEN|PASSWORD|PASSWD)[A-Z0-9_]*)"
                r"(\s*(?:=|:(?!:))\s*)(\"?)(?!:)[^\s\"',;]+"),
     lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}{REDACTED}"),
    (re.compile(r"(?i)(\"[a-z0-9_]*(?:api_?key|secret|token|password)[a-z0-9_]*\"\s*:\s*\")[^\"]+(\")"),
     lambda m: f"{m.group(1)}{REDACTED}{m.group(2)}"),
    (re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}"), lambda m: f"{m.group(1)} {REDACTED}"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}\b"), REDACTED),
    (re.compile(r"(postgres(?:ql)?://[^:/\s]+:)[^@\s]+(@)"), lambda m: f"{m.group(1)}{REDACTED}{m.group(2)}"),
)


def encoded_forms(value: str) -> set[str]:
    """``value`` as it may appear in an artifact: plain, URL-encoded, base64, JSON-escaped."""
    forms = {
        value,
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value, safe=""),
        base64.b64encode(value.encode()).decode(),
        json.dumps(value)[1:-1],
        json.dumps(value)[1:-1].replace("/", "\\/"),
    }
    # base64 without its padding, as it appears inside a longer encoded stream's prefix
    forms.add(base64.b64encode(value.encode()).decode().rstrip("="))
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


@dataclass
class Redactor:
    """Replaces declared secret values (in every encoded form) and secret patterns with ``[REDACTED]``."""

    values: set[str] = field(default_factory=set)
    patterns: Sequence[tuple[re.Pattern[str], Replacement]] = SECRET_PATTERNS

    @classmethod
    def for_driver(cls, driver: Any) -> Redactor:
        """The run's own redactor when the driver has one (the portable runtime), else a new one."""
        own = getattr(driver, "redactor", None)
        return own if isinstance(own, Redactor) else cls()

    def add(self, *values: str) -> None:
        """Declare secret values (values shorter than 4 characters are ignored)."""
        for value in values:
            if len(value) >= MIN_SECRET_LENGTH:
                self.values.update(encoded_forms(value))

    def add_env_text(self, text: str, names: Iterable[str] | None = None) -> None:
        """Declare the values of an env file's ``NAME=value`` lines (all, or only ``names``)."""
        wanted = set(names) if names is not None else None
        for line in text.splitlines():
            name, separator, value = line.strip().partition("=")
            if separator and not name.startswith("#") and (wanted is None or name.strip() in wanted):
                self.add(value.strip().strip("'\""))

    def add_env_file(self, machine: Machine, path: str, names: Iterable[str] | None = None) -> None:
        """Declare the secret values of an env file in the guest (e.g. ``/etc/alicia/env``)."""
        self.add_env_text(machine.succeed(f"cat {shlex.quote(path)}"), names)

    def redact(self, text: str) -> str:
        """``text`` with every declared value and secret pattern replaced."""
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, REDACTED)
        for pattern, replacement in self.patterns:
            text = pattern.sub(replacement, text)
        return text
