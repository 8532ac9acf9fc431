"""Stand-ins for the upstream driver's machine classes, one set per pinned nixpkgs revision.

Named as upstream names them (``Machine``; ``BaseMachine``, ``QemuMachine``, ``NspawnMachine``),
each with the methods, the timeout annotations and the timeout handling of its revision as
read (tests/unit/data/upstream_api.json names the files and commits), and running commands
on this host instead of a guest:

- a VM's ``execute`` runs ``timeout <timeout> bash -c 'set -euo pipefail; <command>'`` with the
  timeout written as the revision writes it (nixos-25.11 and 26.05: ``f"timeout {timeout}"``,
  so a timedelta reaches ``timeout(1)`` as ``0:00:05`` and fails with 125; nixos-unstable:
  its total seconds);
- a container's runs ``/bin/sh -c 'set -eo pipefail; …; set -u; <command>'`` as NixOS's
  ``/bin/sh`` is, bash in POSIX mode, with the timeout enforced by ``subprocess.run``
  (``TimeoutExpired`` rather than a status);
- nixos-unstable warns on a bare int or float, as its ``test_driver.duration`` does.

What a revision's container lacks (``get_console_log``, ``send_key``, …) these lack too. Every
timeout a method was given is recorded in ``timeouts``, with the method's name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vmtest.errors import RequestedAssertionFailed

# nixos-unstable's duration type (test_driver/duration.py), for its annotations.
Duration = dt.timedelta | int | float

_FOUND = shutil.which("bash")
assert _FOUND is not None, "the fake machines run commands with the bash on PATH"
BASH: str = _FOUND


def warn_if_numeric(duration: object, function: str) -> None:
    """nixos-unstable's warning on a bare number (a bool or None passes silently)."""
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        warnings.warn(f"{function}(): passing a bare int/float as a duration is deprecated. "
                      "Use datetime.timedelta instead.", stacklevel=3)


class _Host:
    """What every fake has: a name, an out and a shared directory, a log, and the host's shell."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.out_dir = root / "out"
        self.shared_dir = root / "shared-xchg"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        self.logged: list[str] = []
        self.timeouts: list[tuple[str, object]] = []
        self.up = True

    def is_up(self) -> bool:
        return self.up

    def log(self, msg: str) -> None:
        self.logged.append(msg)

    def nested(self, msg: str, attrs: dict[str, str] | None = None) -> contextlib.AbstractContextManager[None]:
        self.logged.append(msg)
        return contextlib.nullcontext()

    def _env(self) -> dict[str, str]:
        return {**os.environ, "TMPDIR": tempfile.gettempdir()}


class _Vm(_Host):
    """A VM: commands through the guest's ``timeout(1)`` and bash; a serial console log."""

    console = ""

    def _run_vm(self, command: str, timeout_text: str | None) -> tuple[int, str]:
        prefix = ["timeout", timeout_text] if timeout_text is not None else []
        done = subprocess.run([*prefix, BASH, "-c", f"set -euo pipefail; {command}"], capture_output=True,
                              text=True, env=self._env(), check=False)
        return done.returncode, done.stdout

    def get_console_log(self) -> str:
        return self.console

    def send_key(self, key: str, delay: Any = 0.01, log: bool | None = True) -> None:
        self.logged.append(f"sendkey {key}")

    def screenshot(self, filename: str) -> None:
        Path(filename).write_bytes(b"\x89PNG")


class _Container(_Host):
    """A systemd-nspawn container: ``nsenter … /bin/sh -c`` (bash in POSIX mode), Python's timeout."""

    def _run_container(self, command: str, seconds: Any) -> tuple[int, str]:
        wrapped = f"set -eo pipefail; source /dev/null; set -u; {command}"
        done = subprocess.run(["sh", "-c", wrapped], executable=BASH, stdout=subprocess.PIPE, text=True,
                              env=self._env(), timeout=seconds, check=False)
        return done.returncode, done.stdout


def _succeed(machine: Any, commands: tuple[str, ...], timeout: Any) -> str:
    output = ""
    for command in commands:
        status, out = machine.execute(command, timeout=timeout)
        if status != 0:
            raise RequestedAssertionFailed(f"command `{command}` failed (exit code {status})")
        output += out
    return output


def _copy_out(machine: Any, source: str, target_dir: str) -> None:
    status, _ = machine.execute(f"mkdir -p {machine.shared_dir}/{target_dir} && cp -r {source} "
                                f"{machine.shared_dir}/{target_dir}/")
    if status != 0:
        raise RequestedAssertionFailed(f"copying {source} failed (exit code {status})")
    name = Path(source).name
    target = machine.out_dir / target_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(machine.shared_dir / target_dir / name, target)


# -- nixos-25.11: one Machine class, int seconds ------------------------------------------------------

class Nixos2511:
    class Machine(_Vm):
        def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                    timeout: int | None = 900) -> tuple[int, str]:
            self.timeouts.append(("execute", timeout))
            return self._run_vm(command, f"{timeout}" if timeout is not None else None)

        def succeed(self, *commands: str, timeout: int | None = None) -> str:
            self.timeouts.append(("succeed", timeout))
            return _succeed(self, commands, timeout)

        def wait_for_unit(self, unit: str, user: str | None = None, timeout: int = 900) -> None:
            self.timeouts.append(("wait_for_unit", timeout))

        def wait_until_succeeds(self, command: str, timeout: int = 900) -> str:
            self.timeouts.append(("wait_until_succeeds", timeout))
            return self.execute(command, timeout=timeout)[1]

        def copy_from_vm(self, source: str, target_dir: str = "") -> None:
            _copy_out(self, source, target_dir)


