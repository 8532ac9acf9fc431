"""Health waits that notice readiness fast and say why they gave up.

Every wait polls inside the guest (one ``execute`` for the whole loop in the
common case), from a short first interval with capped exponential backoff and
jitter, bounded by a total timeout and a per-attempt timeout. A timeout raises
``HealthCheckFailed`` (an AssertionError, so both drivers report a test
failure) naming the machine, the target, elapsed/timeout and the last
observation.

Typical use in a testScript::

    from vmtest import health
    health.wait_for_http(server, "http://127.0.0.1:8888/health", json_subset={"status": "ok"})
    health.wait_for_http(client, "http://server/health", json_subset={"status": "ok"})
    health.wait_for_unit_chain(server, ["postgresql.service", "alicia-migrate.service",
                                        "alicia.service", "nginx.service"])
"""

from __future__ import annotations

import itertools
import json
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from vmtest import probes
from vmtest.machine_api import Machine, run
from vmtest.timeouts import Timeout, format_seconds, to_seconds

JsonPredicate = Mapping[str, Any] | Callable[[Any], bool]


class HealthCheckFailed(AssertionError):
    """A health wait timed out or saw a hard failure; the message has the last observation."""


# Bash: vmtest_clock sets $vmtest_now to the milliseconds since the epoch, without forking.
CLOCK_SHELL = "vmtest_clock() { vmtest_now=$(( ${EPOCHREALTIME/[.,]/} / 1000 )); }; "


@dataclass(frozen=True)
class Backoff:
    """Polling intervals: ``first`` doubling up to ``maximum``, plus up to ``jitter`` of each."""

    first: float = 0.05
    maximum: float = 0.1
    jitter: float = 0.2

    def shell(self) -> str:
        """Bash that defines ``vmtest_sleep`` (one backoff step per call, state in $vmtest_ms) and
        ``vmtest_clock`` (milliseconds into $vmtest_now).

        Neither forks: under TCG a process start costs 0.1-0.3 s, which would be most of
        the readiness latency. The sleep is a ``read -t`` on a pipe nobody writes to.
        """
        return (
            f"vmtest_ms={max(1, int(self.first * 1000))}; exec {{vmtest_sfd}}<> <(:); "
            + CLOCK_SHELL
            + "vmtest_sleep() { "
            f"local extra=$(( RANDOM % (vmtest_ms * {int(self.jitter * 100)} / 100 + 1) )); "
            "local total=$(( vmtest_ms + extra )) pause; "
            "printf -v pause '%d.%03d' $(( total / 1000 )) $(( total % 1000 )); "
            'read -r -t "$pause" -u "$vmtest_sfd" || true; '
            f"vmtest_ms=$(( vmtest_ms * 2 > {int(self.maximum * 1000)} ? {int(self.maximum * 1000)} "
            ": vmtest_ms * 2 )); }; "
        )


DEFAULT_BACKOFF = Backoff()
# Probes that start no process (an HTTP/1.0 GET by bash over /dev/tcp) cost the
# guest almost nothing, so they can poll twice as often: readiness is noticed sooner.
FORK_FREE_BACKOFF = Backoff(first=0.02, maximum=0.05)
# A unit chain's guest looks when systemd logs about a unit, and at least every `maximum` s.
CHAIN_BACKOFF = Backoff(first=1.0, maximum=2.0)
CHAIN_SLICE_SECONDS = 10.0


@dataclass
class HttpObservation:
    """What one HTTP attempt saw."""

    url: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    elapsed: float = 0.0
    attempts: int = 0

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError with an excerpt if it is not."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise ValueError(f"body of {self.url} is not JSON: {self.body[:200]!r}") from None

    def describe(self) -> str:
        if self.status == 0:
            return "no HTTP response (connection refused, timed out or DNS failure)"
        return f"HTTP {self.status}, body {self.body[:300]!r}"


def _subset_matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(
            key in actual and _subset_matches(value, actual[key]) for key, value in expected.items()
        )
    return bool(expected == actual)


