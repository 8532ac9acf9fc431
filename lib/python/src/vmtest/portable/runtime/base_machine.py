"""BaseMachine: the part of the Machine API that runs through ``execute`` (as upstream splits it).

Commands, systemd, waits, TTY text and file copies; ``QemuMachine`` adds the QEMU
lifecycle, the backdoor shell that ``execute`` speaks, the console, monitor and screen.
"""

from __future__ import annotations

import base64
import re
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from vmtest.errors import MachineError, RequestedAssertionFailed
from vmtest.portable.runtime.driver_log import AbstractLogger
from vmtest.units import parse_properties
from vmtest.waiting import (
    Deadline,
    Timeout,
    WaitTimedOut,
    format_seconds,
    gave_up,
    once_a_second,
    retry,
    retry_or_raise,
    timed_out,
    to_seconds,
)

# The runtime's waits go back to the host at least this often (seconds of guest tries).
WAIT_SLICE_SECONDS = 10


class UnitFailed(RequestedAssertionFailed):
    """``wait_for_unit`` gave up on the unit: it failed, went inactive with no job, or timed out."""



class BaseMachine:
    """Everything of the Machine API that ``execute`` can do, for any backend that provides ``execute``."""

    name: str
    keep_machine_state: bool
    out_dir: Path
    shared_dir: Path
    state_dir: Path
    logger: AbstractLogger

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: Timeout | None = 900) -> tuple[int, str]:
        """Run ``command`` in the guest; returns (status, stdout); each backend provides it."""
        raise NotImplementedError


    def __repr__(self) -> str:
        return f"<{type(self).__name__} '{self.name}'>"

    @property
    def keep_vm_state(self) -> bool:
        """The pre-2026 name of ``keep_machine_state``."""
        return self.keep_machine_state

    @keep_vm_state.setter
    def keep_vm_state(self, value: bool) -> None:
        self.keep_machine_state = value

    # -- logging ---------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        """Log ``msg`` with this machine's name."""
        self.logger.log(msg, {"machine": self.name})

    def log_serial(self, msg: str) -> None:
        self.logger.log_serial(msg, self.name)

    def nested(self, msg: str, attrs: dict[str, str] | None = None) -> Any:
        """A log section for this machine (a context manager)."""
        return self.logger.nested(msg, {**(attrs or {}), "machine": self.name})

    def succeed(self, *commands: str, timeout: Timeout | None = None) -> str:
        """Run each command; raises RequestedAssertionFailed at the first non-zero status."""
        output = ""
        for command in commands:
            with self.nested(f"must succeed: {command}"):
                started = time.monotonic()
                status, out = self.execute(command, timeout=timeout)
                if status != 0:
                    self.log(f"output: {out}")
                    hint = " (guest timeout expired)" if status == 124 and timeout is not None else ""
                    raise RequestedAssertionFailed(
                        f"{self.name}: command `{command}` failed (exit code {status}){hint} after "
                        f"{format_seconds(time.monotonic() - started)}; output: {out[-2000:]!r}"
                    )
                output += out
        return output

    def fail(self, *commands: str, timeout: Timeout | None = None) -> str:
        """Run each command; raises RequestedAssertionFailed if one exits 0."""
        output = ""
        for command in commands:
            with self.nested(f"must fail: {command}"):
                status, out = self.execute(command, timeout=timeout)
                if status == 0:
                    raise RequestedAssertionFailed(
                        f"{self.name}: command `{command}` unexpectedly succeeded; output: {out[-2000:]!r}"
                    )
                output += out
        return output

    def wait_until_succeeds(self, command: str, timeout: Timeout = 900) -> str:
        """Retry ``command`` every second until it exits 0; returns its output."""
        output = ""
        last_status = None

        def check_success(_last_try: bool) -> bool:
            nonlocal output, last_status
            last_status, output = self.execute(command, timeout=timeout)
            return last_status == 0

        def did_not_succeed(error: WaitTimedOut) -> RequestedAssertionFailed:
            return RequestedAssertionFailed(
                f"{self.name}: `{command}` did not succeed: {error}; last exit code "
                f"{last_status}, last output: {output[-1000:]!r}"
            )

        with self.nested(f"waiting for success: {command}"):
            retry_or_raise(check_success, timeout, did_not_succeed)
        return output

    def wait_until_fails(self, command: str, timeout: Timeout = 900) -> str:
        """Retry ``command`` every second until it exits non-zero; returns its output."""
        output = ""

        def check_failure(_last_try: bool) -> bool:
            nonlocal output
            status, output = self.execute(command, timeout=timeout)
            return status != 0

        def kept_succeeding(error: WaitTimedOut) -> RequestedAssertionFailed:
            return RequestedAssertionFailed(
                f"{self.name}: `{command}` kept succeeding: {error}; last output: {output[-1000:]!r}"
            )

        with self.nested(f"waiting for failure: {command}"):
            retry_or_raise(check_failure, timeout, kept_succeeding)
        return output

    def sleep(self, secs: Timeout | None = None, duration: Timeout | None = None) -> None:
        """Sleep inside the guest for ``duration`` (or ``secs``, its older name: give one), so that time
        passes with the guest clock; raises TypeError for both or neither."""
        if (secs is None) == (duration is None):
            raise TypeError(f"{self.name}.sleep() takes one of 'secs' and 'duration', got "
                            f"{'both' if secs is not None else 'neither'}")
        given = duration if duration is not None else secs
        assert given is not None
        seconds = to_seconds(given)
        self.succeed(f"sleep {seconds:g}", timeout=seconds + 30)

    # -- systemd ---------------------------------------------------------------------------

    def systemctl(self, q: str, user: str | None = None) -> tuple[int, str]:
        """Run ``systemctl q`` (as ``user``'s manager if given)."""
        if user is not None:
            q = q.replace("'", "\\'")
            return self.execute(
                f"su -l {user} --shell /bin/sh -c "
                f"$'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user {q}'"
            )
        return self.execute(f"systemctl {q}")

    def start_job(self, jobname: str, user: str | None = None) -> tuple[int, str]:
        return self.systemctl(f"start {jobname}", user)

    def stop_job(self, jobname: str, user: str | None = None) -> tuple[int, str]:
        return self.systemctl(f"stop {jobname}", user)

    def wait_for_job(self, jobname: str) -> None:
        """The pre-2026 name of ``wait_for_unit(jobname)`` (default timeout); raises as it does."""
        self.wait_for_unit(jobname)

    def get_unit_info(self, unit: str, user: str | None = None) -> dict[str, str]:
        """``systemctl show unit`` as a dict; raises RequestedAssertionFailed if that fails."""
        status, lines = self.systemctl(f'--no-pager show "{unit}"', user)
        if status != 0:
            raise RequestedAssertionFailed(
                f'{self.name}: retrieving systemctl info for unit "{unit}"'
                f"{'' if user is None else f' under user {user!r}'} failed with exit code {status}"
            )
        return parse_properties(lines)

    def get_unit_property(self, unit: str, property: str, user: str | None = None) -> str:
        """One property of ``unit`` (``systemctl show --property``)."""
        status, output = self.systemctl(f'--no-pager show "{unit}" --property="{property}"', user)
        if status != 0:
            raise RequestedAssertionFailed(
                f'{self.name}: retrieving property "{property}" of unit "{unit}" failed with exit code {status}'
            )
        properties = parse_properties(output.strip())
        if property not in properties:
            raise RequestedAssertionFailed(f'{self.name}: unit "{unit}" has no property "{property}"')
        return properties[property]

    def _unit_journal(self, unit: str, lines: int = 25) -> str:
        try:
            _, journal = self.execute(
                f"journalctl --no-pager -n {lines} -u {shlex.quote(unit)} 2>&1", timeout=30
            )
        except MachineError:
            return "(journal unavailable: the VM is gone)"
        return journal.strip()

    def require_unit_state(self, unit: str, require_state: str = "active") -> None:
        """Raise RequestedAssertionFailed unless ``unit``'s ActiveState is ``require_state``."""
        with self.nested(f"checking if unit '{unit}' has reached state '{require_state}'"):
            state = self.get_unit_info(unit)["ActiveState"]
            if state != require_state:
                raise RequestedAssertionFailed(
                    f"{self.name}: expected unit '{unit}' to be in state '{require_state}' "
                    f"but it is in state '{state}'\n{self._unit_journal(unit)}"
                )

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: Timeout = 900) -> None:
        """Wait until ``unit`` is active.

        Raises RequestedAssertionFailed at once if it fails, or if it is
        inactive with no job pending (seen twice), and after ``timeout``
        otherwise; the message carries the last state and the unit's journal.
        """
        deadline = Deadline.of(timeout)
        last: dict[str, str] = {}

        def fail(reason: str) -> UnitFailed:
            return UnitFailed(
                gave_up(self.name, f"unit '{unit}' {reason}", deadline.elapsed(), deadline.limit) + "; last state: "
                f"{last.get('ActiveState')}/{last.get('SubState')}, result {last.get('Result')}.\n"
                f"journal of {unit}:\n{self._unit_journal(unit)}"
            )

        def check_active(_last_try: bool) -> bool:
            nonlocal last
            last = self.get_unit_info(unit, user)
            state = last["ActiveState"]
            if last.get("LoadState") == "not-found":
                raise fail("does not exist (no such unit: LoadState=not-found)")
            if state == "failed":
                raise fail("reached state 'failed'")
            if state == "inactive":
                _, jobs = self.systemctl("list-jobs --full 2>&1", user)
                if "No jobs" in jobs:
                    last = self.get_unit_info(unit, user)
                    if last["ActiveState"] == state:
                        raise fail("is inactive and there are no pending jobs")
            return state == "active"

        with self.nested(f"waiting for unit {unit}" + (f" with user {user}" if user else "")):
            try:
                retry(check_active, timeout)
            except UnitFailed:
                raise
            except RequestedAssertionFailed:  # the timeout, or systemctl show itself failing
                raise fail("did not become active") from None

    # -- waits -----------------------------------------------------------------------------

    def _wait(self, description: str, command: str, want_success: bool, timeout: Timeout) -> None:
        deadline = Deadline.of(timeout)
        last_output = ""

        def check(_last_try: bool) -> bool:
            nonlocal last_output
            # Upstream runs one execute per second. Here the guest tries once a second itself
            # for up to WAIT_SLICE_SECONDS per execute: each execute costs the guest several
            # process starts (shell, timeout, base64), a real share of a TCG guest's CPU when
            # the wait lasts minutes beside the work it waits for.
            attempts = max(1, min(WAIT_SLICE_SECONDS, int(deadline.limit - deadline.elapsed())))
            status, last_output = self.execute(once_a_second(command, want_success, attempts),
                                               timeout=attempts + 10)
            return status == 0

        def timed_out_waiting(_: WaitTimedOut) -> RequestedAssertionFailed:
            return RequestedAssertionFailed(
                timed_out(self.name, description, deadline.elapsed(), deadline.limit)
                + (f"; last output: {last_output[-500:]!r}" if last_output else "")
            )

        with self.nested(f"waiting for {description}"):
            retry_or_raise(check, timeout, timed_out_waiting)

    def wait_for_file(self, filename: str, timeout: Timeout = 900) -> None:
        """Wait until ``filename`` exists in the guest (``test -e``, unquoted like upstream)."""
        self._wait(f"file {filename}", f"test -e {filename}", True, timeout)

    # The port and socket waits run upstream's own guest command, netcat's ``nc -z`` (unquoted, as
    # upstream's): a guest must have what the upstream driver runs there, and a twin without ``nc``
    # fails here as under upstream's driver rather than only there (tests/repo/guest_interface.py
    # checks the recipes statically).

    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: Timeout = 900) -> None:
        """Wait until something accepts TCP connections on ``addr:port`` in the guest (``nc -z addr port``)."""
        self._wait(f"TCP port {addr}:{port} to open", f"nc -z {addr} {port}", True, timeout)

    def wait_for_closed_port(self, port: int, addr: str = "localhost", timeout: Timeout = 900) -> None:
        """Wait until ``nc -z addr port`` fails: nothing accepts TCP connections on ``addr:port``."""
        self._wait(f"TCP port {addr}:{port} to close", f"nc -z {addr} {port}", False, timeout)

    def wait_for_open_unix_socket(self, addr: str, is_datagram: bool = False, timeout: Timeout = 900) -> None:
        """Wait until a process listens on the Unix socket ``addr`` (``nc -z -U addr``, ``-uU`` for datagrams)."""
        self._wait(f"unix socket {addr}", f"nc -z {'-uU' if is_datagram else '-U'} {addr}", True, timeout)

    def get_tty_text(self, tty: str) -> str:
        """The text shown on virtual console ``tty`` (``/dev/vcs<tty>``)."""
        status, output = self.execute(
            f"fold -w$(stty -F /dev/tty{tty} size | awk '{{print $2}}') /dev/vcs{tty}"
        )
        if status != 0:
            raise RequestedAssertionFailed(f"{self.name}: cannot read tty{tty} (exit code {status})")
        return output

    def wait_until_tty_matches(self, tty: str, regexp: str, timeout: Timeout = 900) -> None:
        """Wait until virtual console ``tty`` shows text matching ``regexp``."""
        pattern = re.compile(regexp)
        last = ""

        def tty_matches(_last_try: bool) -> bool:
            nonlocal last
            # A tty that getty is resetting cannot be read for a moment: that is no match yet
            # (upstream ignores the read's status altogether).
            try:
                last = self.get_tty_text(tty)
            except RequestedAssertionFailed as error:
                last = f"({error})"
                return False
            return bool(pattern.search(last))

        def never_matched(_: WaitTimedOut) -> RequestedAssertionFailed:
            return RequestedAssertionFailed(
                f"{self.name}: tty{tty} never matched {regexp!r}; last text: {last[-500:]!r}"
            )

        with self.nested(f"waiting for {regexp} to appear on tty {tty}"):
            retry_or_raise(tty_matches, timeout, never_matched)

    def dump_tty_contents(self, tty: str) -> None:
        """Debugging: copy the text of virtual console ``tty`` into the guest's journal (``systemd-cat``)."""
        self.execute(f"fold -w 80 /dev/vcs{tty} | systemd-cat")

    # -- files -----------------------------------------------------------------------------

    def cleanup_statedir(self) -> None:
        """Delete this machine's state directory (its disk overlay and sockets), as upstream's does."""
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.log(f"deleting machine state directory {self.state_dir}")
        self.log("if you want to keep the machine state, pass --keep-machine-state")

    def copy_from_host_via_shell(self, source: str, target: str) -> None:
        """Copy a host file into the guest through the shell (no shared folder needed)."""
        data = base64.b64encode(Path(source).read_bytes()).decode()
        self.succeed(f"mkdir -p $(dirname {shlex.quote(target)})")
        self.succeed(f"echo -n {data} | base64 -d > {shlex.quote(target)}")

    def copy_from_host(self, source: str, target: str) -> None:
        """Copy a host file or directory to ``target`` in the guest through the 9p shared dir."""
        host_src = Path(source)
        staging = Path(tempfile.mkdtemp(dir=self.shared_dir))
        try:
            host_copy = staging / host_src.name
            if host_src.is_dir():
                shutil.copytree(host_src, host_copy)
            else:
                shutil.copy(host_src, host_copy)
            guest_src = Path("/tmp/shared") / staging.name / host_src.name
            self.succeed(
                f"mkdir -p $(dirname {shlex.quote(target)})",
                f"cp -r {shlex.quote(str(guest_src))} {shlex.quote(target)}",
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def copy_from_machine(self, source: str, target_dir: str = "") -> None:
        """Copy a guest file or directory to ``out_dir/target_dir/<basename>`` on the host."""
        staging = Path(tempfile.mkdtemp(dir=self.shared_dir))
        try:
            guest_dir = Path("/tmp/shared") / staging.name
            self.succeed(f"cp -r {shlex.quote(source)} {shlex.quote(str(guest_dir))}/")
            copied = staging / Path(source).name
            destination = self.out_dir / target_dir / Path(source).name
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.is_dir():
                shutil.rmtree(destination)
            shutil.move(str(copied), destination)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def copy_from_vm(self, source: str, target_dir: str = "") -> None:
        """The pre-2026 name of ``copy_from_machine``."""
        self.copy_from_machine(source, target_dir)
