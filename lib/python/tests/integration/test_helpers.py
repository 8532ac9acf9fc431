"""The helper library on a real trixie VM (PostgreSQL 17 + pgvector, nginx, a small HTTP service).

Every helper is shown to pass on the healthy machine and to fail, with a
readable message, on a planted fault (its negative control).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmtest import health, interactive, logs, migrations
from vmtest.portable.runtime.driver import Driver
from vmtest.portable.runtime.driver_log import CompositeLogger, JunitLogger, TerminalLogger
from vmtest.portable.runtime.machine import QemuMachine
from vmtest.portable.runtime.spec import prepare_machines
from vmtest.reporting.report import Report

from ..conftest import RECIPES

pytestmark = pytest.mark.vm
SECRET = "planted-secret-Zq81xK"
CHAIN = ["postgresql@17-main.service", "svc-migrate.service", "healthsvc.service", "nginx.service"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    out = tmp_path_factory.mktemp("helpers-out")
    configs = prepare_machines([f"server={RECIPES / 'services.toml'}", f"client={RECIPES / 'minimal.toml'}"])
    logger = CompositeLogger([TerminalLogger(), JunitLogger(out / "junit.xml")])
    with Driver(configs, "", out, logger) as driver:
        driver.start_all()
        yield driver


@pytest.fixture(scope="module")
def server(driver: Driver) -> QemuMachine:
    machine = next(m for m in driver.machines if m.name == "server")
    health.wait_for_unit_chain(machine, CHAIN, timeout=300)
    return machine


@pytest.fixture(scope="module")
def client(driver: Driver) -> QemuMachine:
    return next(m for m in driver.machines if m.name == "client")


def test_unit_chain_in_order(server: QemuMachine) -> None:
    result = health.wait_for_unit_chain(server, CHAIN, timeout=60)
    offsets = result.ready_offsets()
    assert list(offsets) == CHAIN and offsets[CHAIN[0]] == 0.0
    assert all(b >= a for a, b in zip(offsets.values(), list(offsets.values())[1:], strict=False))


def test_http_from_the_server_and_through_the_proxy(server: QemuMachine, client: QemuMachine) -> None:
    direct = health.wait_for_http(server, "http://127.0.0.1:8888/health", json_subset={"status": "ok"},
                                  headers={"X-Service": "healthsvc"}, timeout=60)
    assert direct.status == 200 and direct.json() == {"status": "ok"}
    proxied = health.wait_for_http(client, "http://server/health", json_predicate=lambda doc: doc["status"] == "ok",
                                   headers={"X-Proxy": "nginx", "Content-Type": "*"}, timeout=60)
    assert proxied.headers["x-proxy"] == "nginx"


def test_http_negative_controls(server: QemuMachine, client: QemuMachine) -> None:
    server.succeed("mkdir -p /etc/healthsvc && echo '{\"status\": \"degraded\", \"db\": \"down\"}' "
                   "> /etc/healthsvc/health.json")
    try:
        started = time.monotonic()
        with pytest.raises(health.HealthCheckFailed) as raised:
            health.wait_for_http(server, "http://127.0.0.1:8888/health", json_subset={"status": "ok"}, timeout=3)
        message = str(raised.value)
        assert time.monotonic() - started < 15
        assert "server: http://127.0.0.1:8888/health not healthy after" in message and "timeout 3.00 s" in message
        assert "degraded" in message, "the body belongs in the message"
        with pytest.raises(health.HealthCheckFailed, match="header 'X-Proxy' missing"):
            health.wait_for_http(server, "http://127.0.0.1:8888/health", headers={"X-Proxy": "nginx"}, timeout=2)
    finally:
        server.succeed("rm -f /etc/healthsvc/health.json")
    with pytest.raises(health.HealthCheckFailed, match=r"expected HTTP 200, got no HTTP response"):
        health.wait_for_http(client, "http://server:9999/health", timeout=2)
    with pytest.raises(health.HealthCheckFailed, match=r"expected HTTP 200, got HTTP 404"):
        health.wait_for_http(client, "http://server/nothing-here", timeout=2)


def test_ports_sockets_and_log_lines(server: QemuMachine) -> None:
    health.wait_for_tcp_port(server, 80, timeout=30)
    health.wait_for_unix_socket(server, "/run/postgresql/.s.PGSQL.5432", timeout=30)
    with pytest.raises(health.HealthCheckFailed, match=r"TCP 127\.0\.0\.1:5432 to be open"):
        health.wait_for_tcp_port(server, 5432, timeout=2)  # Unix socket only: no TCP
    health.wait_for_tcp_port(server, 5432, closed=True, timeout=5)
    cursor = health.journal_cursor(server)
    # "healthsvc listening" is already in the journal: a cursor-based wait must not see it
    with pytest.raises(health.HealthCheckFailed, match="last lines"):
        health.wait_for_log_line(server, "healthsvc listening", unit="healthsvc.service", after=cursor, timeout=2)
    server.succeed("systemctl restart healthsvc.service")
    line = health.wait_for_log_line(server, "healthsvc listening", unit="healthsvc.service", after=cursor,
                                    timeout=60)
    assert line == "healthsvc listening"


def test_unit_chain_names_the_failing_link(server: QemuMachine) -> None:
    server.succeed(
        "mkdir -p /run/systemd/system/healthsvc.service.d",
        # ExecStartPre, not ExecStart: a failing main process is "active" until it exits (Type=simple),
        # and a wait that looked in that instant saw the chain up, out of order (CI, 474fdc8)
        "printf '[Service]\\nExecStartPre=/bin/sh -c \"echo healthsvc-planted-failure; exit 9\"\\n' "
        "> /run/systemd/system/healthsvc.service.d/break.conf",
        "systemctl daemon-reload",
    )
    try:
        server.execute("systemctl restart healthsvc.service")
        started = time.monotonic()
        with pytest.raises(health.HealthCheckFailed) as raised:
            health.wait_for_unit_chain(server, CHAIN, timeout=120)
        assert time.monotonic() - started < 30, "a failed link must fail the wait at once"
        message = str(raised.value)
        assert "healthsvc.service failed" in message
        assert "healthsvc-planted-failure" in message, "the journal of the failing unit belongs in the message"
        assert "systemctl status healthsvc.service" in message and "critical-chain" in message
    finally:
        server.succeed("rm -rf /run/systemd/system/healthsvc.service.d", "systemctl daemon-reload",
                       "systemctl reset-failed", "systemctl restart healthsvc.service nginx.service")
    health.wait_for_unit_chain(server, CHAIN, timeout=120)


def test_migrations_pass_and_fail(server: QemuMachine) -> None:
    # healthsvc Requires= the migrate unit: re-running migrations must not restart it
    dependent = "systemctl show -P InvocationID healthsvc.service"
    invocation = server.succeed(dependent).strip()
    report = migrations.check_migrations(server, database="svc", directory="/usr/share/svc/migrations",
                                         migrate_unit="svc-migrate.service")
    assert (report.version, report.dirty, report.files) == (2, False, 2)
    assert report.round_trip and report.rerun_noop
    assert invocation and server.succeed(dependent).strip() == invocation, "the dependent unit was restarted"
    assert {"vector", "pgcrypto"} <= set(report.extensions) and report.extensions["vector"].startswith("0.")

    broken = "/srv/broken-migrations"  # readable by the postgres user (/root is not)
    server.succeed(f"cp -r /usr/share/svc/migrations {broken}", f"chmod -R a+rX {broken}",
                   "printf 'CREATE TABLE ok_one (id int);\\nCREATE TABEL typo (id int);\\n' "
                   f"> {broken}/003_typo.up.sql",
                   f"echo 'DROP TABLE ok_one;' > {broken}/003_typo.down.sql")
    listed = migrations.list_migrations(server, broken)
    with pytest.raises(migrations.MigrationCheckFailed) as raised:
        migrations.check_round_trip(server, listed, extensions=["vector"])
    message = str(raised.value)
    assert f"{broken}/003_typo.up.sql line 2" in message
    assert 'syntax error at or near "TABEL"' in message
    assert "CREATE TABEL typo" in message, "the failing statement belongs in the message"

    server.succeed(f"rm {broken}/001_init.down.sql")
    with pytest.raises(migrations.MigrationCheckFailed, match="up migrations without a down"):
        migrations.check_round_trip(server, migrations.list_migrations(server, broken), extensions=["vector"])

    with pytest.raises(migrations.MigrationCheckFailed, match=r"svc is at version 2, the newest migration is 3"):
        migrations.check_applied(server, "svc", listed)

    psql = migrations.Psql()
    psql.query(server, "svc", "UPDATE schema_migrations SET dirty = true")
    try:
        with pytest.raises(migrations.MigrationCheckFailed, match="dirty at version 2"):
            migrations.check_applied(server, "svc", migrations.list_migrations(server, "/usr/share/svc/migrations"))
    finally:
        psql.query(server, "svc", "UPDATE schema_migrations SET dirty = false")
    with pytest.raises(migrations.MigrationCheckFailed, match=r"extensions missing from svc: \['postgis'\]"):
        migrations.check_extensions(server, "svc", ["vector", "postgis"])


def test_logs_are_collected_and_redacted(server: QemuMachine, client: QemuMachine, tmp_path: Path) -> None:
    redactor = logs.Redactor()
    redactor.add_env_file(server, "/etc/svc/env")
    server.succeed("logger -t app 'request with Authorization: Bearer abcdefgh12345678 done'")
    sources = [
        logs.journal("backend-stderr.log", "healthsvc.service"),
        logs.journal_json("backend.jsonl", "healthsvc.service"),
        logs.file("nginx-error.log", "/var/log/nginx/error.log"),
        logs.command("app.log", "journalctl -t app --no-pager"),
        logs.file("missing.log", "/nonexistent/file"),
        *logs.standard_sources(),
    ]
    collected = logs.collect_logs(server, sources, dest="logs", redactor=redactor, out_dir=tmp_path)
    names = {entry.path.name for entry in collected if entry.path}
    assert {"backend-stderr.log", "backend.jsonl", "systemctl-failed.txt", "dmesg.log", "serial.log"} <= names
    assert "healthsvc starting with api key [REDACTED]" in (tmp_path / "logs" / "backend-stderr.log").read_text()
    assert "Bearer [REDACTED]" in (tmp_path / "logs" / "app.log").read_text()
    json.loads((tmp_path / "logs" / "backend.jsonl").read_text().splitlines()[0])
    grep = subprocess.run(["grep", "-r", "-c", SECRET, str(tmp_path)], capture_output=True, text=True)
    assert grep.stdout.count(":0") == len(list(tmp_path.rglob("*.*"))) or SECRET not in grep.stdout
    assert subprocess.run(["grep", "-r", "-q", SECRET, str(tmp_path)]).returncode == 1, "0 occurrences"
    # the negative control: without the redactor, the planted secret is there to be found
    raw = logs.collect_logs(server, [logs.journal("raw.log", "healthsvc.service")], dest="raw",
                            redactor=logs.Redactor(values=set(), patterns=()), out_dir=tmp_path / "control")
    assert raw[0].path is not None and SECRET in raw[0].path.read_text()


def test_large_logs_are_compressed(server: QemuMachine, tmp_path: Path) -> None:
    server.succeed("head -c 12000000 /dev/urandom | base64 > /var/log/big.log")
    expected = server.succeed("sha256sum < /var/log/big.log").split()[0]
    collected = logs.collect_logs(server, [logs.file("big.log", "/var/log/big.log")], out_dir=tmp_path, dest="big")
    assert collected[0].path == tmp_path / "big" / "big.log.gz"
    # It came through the 9p shared directory (nothing left there) and arrived whole.
    assert hashlib.sha256(gzip.decompress(collected[0].path.read_bytes())).hexdigest() == expected
    assert not list(Path(server.shared_dir).glob("vmtest-log-*"))


def test_failure_bundle_collects_on_exception_even_from_a_dead_machine(driver: Driver, tmp_path: Path) -> None:
    configs = prepare_machines([f"doomed={RECIPES / 'minimal.toml'}"])
    logger = CompositeLogger([TerminalLogger()])
    with Driver(configs, "", tmp_path, logger) as extra:
        doomed = extra.machines[0]
        doomed.wait_for_unit("multi-user.target")
        with pytest.raises(RuntimeError, match="the test failed"), logs.failure_bundle([doomed]):
            doomed.crash()
            raise RuntimeError("the test failed")
        bundle = tmp_path / "logs" / "doomed"
        assert (bundle / "serial.log").is_file() and "connecting to host" in (bundle / "serial.log").read_text()


def test_report_from_observations(server: QemuMachine, client: QemuMachine, tmp_path: Path) -> None:
    report = Report(tmp_path, name="helpers")
    with report.case("health"):
        report.observe("health", health.wait_for_http(server, "http://127.0.0.1:8888/health", timeout=30))
    with pytest.raises(health.HealthCheckFailed), report.case("deliberately failing"):
        health.wait_for_http(server, "http://127.0.0.1:8888/nothing", timeout=1)
    guest_junit = tmp_path / "guest.xml"
    guest_junit.write_text(
        '<testsuites><testsuite name="playwright" tests="2">'
        '<testcase name="app loads" classname="e2e" time="1.5"/>'
        '<testcase name="send message" classname="e2e" time="2"><failure message="timeout">trace</failure></testcase>'
        "</testsuite></testsuites>"
    )
    report.add_junit_file(guest_junit)
    server.succeed("systemctl stop nginx.service")
    try:
        observed = report.observe_machine(server, CHAIN)
    finally:
        server.succeed("systemctl start nginx.service")
    assert observed["units"]["nginx.service"]["state"] == "inactive/dead", "states are observed, not assumed"
    assert observed["units"]["healthsvc.service"]["state"] == "active/running"
    assert observed["architecture"] == "x86_64" and observed["accelerator"] in ("tcg", "kvm")
    junit_path, summary_path, _ = report.write()
    summary = json.loads(summary_path.read_text())
    assert summary["result"] == "failed" and summary["tests"] == {"total": 4, "passed": 2, "failed": 2}
    assert summary["health"]["status"] == 200
    suites = [suite.get("name") for suite in ET.parse(junit_path).getroot().iter("testsuite")]
    assert suites == ["helpers", "playwright"]
    report.print_table()


def test_interactive_helpers(driver: Driver, server: QemuMachine, tmp_path: Path) -> None:
    status = interactive.status(driver.machines)
    assert status["server"]["up"] and status["server"]["state"] in ("running", "degraded")
    assert "healthsvc" in interactive.tail(server, "healthsvc.service", lines=5)
    assert interactive.rerun(lambda: 42) == 42
    ran = []
    assert interactive.rerun(lambda: ran.append(1) or "done", driver.subtest, "again") == "done" and ran == [1]
