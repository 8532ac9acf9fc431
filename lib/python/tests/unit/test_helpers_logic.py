"""Pure logic of the helpers, with a fake Machine (the real proofs are in tests/integration)."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from vmtest import health, logs, migrations, units
from vmtest import probes as http_probe
from vmtest.machine_api import driver_timeout
from vmtest.reporting.report import Report

from .host_shell import HostShellMachine


class OldDriverMachine:
    """Shaped like a pre-2026 driver Machine: int timeouts only."""

    name = "old"

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: int | None = 900) -> tuple[int, str]:
        return 0, ""


class NewDriverMachine:
    """Shaped like a 2026 driver Machine: timedelta timeouts."""

    name = "new"

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: "timedelta | None" = None) -> tuple[int, str]:  # noqa: UP037 - like upstream
        return 0, ""


def test_timeouts_take_the_form_each_driver_wants() -> None:
    assert driver_timeout(OldDriverMachine(), 2.5) == 3  # type: ignore[arg-type]
    assert driver_timeout(NewDriverMachine(), 2.5) == timedelta(seconds=3)  # type: ignore[arg-type]
    assert driver_timeout(OldDriverMachine(), timedelta(minutes=1)) == 60  # type: ignore[arg-type]


def test_redactor_values_and_patterns() -> None:
    redactor = logs.Redactor()
    redactor.add_env_text(
        "# comment\nALICIA_LLM_API_KEY=test-api-key\n"
        "ALICIA_LIVEKIT_API_SECRET='Fm2gvy8tLtzjDagyRe45Z/XLhC8BaDk5NF+bWdgvHy4='\n"
        "SHORT=ab\n"
    )
    text = (
        "key test-api-key and secret Fm2gvy8tLtzjDagyRe45Z/XLhC8BaDk5NF+bWdgvHy4= here\n"
        "OPENAI_API_KEY=sk-abcdefghijklmnopqrstuv\n"
        '{"api_key": "zzz-unlisted-value", "name": "ab"}\n'
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig\n"
        "postgres://alicia:alicia-test-password@localhost/alicia\n"
        "password: hunter2hunter2\n"
    )
    redacted = redactor.redact(text)
    for secret in ("test-api-key", "Fm2gvy8t", "sk-abcdef", "zzz-unlisted-value", "eyJhbGci",
                   "alicia-test-password", "hunter2"):
        assert secret not in redacted, secret
    assert "key [REDACTED] and secret [REDACTED] here" in redacted
    assert '"name": "ab"' in redacted, "too-short values are not redacted everywhere"
    assert "postgres://alicia:[REDACTED]@localhost/alicia" in redacted


def test_psql_failure_is_parsed() -> None:
    output = (
        "psql:/usr/share/alicia/migrations/003_x.up.sql:2: ERROR:  syntax error at or near \"TABEL\"\n"
        "LINE 1: CREATE TABEL typo (id int);\n"
        "               ^\n"
        "CREATE TABEL typo (id int);\n"
    )
    failure = migrations.parse_psql_failure(output, "fallback.sql")
    assert failure.file == "/usr/share/alicia/migrations/003_x.up.sql" and failure.line == 2
    assert failure.statement == "CREATE TABEL typo (id int);"
    assert 'syntax error at or near "TABEL"' in failure.error
    assert "003_x.up.sql line 2" in str(failure)
    unknown = migrations.parse_psql_failure("could not connect", "f.sql")
    assert unknown.file == "f.sql" and "could not connect" in unknown.error


def test_http_probe_output_and_body_checks() -> None:
    raw = "200\n3\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-A: b\r\n\r\n"
    raw += json.dumps({"status": "ok", "db": {"ok": True}})
    observation = http_probe.parse_http_output("http://x/health", raw)
    assert (observation.status, observation.attempts) == (200, 3)
    assert observation.headers == {"content-type": "application/json", "x-a": "b"}
    assert http_probe.body_problem(observation, {"status": "ok", "db": {"ok": True}}) is None
    assert "does not contain" in (http_probe.body_problem(observation, {"status": "degraded"}) or "")
    assert "predicate raised KeyError" in (http_probe.body_problem(observation, lambda d: d["missing"]) or "")
    assert http_probe.header_problem(observation, {"X-A": "b", "Content-Type": "*"}) is None
    assert "expected 'c'" in (http_probe.header_problem(observation, {"X-A": "c"}) or "")
    broken = http_probe.parse_http_output("http://x", "garbage")
    assert broken.status == 0 and "no HTTP response" in broken.describe()


class _Answers(http.server.BaseHTTPRequestHandler):
    """Answers /health with the JSON in the server's ``document``; /slow never answers in time."""

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(1.5)
        body = json.dumps({"status": "ok", "path": self.path, "host": self.headers["Host"]}).encode()
        self.send_response(200 if self.path.startswith("/health") else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Service", "answers")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the slow case's client has gone
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _probe_locally(url: str, budget: float, attempt: float = 2) -> http_probe.HttpObservation:
    script = http_probe.http_probe_script(url, 200, budget, attempt, health.Backoff(0.05, 0.1, 0.2))
    done = subprocess.run(["bash", "-c", "set -euo pipefail; " + script], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return http_probe.parse_http_output(url, done.stdout)


def test_the_fork_free_http_probe_fetches_for_real() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        ok = _probe_locally(f"http://127.0.0.1:{port}/health?a=1&b=2", 5)
        assert ok.status == 200 and ok.attempts == 1
        assert ok.json() == {"status": "ok", "path": "/health?a=1&b=2", "host": f"127.0.0.1:{port}"}
        assert ok.headers["x-service"] == "answers"
        # negative controls: a wrong status is reported with its body after the budget ...
        unavailable = _probe_locally(f"http://127.0.0.1:{port}/down", 0.5)
        assert unavailable.status == 503 and unavailable.attempts > 3 and '"path": "/down"' in unavailable.body
        # ... an answer slower than the per-attempt timeout counts as none ...
        slow = _probe_locally(f"http://127.0.0.1:{port}/slow", 0.2, attempt=0.3)
        assert slow.status == 0
    finally:
        server.shutdown()
        server.server_close()
    # ... and so does a closed port.
    closed = _probe_locally(f"http://127.0.0.1:{port}/health", 0.3)
    assert closed.status == 0 and closed.attempts > 2


def test_http_probe_script_is_valid_bash_and_backs_off() -> None:
    script = http_probe.http_probe_script("http://server/health?a=1&b=2", 200, 1.5, 2, health.Backoff(0.05, 0.4, 0.2))
    subprocess.run(["bash", "-n", "-c", script], check=True)
    # the backoff function on its own: 50 ms doubling to the 400 ms cap, with jitter
    steps = subprocess.run(
        ["bash", "-c", health.Backoff(0.05, 0.4, 0.2).shell()
         + "sleep() { :; }; for i in 1 2 3 4 5; do vmtest_sleep; echo $vmtest_ms; done"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert steps == ["100", "200", "400", "400", "400"]


def test_unit_observation_states() -> None:
    oneshot = units.UnitObservation("m.service", {
        "Type": "oneshot", "ActiveState": "inactive", "SubState": "dead", "Result": "success",
        "ExecMainExitTimestampMonotonic": "5000000",
    })
    assert oneshot.ready and not oneshot.failed and oneshot.ready_at_us == 5_000_000
    restarting = units.UnitObservation("a.service", {
        "Type": "simple", "ActiveState": "activating", "SubState": "auto-restart", "Result": "exit-code",
    })
    assert restarting.failed and not restarting.ready
    assert units.UnitObservation("f", {"ActiveState": "failed"}).failed


def test_report_summary_and_junit(tmp_path: Path) -> None:
    report = Report(tmp_path, name="unit")
    with report.case("ok"):
        pass
    with pytest.raises(ValueError), report.case("bad"):
        raise ValueError("nope")
    report.observe("things", {"path": tmp_path, "list": (1, 2)})
    junit, summary_path, _ = report.write()
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    assert summary["tests"] == {"total": 2, "passed": 1, "failed": 1} and summary["result"] == "failed"
    assert summary["things"] == {"path": str(tmp_path), "list": [1, 2]}
    assert 'message="ValueError: nope"' in junit.read_text()
    empty = Report(tmp_path / "e")
    assert empty.summary()["result"] == "failed", "a run that recorded nothing has not passed"


def test_log_transfer_survives_dropped_bytes_small_and_chunked(tmp_path: Path) -> None:
    guest_file = tmp_path / "guest.log"
    guest_file.write_bytes(os.urandom(3 * logs.TRANSFER_CHUNK_BYTES).hex().encode())  # ~3 chunks after gzip
    small_file = tmp_path / "small.log"
    small_file.write_text("".join(f"line {i}\n" for i in range(2000)))
    # call 1: small read (corrupted, retried as call 2); call 3: stage the big one; 4: its chunk 0 (corrupted)
    machine = HostShellMachine(tmp_path, corrupt_calls={1, 4})
    collected = logs.collect_logs(
        machine, [logs.file("small.log", str(small_file)), logs.file("big.log", str(guest_file))],  # type: ignore[arg-type]
        out_dir=tmp_path, dest="out",
    )
    assert [c.error for c in collected] == [None, None]
    assert (tmp_path / "out" / "small.log").read_text() == small_file.read_text()
    assert gzip.decompress((tmp_path / "out" / "big.log.gz").read_bytes()) == guest_file.read_bytes()
    assert not list(Path("/tmp").glob("vmtest-log.*")), "the staged file must be removed"


def test_log_transfer_reports_persistent_corruption(tmp_path: Path) -> None:
    source = tmp_path / "small.log"
    source.write_text("x" * 5000 + "".join(f"{i}\n" for i in range(5000)))
    machine = HostShellMachine(tmp_path, corrupt_calls={1, 2, 3})
    [collected] = logs.collect_logs(machine, [logs.file("small.log", str(source))],  # type: ignore[arg-type]
                                    out_dir=tmp_path, dest="out")
    assert collected.path is None
    assert collected.error is not None and "3 attempts" in collected.error and "small.log" in collected.error


_STUB_SYSTEMCTL = """#!{bash}
# systemctl show --no-pager -p PROPS UNIT...: each unit's block from $STATE_DIR/UNIT
if [ "$1" = show ]; then
  [ -e "$STATE_DIR/.systemd-gone" ] && { echo "Failed to connect to bus"; exit 1; }
  echo x >> "$STATE_DIR/.looks"
  shift 4; first=1
  for unit in "$@"; do [ "$first" = 1 ] || echo; first=0; cat "$STATE_DIR/$unit"; done
else
  echo "stub systemctl $*"
fi
"""


class StubSystemdMachine:
    """The host's bash with a stub systemctl reading unit states from files; counts executes."""

    name = "stub"

    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        # The bash on PATH, by its path: a Nix build sandbox has /bin/sh and nothing else in /bin.
        bash = shutil.which("bash")
        assert bash is not None, "the stubs need a bash on PATH"
        (self.bin / "systemctl").write_text(_STUB_SYSTEMCTL.replace("{bash}", bash))
        (self.bin / "systemctl").chmod(0o755)
        # journalctl -f: silent until told to print (a unit event), or gone when told to exit
        (self.bin / "journalctl").write_text(
            f"#!{bash}\n" "[ -e \"$STATE_DIR/.no-journal\" ] && exit 1\n"
            "[[ \" $* \" == *\" -f \"* ]] || { echo \"stub journalctl $*\"; exit 0; }\n"
            "while sleep 0.1; do [ -e \"$STATE_DIR/.event\" ] && rm -f \"$STATE_DIR/.event\" && echo event; done\n")
        (self.bin / "journalctl").chmod(0o755)
        self.states = tmp_path / "states"
        self.states.mkdir()
        self.executes = 0

    def set(self, unit: str, active: str, sub: str, result: str = "success", entered_us: int = 0) -> None:
        (self.states / unit).write_text(
            f"Id={unit}\nType=simple\nActiveState={active}\nSubState={sub}\nResult={result}\nNRestarts=0\n"
            f"ActiveEnterTimestampMonotonic={entered_us}\n")

    def event(self) -> None:
        (self.states / ".event").touch()

    def looks(self) -> int:
        looks = self.states / ".looks"
        return len(looks.read_text().split()) if looks.exists() else 0

    def nested(self, msg: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: int | None = 900) -> tuple[int, str]:
        self.executes += 1
        env = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}", "STATE_DIR": str(self.states)}
        done = subprocess.run(["bash", "-c", f"set -euo pipefail; {command}"], capture_output=True, text=True,
                              env=env, timeout=timeout)
        return done.returncode, done.stdout


def test_unit_chain_is_watched_by_the_guest_and_returns_at_readiness(tmp_path: Path) -> None:
    machine = StubSystemdMachine(tmp_path)
    machine.set("db.service", "active", "running", entered_us=1_000_000)
    machine.set("app.service", "activating", "start")

    def app_comes_up() -> None:
        time.sleep(0.6)
        machine.set("app.service", "active", "running", entered_us=3_500_000)
        machine.event()  # systemd logs "Started app.service"

    threading.Thread(target=app_comes_up).start()
    started = time.monotonic()
    result = health.wait_for_unit_chain(machine, ["db.service", "app.service"], timeout=30)  # type: ignore[arg-type]
    assert 0.5 < time.monotonic() - started < 1.5, "a unit's journal message wakes the guest at once"
    assert result.ready_offsets() == {"db.service": 0.0, "app.service": 2.5}
    assert machine.executes <= 3, "the guest watches; the host waits for a change"
    assert machine.looks() <= 4, "one systemctl per wake-up, not a poll loop"


def test_unit_chain_without_a_journal_still_looks_now_and_then(tmp_path: Path) -> None:
    machine = StubSystemdMachine(tmp_path)
    (machine.states / ".no-journal").touch()
    machine.set("db.service", "active", "running", entered_us=1_000_000)
    machine.set("app.service", "activating", "start")
    threading.Timer(2.5, machine.set, ("app.service", "active", "running"), {"entered_us": 2_000_000}).start()
    started = time.monotonic()
    health.wait_for_unit_chain(machine, ["db.service", "app.service"], timeout=30)  # type: ignore[arg-type]
    assert 2.4 < time.monotonic() - started < 7
    assert machine.looks() <= 5, f"a look every {health.CHAIN_BACKOFF.maximum} s, no busy loop"


def test_unit_chain_names_a_failed_link_and_times_out_with_states(tmp_path: Path) -> None:
    machine = StubSystemdMachine(tmp_path)
    machine.set("db.service", "active", "running", entered_us=1_000_000)
    machine.set("app.service", "failed", "failed", result="exit-code")
    failed = r"app\.service failed \(state failed/failed, result exit-code\)"
    with pytest.raises(health.HealthCheckFailed, match=failed):
        health.wait_for_unit_chain(machine, ["db.service", "app.service"], timeout=30)  # type: ignore[arg-type]
    machine.set("app.service", "activating", "start")
    started = time.monotonic()
    with pytest.raises(health.HealthCheckFailed, match=r"not up after .*timeout 2\.00 s.*app\.service: activating"):
        health.wait_for_unit_chain(machine, ["db.service", "app.service"], timeout=2)  # type: ignore[arg-type]
    assert time.monotonic() - started < 6


def test_unit_chain_reports_a_failing_systemctl_and_leaves_no_journal_reader(tmp_path: Path) -> None:
    machine = StubSystemdMachine(tmp_path)
    (machine.states / ".systemd-gone").touch()
    with pytest.raises(health.HealthCheckFailed, match=r"systemctl show db\.service failed \(exit 3\).*bus"):
        health.wait_for_unit_chain(machine, ["db.service"], timeout=10)  # type: ignore[arg-type]
    time.sleep(0.3)
    readers = subprocess.run(["pgrep", "-f", f"{machine.bin}/journalctl"], capture_output=True, text=True)
    assert readers.stdout == "", "the guest's journalctl -f must end with the look that failed"
