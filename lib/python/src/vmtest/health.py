"""Health waits that notice readiness fast and say why they gave up.

Every wait polls inside the guest (one ``execute`` for the whole loop in the
common case), from a short first interval with capped exponential backoff and
jitter, bounded by a total timeout and a per-attempt timeout; the loops are
``vmtest.waiting``'s. A timeout raises ``HealthCheckFailed`` (an AssertionError,
so both drivers report a test failure) naming the machine, the target,
elapsed/timeout and the last observation.

Typical use in a testScript::

    from vmtest import health
    health.wait_for_http(server, "http://127.0.0.1:8888/health", json_subset={"status": "ok"})
    health.wait_for_http(client, "http://server/health", json_subset={"status": "ok"})
    health.wait_for_unit_chain(server, ["postgresql.service", "alicia-migrate.service",
                                        "alicia.service", "nginx.service"])
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vmtest import probes
from vmtest.errors import HealthCheckFailed
from vmtest.machine_api import Machine, run
from vmtest.probes import (
    HttpObservation,
    JsonPredicate,
    body_problem,
    header_problem,
    http_probe_script,
    native_target,
    parse_http_output,
)
from vmtest.units import UnitObservation, parse_show, show_command, unit_diagnostics
from vmtest.waiting import Backoff, Deadline, Timeout, format_seconds, gave_up, timed_out, until_changed, until_deadline

__all__ = [
    "CHAIN_BACKOFF", "DEFAULT_BACKOFF", "FORK_FREE_BACKOFF", "Backoff", "ChainResult", "HealthCheckFailed",
    "HttpObservation", "journal_cursor", "wait_for_http", "wait_for_log_line", "wait_for_tcp_port",
    "wait_for_unit_chain", "wait_for_unix_socket",
]

DEFAULT_BACKOFF = Backoff()
# Probes that start no process (an HTTP/1.0 GET by bash over /dev/tcp) cost the
# guest almost nothing, so they can poll twice as often: readiness is noticed sooner.
FORK_FREE_BACKOFF = Backoff(first=0.02, maximum=0.05)
# A unit chain's guest looks when systemd logs about a unit, and at least every `maximum` s.
CHAIN_BACKOFF = Backoff(first=1.0, maximum=2.0)
CHAIN_SLICE_SECONDS = 10.0


def wait_for_http(
    machine: Machine,
    url: str,
    *,
    status: int = 200,
    json_subset: Mapping[str, Any] | None = None,
    json_predicate: Callable[[Any], bool] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: Timeout = 120,
    attempt_timeout: Timeout = 5,
    backoff: Backoff | None = None,
) -> HttpObservation:
    """Wait, polling from ``machine``, until ``url`` answers ``status`` with a body and headers that match.

    ``json_subset`` must be contained in the JSON body (nested dicts compare as
    subsets); ``json_predicate`` is called with the parsed body; ``headers``
    maps names to exact values (``"*"``: present). ``backoff`` defaults to
    FORK_FREE_BACKOFF for plain http URLs (bash fetches them), DEFAULT_BACKOFF
    otherwise (curl). Returns the matching observation; raises
    HealthCheckFailed with the last status and body.
    """
    if backoff is None:
        backoff = FORK_FREE_BACKOFF if native_target(url) is not None else DEFAULT_BACKOFF
    predicate: JsonPredicate | None = json_predicate if json_predicate is not None else json_subset
    deadline = Deadline.of(timeout)
    per_attempt = Deadline.of(attempt_timeout).limit
    attempts = 0
    with machine.nested(f"waiting for {url} to answer {status} (from {machine.name})"):
        while True:
            remaining = deadline.limit - deadline.elapsed()
            code, output = run(
                machine,
                http_probe_script(url, status, max(0.0, remaining), per_attempt, backoff),
                remaining + per_attempt + 30,
            )
            if code == 127:
                raise HealthCheckFailed(f"{machine.name}: cannot probe {url}: curl is not installed in the guest")
            observation = parse_http_output(url, output)
            attempts += observation.attempts
            observation.attempts = attempts
            observation.elapsed = deadline.elapsed()
            if observation.status != status:
                problem = f"expected HTTP {status}, got {observation.describe()}"
            else:
                problem = body_problem(observation, predicate) or header_problem(observation, headers) or ""
                if not problem:
                    return observation
                problem += f" (HTTP {status}, body {observation.body[:300]!r})"
            if deadline.expired():
                raise HealthCheckFailed(gave_up(machine.name, f"{url} not healthy", observation.elapsed,
                                                deadline.limit, f"{attempts} attempts") + f": {problem}")
            deadline.pause(backoff.maximum)


def _probe_loop(machine: Machine, description: str, probe: str, want_success: bool,
                timeout: Timeout, backoff: Backoff) -> float:
    """Run ``probe`` in the guest with ``backoff`` until its success is ``want_success``; the seconds waited."""
    limit = Deadline.of(timeout).limit
    condition = probe if want_success else f"! ( {probe} )"
    script = (
        until_deadline(condition, limit, backoff)
        + 'if (( vmtest_met == 0 )); then echo ok $n; exit 0; fi; echo timeout $n; exit 1'
    )
    deadline = Deadline(limit)
    with machine.nested(f"waiting for {description}"):
        code, output = run(machine, script, limit + 30)
    if code != 0:
        attempts = output.split()[-1] if output.split() else "?"
        raise HealthCheckFailed(
            timed_out(machine.name, description, deadline.elapsed(), limit, f"{attempts} attempts")
        )
    return deadline.elapsed()


def wait_for_tcp_port(machine: Machine, port: int, host: str = "127.0.0.1", *, closed: bool = False,
                      timeout: Timeout = 120, backoff: Backoff = DEFAULT_BACKOFF) -> float:
    """Wait until ``host:port`` accepts (or, with ``closed``, refuses) TCP connections, seen from ``machine``.

    Returns the seconds waited; raises HealthCheckFailed on timeout.
    """
    state = "closed" if closed else "open"
    return _probe_loop(machine, f"TCP {host}:{port} to be {state}", probes.tcp_open(port, host), not closed,
                       timeout, backoff)


def wait_for_unix_socket(machine: Machine, path: str, *, timeout: Timeout = 120,
                         backoff: Backoff = DEFAULT_BACKOFF) -> float:
    """Wait until a process listens on the Unix stream socket ``path`` (``ss``, no netcat).

    Returns the seconds waited; raises HealthCheckFailed on timeout.
    """
    probe = probes.unix_socket_listening(path)
    return _probe_loop(machine, f"unix socket {path} to accept connections", probe, True, timeout, backoff)


def journal_cursor(machine: Machine) -> str:
    """The journal's current cursor: lines logged after it are 'new' for ``wait_for_log_line``."""
    output = machine.succeed("journalctl --no-pager -n 0 --show-cursor -q 2>/dev/null || true")
    for line in output.splitlines():
        if line.startswith("-- cursor:"):
            return line.removeprefix("-- cursor:").strip()
    # An empty journal has no cursor yet; the first entry's own cursor would then count as new.
    return ""


