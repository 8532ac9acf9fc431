"""A fake machine for the log and transfer helpers: commands run in the host's bash as the backdoor
runs them (``set -euo pipefail``), optionally with stub tools first on PATH, the guest's /var/log
somewhere else, and bytes dropped from chosen outputs as QEMU's console drops them."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

# The bash on PATH, by its path: a Nix build sandbox (these tests run in vmtest's check phase) has
# /bin/sh and nothing else in /bin, so a stub written with #!/bin/bash would not start there.
BASH = shutil.which("bash") or "bash-is-not-on-PATH"


class HostShellMachine:
    """``execute`` in the host's bash; ``stubs`` (a directory) first on PATH; ``var_log`` stands for
    the guest's /var/log; the ``corrupt_calls``-th outputs over 200 bytes lose 50 bytes."""

    def __init__(self, out_dir: Path, *, name: str = "local", stubs: Path | None = None,
                 var_log: Path | None = None, corrupt_calls: set[int] | None = None) -> None:
        self.name = name
        self.out_dir = out_dir
        self.shared_dir = out_dir / "no-shared-dir"  # none: the transfer goes over the console
        self.stubs = stubs
        self.var_log = var_log
        self.corrupt_calls = corrupt_calls or set()
        self.calls = 0

    def is_up(self) -> bool:
        return True

    def get_console_log(self) -> str:
        return ""

    def nested(self, msg: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: int | None = 900) -> tuple[int, str]:
        self.calls += 1
        if self.var_log is not None:
            command = command.replace("/var/log/", f"{self.var_log}/")
        path = f"{self.stubs}:{os.environ['PATH']}" if self.stubs else os.environ["PATH"]
        done = subprocess.run([BASH, "-c", f"set -euo pipefail; {command}"], capture_output=True, text=True,
                              env={**os.environ, "PATH": path}, timeout=60)
        output = done.stdout
        if self.calls in self.corrupt_calls and len(output) > 200:
            output = output[:100] + output[150:]  # a burst of dropped bytes
        return done.returncode, output