# -- nixos-26.05: BaseMachine, QemuMachine, NspawnMachine; int seconds ------------------------------

class Nixos2605:
    class BaseMachine(_Host):
        def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                    timeout: int | None = 900) -> tuple[int, str]:
            self.timeouts.append(("execute", timeout))
            return self._execute(command, timeout)

        def _execute(self, command: str, timeout: int | None) -> tuple[int, str]:
            raise NotImplementedError

        def succeed(self, *commands: str, timeout: int | None = None) -> str:
            self.timeouts.append(("succeed", timeout))
            return _succeed(self, commands, timeout)

        def wait_for_unit(self, unit: str, user: str | None = None, timeout: int = 900) -> None:
            self.timeouts.append(("wait_for_unit", timeout))

        def wait_until_succeeds(self, command: str, timeout: int = 900) -> str:
            self.timeouts.append(("wait_until_succeeds", timeout))
            return self.execute(command, timeout=timeout)[1]

        def copy_from_machine(self, source: str, target_dir: str = "") -> None:
            _copy_out(self, source, target_dir)

        def copy_from_vm(self, source: str, target_dir: str = "") -> None:
            warnings.warn("Use copy_from_machine() instead", DeprecationWarning, stacklevel=2)
            self.copy_from_machine(source, target_dir)

    class QemuMachine(BaseMachine, _Vm):
        def _execute(self, command: str, timeout: int | None) -> tuple[int, str]:
            return self._run_vm(command, f"{timeout}" if timeout is not None else None)

    class NspawnMachine(BaseMachine, _Container):
        def _execute(self, command: str, timeout: int | None) -> tuple[int, str]:
            return self._run_container(command, timeout)


# -- nixos-unstable: Duration timeouts, a warning on bare numbers -----------------------------------

FIFTEEN_MINUTES = dt.timedelta(minutes=15)


class NixosUnstable:
    class BaseMachine(_Host):
        def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                    timeout: Duration | None = FIFTEEN_MINUTES) -> tuple[int, str]:
            warn_if_numeric(timeout, "execute")
            self.timeouts.append(("execute", timeout))
            as_delta = timeout if isinstance(timeout, dt.timedelta | None) else dt.timedelta(seconds=timeout)
            return self._execute(command, as_delta)

        def _execute(self, command: str, timeout: dt.timedelta | None) -> tuple[int, str]:
            raise NotImplementedError

        def succeed(self, *commands: str, timeout: Duration | None = None) -> str:
            warn_if_numeric(timeout, "succeed")
            self.timeouts.append(("succeed", timeout))
            return _succeed(self, commands, timeout)

        def wait_for_unit(self, unit: str, user: str | None = None, timeout: Duration = FIFTEEN_MINUTES) -> None:
            warn_if_numeric(timeout, "wait_for_unit")
            self.timeouts.append(("wait_for_unit", timeout))

        def wait_until_succeeds(self, command: str, timeout: Duration = FIFTEEN_MINUTES) -> str:
            warn_if_numeric(timeout, "wait_until_succeeds")
            self.timeouts.append(("wait_until_succeeds", timeout))
            return self.execute(command, timeout=timeout)[1]

        def copy_from_machine(self, source: str, target_dir: str = "") -> None:
            _copy_out(self, source, target_dir)

        def copy_from_vm(self, source: str, target_dir: str = "") -> None:
            warnings.warn("Use copy_from_machine() instead", DeprecationWarning, stacklevel=2)
            self.copy_from_machine(source, target_dir)

    class QemuMachine(BaseMachine, _Vm):
        def _execute(self, command: str, timeout: dt.timedelta | None) -> tuple[int, str]:
            return self._run_vm(command, f"{timeout.total_seconds()}" if timeout is not None else None)

    class NspawnMachine(BaseMachine, _Container):
        def _execute(self, command: str, timeout: dt.timedelta | None) -> tuple[int, str]:
            return self._run_container(command, timeout.total_seconds() if timeout is not None else None)

        # nixos-unstable's container has a keyboard and a screen over X11 (xdotool, xwd); still no console.
        def send_key(self, key: str, delay: Duration | None = dt.timedelta(milliseconds=10),
                     log: bool | None = True) -> None:
            self.logged.append(f"xdotool key {key}")

        def screenshot(self, filename: str) -> None:
            Path(filename).write_bytes(b"\x89PNG")

    class MachineDeprecationWrapper:
        """The single node as `machine`: every attribute forwarded, with a warning."""

        def __init__(self, msg: str, machine: Any) -> None:
            self.msg = msg
            self.machine = machine

        def __getattribute__(self, name: str) -> Any:
            if name in ("msg", "machine"):
                return object.__getattribute__(self, name)
            inner = object.__getattribute__(self, "machine")
            warnings.warn(f"invoking '{type(inner).__name__}.{name}' is deprecated", stacklevel=2)
            return getattr(inner, name)


REVISIONS: dict[str, dict[str, type]] = {
    "nixos-25.11": {"vm": Nixos2511.Machine},
    "nixos-26.05": {"vm": Nixos2605.QemuMachine, "container": Nixos2605.NspawnMachine},
    "nixos-unstable": {"vm": NixosUnstable.QemuMachine, "container": NixosUnstable.NspawnMachine},
}


def every_machine(root: Path) -> Iterator[tuple[str, str, Any]]:
    """(revision, kind, machine) for every revision and kind of node it has; containers are named box."""
    for revision, kinds in REVISIONS.items():
        for kind, cls in kinds.items():
            name = "box" if kind == "container" else "server"
            yield revision, kind, cls(name, root / revision / kind)
