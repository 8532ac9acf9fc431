# The Alicia e2e testScript. One file for both runtimes:
#   nix build .#checks.x86_64-linux.e2e      (the NixOS test driver; vmtest via extraPythonPackages)
#   make e2e                                 (vmtest's portable runtime on Debian VMs)
# Both machine flavours declare the same guest interface: the units below, /etc/alicia/env,
# /etc/alicia/migrations, and the client's e2e-browser-tests unit (tests/repo checks this).
# Under Nix the server and client are vmtest's web-stack roles (lib/nix/modules/e2e-*.nix).
# Artifacts land in the driver's output directory ($out under Nix) with seed 000's layout:
#   logs/ (server), logs/client/, screenshots/browser/, screenshots/desktop/, junit.xml, summary.json,
#   report.html
from pathlib import Path

from vmtest import Report, checkpoint, copy_from_machine, guest_results, health, logs, migrations
from vmtest.suites.web_stack import WebStack, web_stack_from

out = Path(driver.out_dir)  # the driver's namespace
# The Alicia stack, as both twins declare it. Another app's flake runs this same script through
# vmtest's lib.<system>.webStackE2e, which declares its units and prepends VMTEST_E2E with their
# names (vmtest.suites.web_stack); without it (make e2e, this flake's own check) it is Alicia's.
ALICIA = WebStack(
    name="alicia-e2e",
    app_unit="alicia.service",
    migrate_unit="alicia-migrate.service",
    chain=("postgresql.service", "alicia-migrate.service", "alicia.service", "nginx.service"),
    port=8888,
    health_path="/health",
    healthy={"status": "ok", "database": "ok"},
    proxied_headers={"X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff"},
    database="alicia",
    migrations_dir="/etc/alicia/migrations",
    required_extensions=("vector", "pgcrypto"),
    env_file="/etc/alicia/env",
    helpers={"alicia-llm-mock.service": 9090, "alicia-livekit.service": 7880},  # unit: port
    # the seed's test secrets, declared up front so they are redacted even if the server dies early
    secrets=("test-api-key", "APIkey1234", "Fm2gvy8tLtzjDagyRe45Z/XLhC8BaDk5NF+bWdgvHy4="),
    browser_log="pytest.log",
)
STACK = web_stack_from(globals(), ALICIA)
CHAIN = list(STACK.chain)
MOCKS = dict(STACK.helpers)
# The run's own redactor on the portable runtime (every artifact and message goes through it);
# a fresh one under the NixOS driver, for what the helpers write.
redactor = logs.Redactor.for_driver(driver)
redactor.add(*STACK.secrets)
report = Report(out, name=STACK.name, redactor=redactor)


def alicia_server_sources(unit: str = "alicia.service") -> list[logs.LogSource]:
    """Seed 000's server layout: backend journal (JSON and text), PostgreSQL, nginx, system errors."""
    return [
        logs.journal_json("backend.jsonl", unit),
        logs.journal("backend-stderr.log", unit),
        # Each log wherever the node flavour puts it: the unit's journal (NixOS: postgres, and nginx's
        # errors, as services.nginx.logError is "stderr"; the Debian twin's postgres, run by systemd
        # as on NixOS) and the package's own files when they exist (Debian: pg_ctlcluster's
        # /var/log/postgresql, nginx's error.log). The access log is /var/log/nginx/access.log on both.
        logs.journal_and_files("postgresql.log", "postgresql*", "/var/log/postgresql/*.log"),
        logs.file("nginx-access.log", "/var/log/nginx/access.log"),
        logs.journal_and_files("nginx-error.log", "nginx.service", "/var/log/nginx/error.log"),
        *logs.standard_sources(),
    ]


def collect_artifacts() -> None:
    # The driver's screenshot() writes into an existing directory only (upstream's shell redirection
    # fails otherwise): the testScript makes it.
    desktop = out / "screenshots" / "desktop"
    desktop.mkdir(parents=True, exist_ok=True)
    for machine, sources, dest in (
        (server, alicia_server_sources(STACK.app_unit), "logs"),
        (client, logs.standard_sources(), "logs/client"),
    ):
        logs.collect_logs(machine, sources, dest=dest, redactor=redactor)
        # nixos-26.05's container nodes (NspawnMachine) have no screenshot() at all; later ones and the
        # portable runtime's raise for a container, as for a dead VM: the logs say why.
        screenshot = getattr(machine, "screenshot", None)
        if screenshot is None:
            machine.log("no desktop screenshot: this machine has no screen")
            continue
        try:
            screenshot(str(desktop / f"{machine.name}.png"))
        except Exception as error:
            machine.log(f"no desktop screenshot: {error}")


