"""Negative controls of the e2e suite: the real testScript on a server with a planted fault.

Each run must fail for the right reason, name the culprit in its report, and still deliver its
artifacts (logs, summary.json, junit.xml) with no secret in them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ..conftest import RECIPES, guest_panic, secret_hits, vm_processes

pytestmark = [pytest.mark.vm, pytest.mark.e2e]
REPO = Path(__file__).resolve().parents[4]
SCRIPT = REPO / "e2e-test" / "test_script.py"
CLIENT = REPO / "e2e-test" / "machines" / "client.toml"
SECRETS = ("test-api-key", "APIkey1234", "Fm2gvy8tLtzjDagyRe45Z/XLhC8BaDk5NF+bWdgvHy4=")


def run_e2e(server_recipe: str, out: Path) -> tuple[int, str]:
    """Run the e2e testScript with the fault's server. A guest kernel panic (TCG's rare emulation
    crash, which is not the fault under test) fails the test with the panic's line, so that
    conftest's rule runs it once more."""
    process = subprocess.run(
        [sys.executable, "-m", "vmtest.portable.cli", "run", str(SCRIPT), "--out", str(out), "--no-checkpoints",
         "--machines", f"server={RECIPES / 'e2e-faults' / server_recipe},client={CLIENT}"],
        capture_output=True, text=True, timeout=3000,
    )
    panic = guest_panic(out)
    if panic is not None:
        raise RuntimeError(f"the e2e run is void: {panic}")
    return process.returncode, process.stdout + process.stderr


def failures(junit: Path) -> dict[str, str]:
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        failure = case.find("failure")
        if failure is not None:
            found[case.get("name", "")] = f"{failure.get('message', '')}\n{failure.text or ''}"
    return found


def assert_artifacts_arrived(out: Path, output: str) -> dict[str, object]:
    for name in ("summary.json", "junit.xml", "report.html", "logs/backend-stderr.log", "logs/serial.log",
                 "logs/systemctl-failed.txt", "logs/client/serial.log", "screenshots/desktop/server.png",
                 "vmtest-junit.xml", "vmtest-run.json", "serial/server.log"):
        assert (out / name).is_file(), f"{name} must arrive even when the run fails"
    assert secret_hits(out, SECRETS, extra={"vmtest's output": output}) == []
    summary: dict[str, object] = json.loads((out / "summary.json").read_text())
    assert summary["result"] == "failed"
    return summary


@pytest.mark.fault(fault="e2e: the backend cannot reach its database, and echoes the declared secrets first",
                   handling="the chain names alicia.service with its journal; every artifact arrives; 0 hits of "
                            "the secrets in any encoding in the output directory or vmtest's output; exit 1")
def test_broken_database_url_names_alicia_with_its_journal(tmp_path: Path) -> None:
    before = vm_processes()
    code, output = run_e2e("server-broken-db.toml", tmp_path)
    assert code == 1, output
    failed = failures(tmp_path / "junit.xml")
    message = failed["server stack comes up in order"]
    assert "alicia.service failed" in message
    assert "journalctl -u alicia.service" in message and "no-such-database" in message
    # The secrets did reach vmtest's report and console log, redacted: the check below can fail.
    assert "leaking [REDACTED] [REDACTED]" in (tmp_path / "vmtest-junit.xml").read_text()
    assert "leaking [REDACTED]" in (tmp_path / "serial" / "server.log").read_text()
    summary = assert_artifacts_arrived(tmp_path, output)
    units = summary["machines"]["server"]["units"]  # type: ignore[index]
    assert units["alicia-migrate.service"]["result"] == "success", "only the backend was broken"
    assert units["alicia.service"]["state"] != "active/running"
    assert vm_processes() == before


def test_bad_migration_is_named_with_its_statement(tmp_path: Path) -> None:
    code, output = run_e2e("server-bad-migration.toml", tmp_path)
    assert code == 1, output
    message = failures(tmp_path / "junit.xml")["server stack comes up in order"]
    assert "alicia-migrate.service failed" in message
    assert "007_broken.up.sql" in message and 'syntax error at or near "TABEL"' in message
    assert_artifacts_arrived(tmp_path, output)


def test_llm_error_fails_receive_ai_reply_with_the_reason(tmp_path: Path) -> None:
    code, output = run_e2e("server-llm-error.toml", tmp_path)
    assert code == 1, output
    browser = failures(tmp_path / "junit-browser.xml")
    reply = next(message for name, message in browser.items() if "receive_ai_reply" in name)
    assert "LLM returned HTTP 500" in reply and "mock LLM failure" in reply
    assert not any("app_loads" in name for name in browser), "the app itself still loads"
    shots = tmp_path / "screenshots" / "browser"
    assert (shots / "final-state.png").is_file()
    # A screenshot for each failed test, and none for the tests that passed
    assert {shot.stem for shot in shots.glob("test_*.png")} == {
        re.sub(r"[^A-Za-z0-9_.-]", "_", name) for name in browser}
    assert_artifacts_arrived(tmp_path, output)
    # report.html: a failed browser test first (it failed before the step that reported it), its screenshot inline
    page = (tmp_path / "report.html").read_text()
    first = page.index('<article class="failure">')
    assert page.index('<h3 class="case-name">browser / ', first) == page.index('<h3 class="case-name">', first)
    assert 'src="data:image/png;base64,' in page[first:page.index("</article>", first)]
