"""Internal: Shell probes any Linux guest can run (no netcat, no Python: bash, coreutils and ss), and HTTP
as the health waits see it: a bash HTTP/1.0 client, its probe script and what it observed.

For plain ``http://`` URLs bash fetches by itself (``/dev/tcp``), so no process starts
between the service becoming ready and the answer; other URLs go through curl.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from vmtest.waiting import Backoff, until_deadline


def tcp_open(port: int, host: str = "localhost", attempt_timeout: float = 2) -> str:
    """Succeeds if ``host:port`` accepts a TCP connection (bash's /dev/tcp)."""
    return f"timeout {attempt_timeout:g} bash -c {shlex.quote(f': < /dev/tcp/{host}/{int(port)}')} 2>/dev/null"


def unix_socket_listening(path: str, datagram: bool = False) -> str:
    """Succeeds if a process has bound the Unix socket ``path`` (and listens, for stream sockets).

    ss shows the path the server bound, which may differ by a symlink from
    ``path`` (PostgreSQL binds /var/run/postgresql/…), so both are resolved.
    """
    quoted = shlex.quote(path)
    listing = "ss -Hxa" if datagram else "ss -Hxl"
    kind = "u_dgr" if datagram else "u_(str|seq)"
    return (
        f"test -S {quoted} && target=$(realpath {quoted}) && "
        f"{listing} | awk '$1 ~ /^{kind}$/ {{print $5}}' | "
        '{ while read -r bound; do [ "$(realpath -q -- "$bound")" = "$target" ] && exit 0; done; exit 1; }'
    )


# -- HTTP ----------------------------------------------------------------------------------------

JsonPredicate = Mapping[str, Any] | Callable[[Any], bool]


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


def body_problem(observation: HttpObservation, predicate: JsonPredicate | None) -> str | None:
    """What is wrong with the body against a JSON subset or predicate, or None."""
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


def header_problem(observation: HttpObservation, headers: Mapping[str, str] | None) -> str | None:
    """What is wrong with the headers (exact values, ``"*"``: present), or None."""
    for name, value in (headers or {}).items():
        actual = observation.headers.get(name.lower())
        if actual is None:
            return f"header {name!r} missing"
        if value != "*" and actual != value:
            return f"header {name!r} is {actual!r}, expected {value!r}"
    return None


def parse_http_output(url: str, output: str) -> HttpObservation:
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


def native_target(url: str) -> tuple[str, int, str, str] | None:
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
    answered = f'[ "$code" = "{status}" ]'
    target = native_target(url)
    if target is not None:
        return (
            _native_get(target, max(1, int(attempt_timeout * 1000)))
            + until_deadline(f"vmtest_get; {answered}", budget, backoff)
            + "printf '%s\\n%s\\n%s' \"$code\" \"$n\" \"$resp\""
        )
    quoted = shlex.quote(url)
    fetch = f'code=$(curl -s -o "$d/b" -D "$d/h" -w "%{{http_code}}" --max-time {attempt_timeout:g} {quoted}) || true'
    return (
        "command -v curl >/dev/null || { echo 'curl is not installed in the guest' >&2; exit 127; }; "
        + until_deadline(f"{fetch}; {answered}", budget, backoff,
                         prepare='d=$(mktemp -d); trap \'rm -rf "$d"\' EXIT; ')
        + 'echo "${code:-000}"; echo "$n"; cat "$d/h" "$d/b" 2>/dev/null || true'
    )