try:
    # A later run with the same script (through this block), images and machines resumes both
    # machines here, stack healthy and client up, instead of booting them (vmtest.checkpoint; the
    # portable runtime only: under the NixOS driver the block always runs).
    with checkpoint("stack-healthy", [server, client]) as resumed:
        if not resumed:
            # Both boot now. On the portable runtime the client's QEMU runs at nice 19 (boot_nice in
            # machines.toml) until its first command: on 2 cores under TCG an equal second guest would
            # double the time to a healthy server, while the server's chain (PostgreSQL, psql, Python
            # imports) mostly keeps one core busy and leaves the other to the client.
            server.start()
            client.start()

        with report.step("server stack comes up in order", subtest):
            chain = health.wait_for_unit_chain(server, CHAIN, timeout=900)
            report.observe("unit_chain_ready_offsets_s", chain.ready_offsets())
            if not resumed:  # a resumed chain came up in the run that saved it
                report.span_chain(server, chain)  # report.html's timeline: each link from start to ready
                report.observe("stack_healthy_after_s", round(chain.elapsed, 2))  # from the server's start
            redactor.add_env_file(server, STACK.env_file)
        client.wait_for_unit("multi-user.target")
    report.observe("resumed_from_checkpoint", resumed)

    with report.step("backend health, from the server", subtest):
        backend = health.wait_for_http(server, STACK.backend_health_url, json_subset=dict(STACK.healthy))
        report.observe("health_backend", {"status": backend.status, "body": backend.json()})

    # The migrate unit is re-run alone; the backend keeps serving.
    with report.step("migrations applied, reversible and idempotent", subtest):
        report.observe("migrations", migrations.check_migrations(
            server, database=STACK.database, directory=STACK.migrations_dir,
            required_extensions=STACK.required_extensions, migrate_unit=STACK.migrate_unit,
        ))

    with report.step("health through nginx, from the client", subtest):
        proxied = health.wait_for_http(
            client, STACK.proxied_health_url, json_subset=dict(STACK.healthy),
            headers=dict(STACK.proxied_headers),
        )
        report.observe("health_proxied", {"status": proxied.status, "body": proxied.json()})

    with report.step("browser smoke tests (Playwright on the client)", subtest):
        for unit, port in MOCKS.items():
            server.wait_for_unit(unit)
            server.wait_for_open_port(port)  # they start after the stack, and import for seconds
        # The e2e-browser-tests unit, declared by both twins with what it needs on PATH, started
        # detached: each test's result (results.jsonl) reaches the host's log as the test ends,
        # while the host waits for exit-status, written once the runner's log is complete.
        # Its output also goes to the journal, which the test VMs forward to the serial console.
        unit = "e2e-browser-tests.service"
        client.succeed(f"rm -rf /tmp/e2e && systemctl start --no-block {unit}")
        try:
            streamed = guest_results.follow_results(
                client, "/tmp/e2e/results.jsonl", "/tmp/e2e/exit-status", timeout=1800,
                alive=f'[ "$(systemctl show -p ActiveState --value {unit})" = activating ]',
                redact=redactor.redact)
            report.observe("browser_results_streamed", len(streamed.results))
            status_text = client.execute("cat /tmp/e2e/exit-status")[1].strip()
        except guest_results.DetachedWorkStopped as error:
            status_text = str(error)
        if not status_text.isdigit():
            journal = client.execute(f"systemctl status --no-pager {unit}; journalctl --no-pager -n 40 -u {unit}")[1]
            raise AssertionError(f"the browser tests wrote no exit status ({status_text!r}); the unit:\n{journal}")
        status = int(status_text)
        copy_from_machine(client, "/tmp/e2e/junit-browser.xml", "")
        client.succeed("mkdir -p /tmp/e2e/screenshots/browser /tmp/e2e/test-results")
        copy_from_machine(client, "/tmp/e2e/screenshots/browser", "screenshots")
        copy_from_machine(client, "/tmp/e2e/test-results", "")
        # The runner's log (docs/browser-runner.md): STACK.browser_log, or the OUTDIR/*.log the runner
        # wrote instead (playwright.log: the @playwright/test runner, e2e-test/machines-ts.toml).
        written = client.succeed("find /tmp/e2e -maxdepth 1 -type f -printf '%f\\n'").split("\n")
        for runner_log in sorted(name for name in written if name == STACK.browser_log or name.endswith(".log")):
            copy_from_machine(client, f"/tmp/e2e/{runner_log}", "logs/client")
        browser_cases = report.add_junit_file(out / "junit-browser.xml", "browser")
        report.observe("browser_tests", {"exit_status": status, "cases": len(browser_cases),
                                         "failed": [case.name for case in browser_cases if not case.passed]})
        if status != 0:
            failed = [f"{case.name}: {case.message}" for case in browser_cases if not case.passed]
            raise AssertionError(f"browser tests failed (exit {status}):\n" + "\n".join(failed))
finally:
    for machine, units in ((server, CHAIN + list(MOCKS)), (client, [])):
        try:
            report.observe_machine(machine, units)
        except Exception as error:  # observing must never hide the test's own failure
            report.observe(f"{machine.name}_unobservable", str(error))
    collect_artifacts()
    report.write()
    report.print_table()