def wait_for_log_line(
    machine: Machine,
    pattern: str,
    *,
    unit: str | None = None,
    after: str | None = None,
    timeout: Timeout = 120,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> str:
    """Wait for a journal line matching the extended regex ``pattern`` logged after cursor ``after``.

    Without ``after`` the cursor is taken now, so lines already in the journal
    never match. Returns the first matching line; raises HealthCheckFailed
    with the unit's last lines on timeout.
    """
    cursor = journal_cursor(machine) if after is None else after
    selector = f"-u {shlex.quote(unit)} " if unit else ""
    since = f"--after-cursor={shlex.quote(cursor)} " if cursor else ""
    query = f"journalctl --no-pager -o cat {since}{selector}"
    probe = f"{query} | grep -E -m1 -- {shlex.quote(pattern)} > /tmp/vmtest-log-line"
    described = f"journal line /{pattern}/" + (f" from {unit}" if unit else "")
    try:
        _probe_loop(machine, described, probe, True, timeout, backoff)
    except HealthCheckFailed as error:
        _, recent = machine.execute(f"{query} | tail -n 15")
        raise HealthCheckFailed(f"{error}; last lines:\n{recent.rstrip()}") from None
    return machine.succeed("cat /tmp/vmtest-log-line").rstrip("\n")


# -- unit chains ---------------------------------------------------------------------------------


def _observe_units_changed(
    machine: Machine, units: Sequence[str], previous: str, within: float, backoff: Backoff
) -> tuple[str, list[UnitObservation]]:
    """The units' state once it differs from ``previous`` (``systemctl show`` text), or after ``within`` s.

    The guest does the watching: it looks (one ``systemctl show``) when systemd logs about
    one of the units (``journalctl -f`` on their ``UNIT=`` field wakes it), and every
    ``backoff.maximum`` s regardless. Polling from the host instead took a good part of a
    TCG guest's CPU while the very units being waited for were starting.
    """
    matches = " ".join(f"UNIT={shlex.quote(unit)}" for unit in units)
    wake = f"journalctl --no-pager -q -f -n 0 -o cat {matches}"
    status, output = run(machine, until_changed(show_command(units), previous, within, wake, backoff.maximum),
                         within + 60)
    return output, parse_show(machine, units, status, output)


@dataclass
class ChainResult:
    """A unit chain that came up in order: each unit's observation, ready time and the wait."""

    units: list[UnitObservation]
    elapsed: float

    def ready_offsets(self) -> dict[str, float]:
        """Seconds from the first unit's readiness to each unit's."""
        first = self.units[0].ready_at_us
        return {unit.unit: round((unit.ready_at_us - first) / 1e6, 3) for unit in self.units}


def wait_for_unit_chain(
    machine: Machine,
    units: Sequence[str],
    *,
    timeout: Timeout = 300,
    check_order: bool = True,
    backoff: Backoff = CHAIN_BACKOFF,
) -> ChainResult:
    """Wait until every unit of ``units`` is ready (active, or a oneshot finished), in that order.

    Fails fast when a link fails (or is restarting after a failure), naming it
    with its ``systemctl status``, journal and critical chain; fails if a unit
    became ready before the one it follows; fails on timeout with every link's
    last state. The guest looks again whenever systemd logs about one of the
    units, and at the latest ``backoff.maximum`` seconds after its last look.
    """
    if not units:
        raise ValueError("wait_for_unit_chain needs at least one unit")
    deadline = Deadline.of(timeout)
    chain = " -> ".join(units)
    state = ""
    with machine.nested(f"waiting for unit chain {chain}"):
        while True:
            # Back to the host at every change of state (to fail fast) and every few seconds.
            within = min(CHAIN_SLICE_SECONDS, deadline.remaining())
            state, observations = _observe_units_changed(machine, units, state, within, backoff)
            for observation in observations:
                if observation.failed:
                    raise HealthCheckFailed(
                        f"{machine.name}: unit chain {chain}: {observation.unit} failed "
                        f"(state {observation.state}, result {observation.result}) after "
                        f"{format_seconds(deadline.elapsed())}\n"
                        + unit_diagnostics(machine, observation.unit)
                    )
            if all(observation.ready for observation in observations):
                break
            if deadline.expired():
                states = ", ".join(f"{o.unit}: {o.state} ({o.result})" for o in observations)
                waiting = next(o for o in observations if not o.ready)
                raise HealthCheckFailed(
                    gave_up(machine.name, f"unit chain {chain} not up", deadline.elapsed(), deadline.limit)
                    + f"; states: {states}\n" + unit_diagnostics(machine, waiting.unit)
                )
    if check_order:
        for earlier, later in itertools.pairwise(observations):
            if later.ready_at_us < earlier.ready_at_us:
                raise HealthCheckFailed(
                    f"{machine.name}: unit chain {chain}: {later.unit} became ready "
                    f"{(earlier.ready_at_us - later.ready_at_us) / 1e6:.3f} s before {earlier.unit}, "
                    "which it should follow (check After=/Requires=)"
                )
    return ChainResult(observations, deadline.elapsed())