def _body_problem(observation: HttpObservation, predicate: JsonPredicate | None) -> str | None:
    if predicate is None:
        return None
    try:
        document = observation.json()
    except ValueError as error:
        return str(error)
    if callable(predicate):
        try:
            return None if predicate(document) else "the JSON predicate returned false"
        except Exception as error:  # the predicate's own failure is an observation too
            return f"the JSON predicate raised {type(error).__name__}: {error}"
    if not _subset_matches(predicate, document):
        return f"JSON does not contain {dict(predicate)!r}"
    return None


def _header_problem(observation: HttpObservation, headers: Mapping[str, str] | None) -> str | None:
    for name, value in (headers or {}).items():
        actual = observation.headers.get(name.lower())
        if actual is None:
            return f"header {name!r} missing"
        if value != "*" and actual != value:
            return f"header {name!r} is {actual!r}, expected {value!r}"
    return None


def _parse_http_output(url: str, output: str) -> HttpObservation:
    """Parse a probe's output: the status (000: none), the attempt count, then the raw response."""
    first, _, rest = output.partition("\n")
    second, _, response = rest.partition("\n")
    try:
        status = int(first or 0)
        attempts = int(second or 0)
    except ValueError:
        return HttpObservation(url, 0, body=f"(unparseable probe output {output[:200]!r})")
    raw_headers, _, body = response.replace("\r\n", "\n").partition("\n\n")
    headers: dict[str, str] = {}
    for line in raw_headers.split("\n"):
        if ":" in line and not line.startswith("HTTP/"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return HttpObservation(url, status, headers, body, attempts=attempts)


def _native_target(url: str) -> tuple[str, int, str, str] | None:
    """(host, port, request path, Host header) when bash alone can fetch ``url``, else None."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or ":" in parts.hostname or parts.username:
        return None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.hostname + (f":{parts.port}" if parts.port else "")
    return parts.hostname, parts.port or 80, path, host_header


def _native_get(target: tuple[str, int, str, str], attempt_ms: int) -> str:
    """Bash defining ``vmtest_get``: one HTTP/1.0 GET over /dev/tcp, no process started.

    Sets ``code`` (000: no complete response) and ``resp`` (the raw response).
    Under TCG a process start costs 0.1-0.3 s: curl, plus the tools shipping its
    output, would be most of the time from readiness to the wait returning.
    """
    host, port, path, host_header = target
    request = f"GET {path} HTTP/1.0\r\nHost: {host_header}\r\nUser-Agent: vmtest-health\r\nAccept: */*\r\n\r\n"
    return (
        "trap '' PIPE; "
        "vmtest_get() { code=000; resp=; local fd line rc=0 left pause deadline; "
        f"vmtest_clock; deadline=$(( vmtest_now + {attempt_ms} )); "
        f"{{ exec {{fd}}<>/dev/tcp/{host}/{port}; }} 2>/dev/null || return 0; "
        f"printf '%s' {shlex.quote(request)} >&\"$fd\" 2>/dev/null || {{ exec {{fd}}>&-; return 0; }}; "
        "while :; do vmtest_clock; left=$(( deadline - vmtest_now )); "
        "if (( left <= 0 )); then rc=142; break; fi; "
        "printf -v pause '%d.%03d' $(( left / 1000 )) $(( left % 1000 )); "
        'IFS= read -r -t "$pause" -u "$fd" line && rc=0 || rc=$?; '
        "if (( rc == 0 )); then resp+=\"$line\"$'\\n'; "
        "if (( ${#resp} > 4194304 )); then break; fi; continue; fi; "
        "if (( rc <= 128 )); then resp+=\"$line\"; fi; break; done; "
        "exec {fd}>&-; "
        "if (( rc <= 128 )) && [[ $resp =~ ^HTTP/[0-9.]+\\ ([0-9][0-9][0-9]) ]]; then code=${BASH_REMATCH[1]}; fi; "
        "return 0; }; "
    )


def http_probe_script(url: str, status: int, budget: float, attempt_timeout: float, backoff: Backoff) -> str:
    """Bash that polls ``url`` until it answers ``status`` or ``budget`` seconds pass.

    Plain ``http://`` URLs are fetched by bash itself (``/dev/tcp``, HTTP/1.0),
    so no process starts between the service becoming ready and the answer;
    other URLs go through curl. Prints the last status (000 for none), the
    attempt count, then the last raw response (status line, headers, body).
    """
    loop_end = (
        f'[ "$code" = "{status}" ] && break; '
        'vmtest_clock; [ "$vmtest_now" -ge "$end" ] && break; '
        "vmtest_sleep; done; "
    )
    start = backoff.shell() + f"vmtest_clock; end=$(( vmtest_now + {int(budget * 1000)} )); n=0; "
    target = _native_target(url)
    if target is not None:
        return (
            _native_get(target, max(1, int(attempt_timeout * 1000))) + start
            + "while :; do n=$((n + 1)); vmtest_get; " + loop_end
            + "printf '%s\\n%s\\n%s' \"$code\" \"$n\" \"$resp\""
        )
    quoted = shlex.quote(url)
    return (
        "command -v curl >/dev/null || { echo 'curl is not installed in the guest' >&2; exit 127; }; "
        + start
        + 'd=$(mktemp -d); trap \'rm -rf "$d"\' EXIT; '
        "while :; do n=$((n + 1)); "
        f'code=$(curl -s -o "$d/b" -D "$d/h" -w "%{{http_code}}" --max-time {attempt_timeout:g} {quoted}) || true; '
        + loop_end
        + 'echo "${code:-000}"; echo "$n"; cat "$d/h" "$d/b" 2>/dev/null || true'
    )


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
        backoff = FORK_FREE_BACKOFF if _native_target(url) is not None else DEFAULT_BACKOFF
    predicate: JsonPredicate | None = json_predicate if json_predicate is not None else json_subset
    total = to_seconds(timeout)
    per_attempt = to_seconds(attempt_timeout)
    started = time.monotonic()
    attempts = 0
    observation = HttpObservation(url, 0)
    problem = "never probed"
    with machine.nested(f"waiting for {url} to answer {status} (from {machine.name})"):
        while True:
            remaining = total - (time.monotonic() - started)
            code, output = run(
                machine,
                http_probe_script(url, status, max(0.0, remaining), per_attempt, backoff),
                remaining + per_attempt + 30,
            )
            if code == 127:
                raise HealthCheckFailed(f"{machine.name}: cannot probe {url}: curl is not installed in the guest")
            observation = _parse_http_output(url, output)
            attempts += observation.attempts
            observation.attempts = attempts
            observation.elapsed = time.monotonic() - started
            if observation.status != status:
                problem = f"expected HTTP {status}, got {observation.describe()}"
            else:
                problem = _body_problem(observation, predicate) or _header_problem(observation, headers) or ""
                if not problem:
                    return observation
                problem += f" (HTTP {status}, body {observation.body[:300]!r})"
            if time.monotonic() - started >= total:
                raise HealthCheckFailed(
                    f"{machine.name}: {url} not healthy after {format_seconds(observation.elapsed)} "
                    f"(timeout {format_seconds(total)}, {attempts} attempts): {problem}"
                )
            time.sleep(min(backoff.maximum, max(0.0, total - (time.monotonic() - started))))


def _probe_loop(machine: Machine, description: str, probe: str, want_success: bool,
                timeout: Timeout, backoff: Backoff) -> float:
    total = to_seconds(timeout)
    condition = probe if want_success else f"! ( {probe} )"
    script = (
        backoff.shell()
        + f"vmtest_clock; end=$(( vmtest_now + {int(total * 1000)} )); n=0; "
        f"while :; do n=$((n + 1)); if {condition}; then echo ok $n; exit 0; fi; "
        'vmtest_clock; [ "$vmtest_now" -ge "$end" ] && { echo timeout $n; exit 1; }; vmtest_sleep; done'
    )
    started = time.monotonic()
    with machine.nested(f"waiting for {description}"):
        code, output = run(machine, script, total + 30)
    elapsed = time.monotonic() - started
    if code != 0:
        attempts = output.split()[-1] if output.split() else "?"
        raise HealthCheckFailed(
            f"{machine.name}: timed out waiting for {description} after {format_seconds(elapsed)} "
            f"(timeout {format_seconds(total)}, {attempts} attempts)"
        )
    return elapsed


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
    """Wait until a process listens on the Unix stream socket ``path`` (``ss``, no netcat)."""
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

_PROPERTIES = (
    "Id", "Type", "ActiveState", "SubState", "Result", "NRestarts",
    "ActiveEnterTimestampMonotonic", "ExecMainExitTimestampMonotonic", "InactiveEnterTimestampMonotonic",
)


@dataclass
class UnitObservation:
    """A unit's state as ``systemctl show`` reported it."""

    unit: str
    properties: dict[str, str]

    @property
    def state(self) -> str:
        return f"{self.properties.get('ActiveState')}/{self.properties.get('SubState')}"

    @property
    def result(self) -> str:
        return self.properties.get("Result", "")

    @property
    def ready(self) -> bool:
        """Active, or a oneshot that has finished successfully."""
        if self.properties.get("ActiveState") == "active":
            return True
        return (
            self.properties.get("Type") == "oneshot"
            and self.properties.get("ActiveState") == "inactive"
            and self.result == "success"
            and int(self.properties.get("ExecMainExitTimestampMonotonic", "0") or 0) > 0
        )

    @property
    def failed(self) -> bool:
        state = self.properties.get("ActiveState")
        return state == "failed" or (self.result not in ("", "success") and state != "active")

    @property
    def ready_at_us(self) -> int:
        """When it became ready (monotonic µs): activation, or a oneshot's exit."""
        for key in ("ActiveEnterTimestampMonotonic", "ExecMainExitTimestampMonotonic"):
            value = int(self.properties.get(key, "0") or 0)
            if value:
                return value
        return 0


def _systemctl_show(units: Sequence[str]) -> str:
    names = " ".join(shlex.quote(unit) for unit in units)
    return f"systemctl show --no-pager -p {','.join(_PROPERTIES)} {names}"


def _parse_show(machine: Machine, units: Sequence[str], status: int, output: str) -> list[UnitObservation]:
    if status != 0:
        raise HealthCheckFailed(
            f"{machine.name}: systemctl show {' '.join(units)} failed (exit {status}): {output.strip()}"
        )
    blocks = [block for block in output.strip().split("\n\n") if block.strip()]
    observations = []
    for unit, block in zip(units, blocks, strict=False):
        properties = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        observations.append(UnitObservation(unit, properties))
    return observations


def observe_units(machine: Machine, units: Sequence[str]) -> list[UnitObservation]:
    """Every unit's state in one ``systemctl show`` call."""
    # execute, not succeed: a poll loop should not log every query
    status, output = machine.execute(f"{_systemctl_show(units)} 2>&1")
    return _parse_show(machine, units, status, output)


def _observe_units_changed(
    machine: Machine, units: Sequence[str], previous: str, within: float, backoff: Backoff
) -> tuple[str, list[UnitObservation]]:
    """The units' state once it differs from ``previous`` (``systemctl show`` text), or after ``within`` s.

    The guest does the watching. It looks (one ``systemctl show``) when systemd logs a message
    about one of the units (``journalctl -f`` on their ``UNIT=`` field wakes it), and every
    ``backoff.maximum`` seconds regardless. Polling from the host instead, an ``execute`` (a
    shell, timeout, base64 and systemctl) every half second, took a good part of a TCG guest's
    CPU while the very units being waited for were starting.
    """
    matches = " ".join(f"UNIT={shlex.quote(unit)}" for unit in units)
    script = (
        f"previous={shlex.quote(previous)}; " + CLOCK_SHELL
        + f"vmtest_clock; vmtest_end=$(( vmtest_now + {int(within * 1000)} )); exec {{vmtest_idle}}<> <(:); "
        + f"coproc vmtest_journal {{ exec journalctl --no-pager -q -f -n 0 -o cat {matches} 2>/dev/null; }}; "
        # On every way out (a failed systemctl included), no journalctl left behind.
        + """trap '[ -z "${vmtest_journal_PID:-}" ] || kill "$vmtest_journal_PID" 2>/dev/null || true' EXIT; """
        + f"while :; do state=$({_systemctl_show(units)} 2>&1) || {{ printf '%s' \"$state\"; exit 3; }}; "
        + '[ "$state" != "$previous" ] && break; vmtest_clock; [ "$vmtest_now" -ge "$vmtest_end" ] && break; '
        # Wake at the next message about a unit (a burst counts once), or after a while; if
        # journalctl is gone (no journal), just wait.
        + f'vmtest_rc=0; read -r -t {backoff.maximum} -u "${{vmtest_journal[0]:-$vmtest_idle}}" _ || vmtest_rc=$?; '
        + f'if (( vmtest_rc > 0 && vmtest_rc <= 128 )); then read -r -t {backoff.maximum} -u "$vmtest_idle" _ || true; '
        + 'else while read -r -t 0.05 -u "${vmtest_journal[0]:-$vmtest_idle}" _; do :; done; fi; done; '
        + "printf '%s' \"$state\""
    )
    status, output = run(machine, script, within + 60)
    return output, _parse_show(machine, units, status, output)


def accelerator_from_virt(virt: str, unknown: str) -> str:
    """The accelerator ``systemd-detect-virt`` implies: kvm, tcg (it says ``qemu``), else its answer or ``unknown``."""
    return {"kvm": "kvm", "qemu": "tcg"}.get(virt, virt or unknown)


def failed_units(machine: Machine) -> list[str]:
    """The names of the units systemd reports as failed."""
    _, output = machine.execute("systemctl list-units --failed --plain --no-legend --no-pager | awk '{print $1}'")
    return output.split()


def unit_diagnostics(machine: Machine, unit: str, journal_lines: int = 40) -> str:
    """``systemctl status``, the last journal lines and ``systemd-analyze critical-chain`` of ``unit``."""
    quoted = shlex.quote(unit)
    _, status = machine.execute(f"systemctl status --no-pager --full {quoted} 2>&1 | head -n 30")
    _, journal = machine.execute(f"journalctl --no-pager -n {journal_lines} -u {quoted} 2>&1")
    _, chain = machine.execute(f"systemd-analyze critical-chain --no-pager {quoted} 2>&1 | head -n 20")
    return (
        f"--- systemctl status {unit}\n{status.rstrip()}\n"
        f"--- journalctl -u {unit} (last {journal_lines} lines)\n{journal.rstrip()}\n"
        f"--- systemd-analyze critical-chain {unit}\n{chain.rstrip()}"
    )


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
    total = to_seconds(timeout)
    started = time.monotonic()
    chain = " -> ".join(units)
    state = ""
    with machine.nested(f"waiting for unit chain {chain}"):
        while True:
            # Back to the host at every change of state (to fail fast) and every few seconds.
            within = max(0.0, min(CHAIN_SLICE_SECONDS, total - (time.monotonic() - started)))
            state, observations = _observe_units_changed(machine, units, state, within, backoff)
            for observation in observations:
                if observation.failed:
                    raise HealthCheckFailed(
                        f"{machine.name}: unit chain {chain}: {observation.unit} failed "
                        f"(state {observation.state}, result {observation.result}) after "
                        f"{format_seconds(time.monotonic() - started)}\n"
                        + unit_diagnostics(machine, observation.unit)
                    )
            if all(observation.ready for observation in observations):
                break
            if time.monotonic() - started >= total:
                states = ", ".join(f"{o.unit}: {o.state} ({o.result})" for o in observations)
                waiting = next(o for o in observations if not o.ready)
                raise HealthCheckFailed(
                    f"{machine.name}: unit chain {chain} not up after {format_seconds(time.monotonic() - started)} "
                    f"(timeout {format_seconds(total)}); states: {states}\n"
                    + unit_diagnostics(machine, waiting.unit)
                )
    if check_order:
        for earlier, later in itertools.pairwise(observations):
            if later.ready_at_us < earlier.ready_at_us:
                raise HealthCheckFailed(
                    f"{machine.name}: unit chain {chain}: {later.unit} became ready "
                    f"{(earlier.ready_at_us - later.ready_at_us) / 1e6:.3f} s before {earlier.unit}, "
                    "which it should follow (check After=/Requires=)"
                )
    return ChainResult(observations, time.monotonic() - started)
